"""/v1/reports: partners, inventory, receivables, the payout register and evaluations (api.md "Lists
and reports"; docs/partner-reports.md says how each figure is computed).

Each report is one SQL query over a read model, streamed as it is read (api/reports.py): JSON by
default, CSV on `Accept: text/csv` or `?format=csv`. Receivables read the commission ledger, so
their figures are the statements' own; the others read `partner_reports`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import Department
from api.models import Day
from api.reports import REPORT_CONTENT, PeriodQuery, Reader, ReportFormat, report_answer, streamed_rows, wants_csv
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from channel_domain.company_time import today
from channel_domain.errors import NotFound
from channel_domain.partner import KINDS
from channel_domain.values import Period as BusinessPeriod
from channel_domain.values import month_of

router = APIRouter(prefix="/v1/reports", tags=["reports"])
RESPONSES: dict[int | str, dict[str, Any]] = {**ERRORS, **REPORT_CONTENT}


def _rows(app: Any, query: str, params: Mapping[str, Any],
          shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    return streamed_rows(app.event_recorder.datastore, query, params, shape=shape)


def _all(app: Any, query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query, params)
        return curs.fetchall()


def _require_partner(app: Any, partner_id: UUID | None) -> None:
    if partner_id is not None and not _all(app, "SELECT 1 FROM report_partners WHERE partner_id = %(p)s",
                                           {"p": partner_id}):
        raise NotFound(f"no partner {partner_id} in the report read model")


# 1. Partners per kind, and new partners per recruiter --------------------------------------

class PartnerKindRow(BaseModel):
    kind: str = Field(examples=["distributor"])
    applied: int = Field(description="Applications recorded in the period")
    approved: int = Field(description="Approvals recorded in the period")
    rejected: int = Field(description="Rejections recorded in the period")
    active: int = Field(description="Partners active on the period's last day")
    suspended: int = Field(description="Partners suspended on the period's last day")
    terminated: int = Field(description="Partners terminated on or before the period's last day")
    activated: int = Field(description="Partners that became active for the first time in the period")
    suspended_in_period: int = Field(description="Partners whose suspension began in the period")
    reinstated_in_period: int = Field(description="Partners reinstated in the period")
    terminated_in_period: int = Field(description="Partners whose termination date is in the period")


class RecruiterRow(BaseModel):
    employee_id: str
    login: str | None = Field(description="The login the employee's tokens carry, if any")
    new_partners: int = Field(description="Partners recruited by the employee and approved in the period")
    partner_ids: list[str]


class PartnersReport(BaseModel):
    items: list[PartnerKindRow | RecruiterRow] = Field(
        description="One row per partner kind; with `view=recruiters`, one row per recruiter")
    recruiters: list[RecruiterRow] | None = Field(
        None, description="New partners per recruiter (JSON, view `kinds` only)")


KIND_COLUMNS = list(PartnerKindRow.model_fields)
RECRUITER_COLUMNS = list(RecruiterRow.model_fields)

PARTNERS_BY_KIND = """
WITH kinds (kind, n) AS (SELECT * FROM unnest(%(kinds)s::text[]) WITH ORDINALITY),
flows AS (
    SELECT kind,
           count(*) FILTER (WHERE transition = 'applied' AND recorded_on BETWEEN %(starts)s AND %(ends)s) AS applied,
           count(*) FILTER (WHERE transition = 'approved' AND recorded_on BETWEEN %(starts)s AND %(ends)s) AS approved,
           count(*) FILTER (WHERE transition = 'rejected' AND recorded_on BETWEEN %(starts)s AND %(ends)s) AS rejected,
           count(*) FILTER (WHERE (transition = 'activated' OR (transition = 'approved' AND status = 'active'))
                            AND effective_on BETWEEN %(starts)s AND %(ends)s) AS activated,
           count(DISTINCT partner_id) FILTER (WHERE transition = 'suspended'
                                              AND effective_on BETWEEN %(starts)s AND %(ends)s) AS suspended_in_period,
           count(DISTINCT partner_id) FILTER (WHERE transition = 'reinstated'
                                              AND effective_on BETWEEN %(starts)s AND %(ends)s) AS reinstated_in_period,
           count(*) FILTER (WHERE transition = 'terminated'
                            AND effective_on BETWEEN %(starts)s AND %(ends)s) AS terminated_in_period
    FROM report_partner_transitions
    WHERE recorded_on BETWEEN %(starts)s AND %(ends)s OR effective_on BETWEEN %(starts)s AND %(ends)s
    GROUP BY kind
),
at_end AS (
    SELECT kind, count(*) FILTER (WHERE status = 'active') AS active,
           count(*) FILTER (WHERE status = 'suspended') AS suspended,
           count(*) FILTER (WHERE status = 'terminated') AS terminated
    FROM (SELECT DISTINCT ON (partner_id) kind, status FROM report_partner_transitions
          WHERE effective_on <= %(ends)s ORDER BY partner_id, position DESC) AS latest
    GROUP BY kind
)
SELECT k.kind,
       coalesce(f.applied, 0) AS applied, coalesce(f.approved, 0) AS approved, coalesce(f.rejected, 0) AS rejected,
       coalesce(e.active, 0) AS active, coalesce(e.suspended, 0) AS suspended,
       coalesce(e.terminated, 0) AS terminated, coalesce(f.activated, 0) AS activated,
       coalesce(f.suspended_in_period, 0) AS suspended_in_period,
       coalesce(f.reinstated_in_period, 0) AS reinstated_in_period,
       coalesce(f.terminated_in_period, 0) AS terminated_in_period
FROM kinds k LEFT JOIN flows f USING (kind) LEFT JOIN at_end e USING (kind)
ORDER BY k.n
"""

# The `new_partners` KPI's definition (target_recruitments): recruited by the employee, the
# approval recorded on a company-calendar day of the period.
RECRUITERS = """
SELECT t.recruited_by AS employee_id, l.login, count(*) AS new_partners,
       array_agg(t.partner_id::text ORDER BY t.position) AS partner_ids
FROM report_partner_transitions t
LEFT JOIN employee_logins l ON l.employee_id = t.recruited_by
WHERE t.transition = 'approved' AND t.recruited_by IS NOT NULL AND t.recorded_on BETWEEN %(starts)s AND %(ends)s
GROUP BY t.recruited_by, l.login
ORDER BY new_partners DESC, t.recruited_by
"""


@router.get("/partners", response_model=PartnersReport, responses=RESPONSES,
            summary="Partners per kind: applied, approved, rejected, active, suspended, terminated; new partners "
                    "per recruiter")
def partners_report(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("partner_reports")],
    period: PeriodQuery,
    view: Annotated[Literal["kinds", "recruiters"], Query(
        description="`kinds` (default): one row per partner kind; `recruiters`: one row per recruiter")] = "kinds",
    report_format: ReportFormat = None,
) -> StreamingResponse:
    span = BusinessPeriod.parse(period)
    params = {"starts": span.starts_on, "ends": span.ends_on, "kinds": list(KINDS)}
    if view == "recruiters":
        return report_answer(request, report_format, RECRUITER_COLUMNS, _rows(app, RECRUITERS, params),
                             name=f"partner-recruiters-{span.text}", position=position)
    extra = None if wants_csv(request, report_format) else {"recruiters": _all(app, RECRUITERS, params)}
    return report_answer(request, report_format, KIND_COLUMNS, _rows(app, PARTNERS_BY_KIND, params),
                         name=f"partners-{span.text}", position=position, extra=extra)


# 2. Inventory: latest stock per partner and product ----------------------------------------

class InventoryRow(BaseModel):
    partner_id: str
    partner_name: str
    partner_kind: str = Field(examples=["distributor"])
    product: str
    report_date: str = Field(description="The date of the latest report on or before as_of")
    opening: int
    received: int
    sold: int
    closing: int = Field(description="Units in stock on report_date")
    correction: bool = Field(description="Whether that report was a correction")
    correction_reason: str | None
    days_since_report: int = Field(description="as_of − report_date")
    position: int = Field(description="The report's event")
    event_id: str
    recorded_at: str


class InventoryReport(BaseModel):
    items: list[InventoryRow]


INVENTORY_COLUMNS = list(InventoryRow.model_fields)
INVENTORY = """
SELECT DISTINCT ON (l.partner_id, l.product)
       l.partner_id, p.name AS partner_name, p.kind AS partner_kind, l.product, l.report_date,
       l.opening, l.received, l.sold, l.closing, l.correction_reason IS NOT NULL AS correction, l.correction_reason,
       %(as_of)s::date - l.report_date AS days_since_report, l.position, l.event_id, l.recorded_at
FROM report_inventory_lines l
JOIN report_partners p ON p.partner_id = l.partner_id
WHERE l.report_date <= %(as_of)s AND (%(partner)s::uuid IS NULL OR l.partner_id = %(partner)s)
ORDER BY l.partner_id, l.product, l.report_date DESC, l.position DESC
"""


@router.get("/inventory", response_model=InventoryReport, responses=RESPONSES,
            summary="Latest stock per partner and product as of a date, with the report it comes from")
def inventory_report(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("partner_reports")],
    partner_id: Annotated[UUID | None, Query(description="One partner only")] = None,
    as_of: Annotated[Day | None, Query(description="Default: today on the company's calendar")] = None,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    _require_partner(app, partner_id)
    day = as_of or today()
    return report_answer(request, report_format, INVENTORY_COLUMNS,
                         _rows(app, INVENTORY, {"as_of": day, "partner": partner_id}),
                         name=f"inventory-{day}", position=position)


# 3. Receivables: consignee months ----------------------------------------------------------

class ReceivableRow(BaseModel):
    partner_id: str
    partner_name: str | None
    period: str = Field(examples=["2026-03"])
    remittance_due: str = Field(description="As the month's statement says: proceeds − commission − fees − "
                                            "adjustments, when not below zero", examples=["7040.00"])
    remitted: str = Field(description="Remittances for the month received on or before as_of")
    outstanding: str = Field(description="remittance_due − remitted (negative when overpaid)")
    due_on: str = Field(description="The 15th of the following month")
    days_overdue: int = Field(description="as_of − due_on when outstanding > 0 and as_of is after due_on, else 0")


class ReceivablesReport(BaseModel):
    items: list[ReceivableRow]


RECEIVABLE_COLUMNS = list(ReceivableRow.model_fields)
# A consignee's month settles alone (domain.md §6): the settlement is the commission_statements
# view's for a consignee, S = proceeds (with the proceeds of late lines moved out of a closed
# month: `adjusted_sales`) − commission − fees − adjustments, from the same lines' sums as the
# commissions projection keeps them per month (`commission_month_totals`: summing every
# consignee line up to the date cost ~100 ms a request over the bench's year), read here for
# the consignees' months alone instead of folding every partner's months.
RECEIVABLES = """
WITH consignees AS (
    SELECT partner_id FROM commission_partners
    WHERE kind = 'consignee' AND (%(partner)s::uuid IS NULL OR partner_id = %(partner)s)
), settled AS (
    SELECT t.partner_id, t.period,
           coalesce(t.sales, 0) + coalesce(t.returns, 0) + coalesce(t.adjusted_sales, 0)
           - coalesce(t.line_commission, 0) - round(coalesce(t.fees, 0), 2) - coalesce(t.adjustments, 0)
           AS settlement
    FROM commission_month_totals t JOIN consignees c ON c.partner_id = t.partner_id
    WHERE t.period <= %(month)s
), months AS (
    SELECT partner_id, period FROM settled
    UNION
    SELECT r.partner_id, r.period FROM commission_remittances r JOIN consignees c ON c.partner_id = r.partner_id
    WHERE r.period <= %(month)s
), figures AS (
    SELECT m.partner_id, m.period,
           round(greatest(0, coalesce(s.settlement, 0)), 2) AS remittance_due,
           round(coalesce((SELECT sum(r.amount) FROM commission_remittances r
                           WHERE r.partner_id = m.partner_id AND r.period = m.period
                             AND r.received_on <= %(as_of)s), 0), 2) AS remitted,
           (to_date(m.period, 'YYYY-MM') + interval '1 month' + interval '14 days')::date AS due_on
    FROM months m LEFT JOIN settled s ON s.partner_id = m.partner_id AND s.period = m.period
)
SELECT f.partner_id, p.name AS partner_name, f.period, f.remittance_due, f.remitted,
       f.remittance_due - f.remitted AS outstanding, f.due_on,
       CASE WHEN f.remittance_due > f.remitted AND %(as_of)s::date > f.due_on
            THEN %(as_of)s::date - f.due_on ELSE 0 END AS days_overdue
FROM figures f LEFT JOIN report_partners p ON p.partner_id = f.partner_id
ORDER BY f.partner_id, f.period
"""


@router.get("/receivables", response_model=ReceivablesReport, responses=RESPONSES,
            summary="Consignee months: remittance due, remitted, outstanding and days overdue as of a date")
def receivables_report(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("commissions", "partner_reports")],
    as_of: Annotated[Day | None, Query(description="Default: today on the company's calendar")] = None,
    partner_id: Annotated[UUID | None, Query(description="One consignee only")] = None,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    _require_partner(app, partner_id)
    day = as_of or today()
    params = {"as_of": day, "month": month_of(day), "partner": partner_id}
    return report_answer(request, report_format, RECEIVABLE_COLUMNS, _rows(app, RECEIVABLES, params),
                         name=f"receivables-{day}", position=position)


# 4. The payout register --------------------------------------------------------------------

class PayoutRow(BaseModel):
    period: str = Field(examples=["2026-03"])
    partner_id: str
    partner_name: str | None
    kind: str = Field(description="`commission` (payout) or `housing_subsidy`")
    amount: str | None = Field(examples=["1200.00"])
    account: str | None = Field(description="The approved payout account paid (or to be paid) to: in full for "
                                            "`finance`, else masked to its last 4 characters", examples=["****0001"])
    status: str = Field(description="prepared, verified, approved or paid")
    prepared_by: str | None
    prepared_at: str | None
    verified_by: str | None
    verified_at: str | None
    approved_by: str | None
    approved_at: str | None
    paid_by: str | None
    paid_at: str | None
    paid_on: str | None
    position: int = Field(description="The last step's event")
    event_id: str


class PayoutsReport(BaseModel):
    items: list[PayoutRow]


PAYOUT_COLUMNS = list(PayoutRow.model_fields)
PAYOUTS = """
SELECT r.period, r.partner_id, p.name AS partner_name, r.kind, round(r.amount, 2) AS amount,
       CASE WHEN %(full)s OR r.account IS NULL THEN r.account
            WHEN length(r.account) > 4 THEN '****' || right(r.account, 4)
            ELSE '****' END AS account,
       r.status, r.prepared_by, r.prepared_at, r.verified_by, r.verified_at, r.approved_by, r.approved_at,
       r.paid_by, r.paid_at, r.paid_on, r.position, r.event_id
FROM report_payouts r LEFT JOIN report_partners p ON p.partner_id = r.partner_id
WHERE r.period BETWEEN %(first)s AND %(last)s
ORDER BY r.period, r.partner_id, r.kind
"""


@router.get("/payouts", response_model=PayoutsReport, responses=RESPONSES,
            summary="The payout register: commission payouts and housing subsidies, who did each step and when")
def payouts_report(
    request: Request,
    app: Department,
    principal: Reader,
    position: Annotated[int, fresh("partner_reports")],
    period: PeriodQuery,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    """The register of the period's months."""
    span = BusinessPeriod.parse(period)
    params = {"first": month_of(span.starts_on), "last": month_of(span.ends_on), "full": "finance" in principal.roles}
    return report_answer(request, report_format, PAYOUT_COLUMNS, _rows(app, PAYOUTS, params),
                         name=f"payouts-{span.text}", position=position)


# 5. Evaluations and their corrective plans -------------------------------------------------

class CorrectivePlan(BaseModel):
    plan_id: str
    actions: list[str]
    due_on: str
    status: str = Field(description="open, met or failed")
    recorded_on: str
    closed_on: str | None


class EvaluationRow(BaseModel):
    partner_id: str
    partner_name: str
    partner_kind: str
    period: str = Field(examples=["2026-Q1"])
    scores: dict[str, str] = Field(examples=[{"sales": "55", "service": "62.5"}])
    average: str = Field(description="Mean of the scores, to 2 places", examples=["58.75"])
    poor: bool = Field(description="The exact average is below 60")
    respond_by: str | None = Field(description="Poor: the company-calendar day 30 days after it was recorded")
    corrective_plans: list[CorrectivePlan] = Field(
        description="Plans recorded for the partner after the evaluation, within 30 days of it")
    terminated_within_30_days: bool
    addressed: bool | None = Field(description="Poor: a plan or a termination within 30 days; null when not poor")
    position: int
    event_id: str
    recorded_at: str


class EvaluationsReport(BaseModel):
    items: list[EvaluationRow]
    average: str | None = Field(description="The mean of the evaluations' averages, to 2 places; null when none")
    evaluations: int
    poor: int


EVALUATION_COLUMNS = list(EvaluationRow.model_fields)
IN_PERIOD = "e.starts_on >= %(starts)s AND e.ends_on <= %(ends)s"
EVALUATIONS = f"""
SELECT e.partner_id, p.name AS partner_name, p.kind AS partner_kind, e.period, e.scores,
       round(e.score_total / e.kpis, 2) AS average, e.score_total < 60 * e.kpis AS poor,
       CASE WHEN e.score_total < 60 * e.kpis THEN company_date(e.recorded_at + interval '30 days') END AS respond_by,
       coalesce(plans.list, '[]'::json) AS corrective_plans, ended.terminated AS terminated_within_30_days,
       CASE WHEN e.score_total < 60 * e.kpis THEN plans.list IS NOT NULL OR ended.terminated END AS addressed,
       e.position, e.event_id, e.recorded_at
FROM report_evaluations e
JOIN report_partners p ON p.partner_id = e.partner_id
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object(
               'plan_id', c.plan_id::text, 'actions', c.actions, 'due_on', c.due_on::text, 'status', c.status,
               'recorded_on', company_date(c.recorded_at)::text, 'closed_on', company_date(c.closed_at)::text)
           ORDER BY c.position) AS list
    FROM report_corrective_plans c
    WHERE c.partner_id = e.partner_id AND c.position > e.position AND c.recorded_at <= e.recorded_at + interval '30 days'
) plans ON true
CROSS JOIN LATERAL (
    SELECT EXISTS (SELECT FROM report_partner_transitions t
                   WHERE t.partner_id = e.partner_id AND t.transition = 'terminated' AND t.position > e.position
                     AND t.recorded_at <= e.recorded_at + interval '30 days') AS terminated
) ended
WHERE {IN_PERIOD}
ORDER BY e.starts_on, e.ends_on, e.partner_id, e.position
"""
EVALUATION_TOTALS = f"""
SELECT round(avg(e.score_total / e.kpis), 2) AS average, count(*) AS evaluations,
       count(*) FILTER (WHERE e.score_total < 60 * e.kpis) AS poor
FROM report_evaluations e WHERE {IN_PERIOD}
"""


def _as_csv_cells(row: dict[str, Any]) -> dict[str, Any]:
    """Scores and plans are nested: a CSV cell holds them as JSON text."""
    return {**row, "scores": json.dumps(row["scores"], ensure_ascii=False, sort_keys=True),
            "corrective_plans": json.dumps(row["corrective_plans"], ensure_ascii=False)}


@router.get("/evaluations", response_model=EvaluationsReport, responses=RESPONSES,
            summary="Partner evaluations of the period: average, poor ones and their corrective plans")
def evaluations_report(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("partner_reports")],
    period: PeriodQuery,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    """The evaluations whose own period lies within `period`."""
    span = BusinessPeriod.parse(period)
    params = {"starts": span.starts_on, "ends": span.ends_on}
    as_csv = wants_csv(request, report_format)
    totals = None if as_csv else _all(app, EVALUATION_TOTALS, params)[0]  # a CSV is the rows alone
    return report_answer(request, report_format, EVALUATION_COLUMNS,
                         _rows(app, EVALUATIONS, params, _as_csv_cells if as_csv else None),
                         name=f"evaluations-{span.text}", position=position, extra=totals)
