"""GET /v1/targets/{id}/attainment: actual net sales against the target, per KPI and weighted.

Net sales are credited by the target's assignee: an employee gets the sales that name them
(less returns of those orders), a partner the sales on its contracts, a team (named by its
leader) the sales of the leader and of everyone reporting to them on the day of each sale. The KPIs the service can measure are computed from events (domain.md §3):
`sales_revenue` (actual ÷ amount), and the counted `new_partners`, `active_second_tier_agents`
and `training_pass_rate` (actual ÷ goal). The others take the result entered at closing: shown
as `proposed` until someone else confirms it, and counted as 0 in the weighted score until then.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import Department, allowed
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.errors import NotFound
from channel_domain.sales_target import COUNTED_KPIS, SALES_REVENUE
from channel_domain.values import plain_json

router = APIRouter(prefix="/v1/targets", tags=["read models"])
Reader = Annotated[Principal, Depends(allowed("reporting", "channel_manager", "auditor"))]
RATIO = Decimal("0.0001")


class KpiAttainment(BaseModel):
    weight: str
    attainment: str | None = Field(description="actual ÷ goal for computed KPIs; the confirmed result otherwise")
    status: Literal["computed", "pending", "proposed", "confirmed"] = Field(
        description="computed from events; or, for entered KPIs: not yet entered, entered and awaiting "
                    "confirmation by someone else, confirmed")
    goal: str | None = Field(None, description="counted KPIs: the goal set with the target")
    actual: str | None = Field(None, description="computed KPIs: what the events show in the period")
    proposed: str | None = Field(None, description="an entered result awaiting confirmation")


class Attainment(BaseModel):
    target_id: str
    assignee_type: str
    assignee_id: str
    period: str
    status: str
    amount: str
    actual: str
    attainment: str
    kpis: dict[str, KpiAttainment]
    weighted_score: str = Field(description="Σ weight × attainment; a KPI with no attainment yet counts 0")


def _credited(curs: Any, column: str, assignee: UUID, target: dict[str, Any]) -> Decimal:
    span = (target["starts_on"], target["ends_on"])
    curs.execute(
        f"SELECT (SELECT coalesce(sum(amount), 0) FROM partner_orders WHERE {column} = %s"  # noqa: S608
        f"         AND sold_on BETWEEN %s AND %s)"
        f"     - (SELECT coalesce(sum(amount), 0) FROM partner_returns WHERE {column} = %s"
        f"         AND returned_on BETWEEN %s AND %s) AS net",
        (assignee, *span, assignee, *span),
    )
    return Decimal(curs.fetchone()["net"])


def _assignee(target: dict[str, Any]) -> UUID | None:
    try:
        return UUID(target["assignee_id"])
    except ValueError:
        return None  # set before assignees had to exist


def _team_credited(curs: Any, leader: UUID, target: dict[str, Any]) -> Decimal:
    """Net sales of the leader and everyone reporting to them on the day of each sale; a
    return counts for the team its sale counted for."""
    span = (target["starts_on"], target["ends_on"])
    curs.execute(
        "SELECT (SELECT coalesce(sum(o.amount), 0) FROM partner_orders o WHERE o.sold_on BETWEEN %s AND %s"
        "         AND o.employee_id IS NOT NULL AND in_team_of(%s, o.employee_id, o.sold_on))"
        "     - (SELECT coalesce(sum(r.amount), 0) FROM partner_returns r JOIN partner_orders o"
        "          ON o.contract_id = r.contract_id AND o.order_id = r.order_id"
        "        WHERE r.returned_on BETWEEN %s AND %s AND r.employee_id IS NOT NULL"
        "          AND in_team_of(%s, r.employee_id, o.sold_on)) AS net",
        (*span, leader, *span, leader),
    )
    return Decimal(curs.fetchone()["net"])


def _actual(curs: Any, target: dict[str, Any]) -> Decimal:
    assignee = _assignee(target)
    if target["assignee_type"] == "team":
        if assignee is not None:
            return _team_credited(curs, assignee, target)
        # A team named before teams were named by their leader: the sum of its children.
        curs.execute("SELECT * FROM targets WHERE parent_id = %s", (target["target_id"],))
        return sum((_actual(curs, child) for child in curs.fetchall()), Decimal("0"))
    if assignee is None:
        return Decimal("0")
    column = "employee_id" if target["assignee_type"] == "employee" else "partner_id"
    return _credited(curs, column, assignee, target)


def _counted(curs: Any, kpi: str, target: dict[str, Any]) -> Decimal | None:
    """What a counted KPI measures in the target's period (domain.md §3). A team's counts its
    leader's and those of everyone reporting to them on the day (of the approval, the training)."""
    assignee = _assignee(target)
    span = (target["starts_on"], target["ends_on"])
    is_partner = target["assignee_type"] == "partner"
    if assignee is None:
        return None
    # Whose recruits and trainings count: the employee's own, or the team's.
    whose = "in_team_of(%s, {person}, {day})" if target["assignee_type"] == "team" else "{person} = %s"
    if kpi == "new_partners":
        if is_partner:
            return Decimal(0)
        curs.execute("SELECT count(*) AS n FROM target_recruitments WHERE approved_on BETWEEN %s AND %s AND "  # noqa: S608
                     + whose.format(person="recruited_by", day="approved_on"), (*span, assignee))
        return Decimal(curs.fetchone()["n"])
    if kpi == "active_second_tier_agents":
        if not is_partner:
            return Decimal(0)
        curs.execute("SELECT count(*) AS n FROM partner_directory d WHERE d.parent_partner_id = %s AND EXISTS"
                     " (SELECT 1 FROM partner_orders o WHERE o.partner_id = d.partner_id"
                     "  AND o.sold_on BETWEEN %s AND %s)", (assignee, *span))
        return Decimal(curs.fetchone()["n"])
    # training_pass_rate: total passed ÷ total attendees of the trainings the assignee gave
    if is_partner:
        return None
    curs.execute("SELECT sum(passed) AS passed, sum(attendees) AS attendees FROM target_trainings"  # noqa: S608
                 " WHERE held_on BETWEEN %s AND %s AND " + whose.format(person="trainer_id", day="held_on"),
                 (*span, assignee))
    row = curs.fetchone()
    if not row["attendees"]:
        return None  # nobody trained: no rate to measure
    return Decimal(row["passed"]) / Decimal(row["attendees"])


@router.get("/{target_id}/attainment", response_model=Attainment, responses=ERRORS,
            summary="Actual net sales against the target, attainment per KPI and the weighted score")
def attainment(
    target_id: UUID,
    app: Department,
    _: Reader,
    __: Annotated[int, fresh("target_attainment", "partner_activity")],
) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT * FROM targets WHERE target_id = %s", (target_id,))
        target = curs.fetchone()
        if target is None:
            raise NotFound(f"no target {target_id} in the read model")
        actual = _actual(curs, target).quantize(Decimal("0.01"))
        counted = {name: _counted(curs, name, target) for name in target["kpis"] if name in COUNTED_KPIS}
    amount = Decimal(target["amount"])
    sales_ratio = (actual / amount).quantize(RATIO)
    kpis: dict[str, dict[str, Any]] = {}
    for name, weight in target["kpis"].items():
        kpi: dict[str, Any] = {"weight": Decimal(weight), "attainment": None, "status": "computed"}
        if name == SALES_REVENUE:
            kpi.update(actual=actual, attainment=sales_ratio)
        elif name in COUNTED_KPIS:
            goal = target["kpi_goals"].get(name)
            measured = counted[name]
            shown = measured if measured is None or measured % 1 == 0 else measured.quantize(RATIO)
            kpi.update(goal=goal, actual=shown)
            if goal is not None and measured is not None:
                kpi["attainment"] = (measured / Decimal(goal)).quantize(RATIO)
        else:
            entered = target["kpi_results"].get(name)
            if entered is None:
                kpi["status"] = "pending"
            elif target["status"] == "closing":
                kpi.update(status="proposed", proposed=Decimal(entered))
            else:
                kpi.update(status="confirmed", attainment=Decimal(entered))
        kpis[name] = kpi
    score = sum((k["weight"] * (k["attainment"] or 0) for k in kpis.values()), Decimal("0")).quantize(RATIO)
    return plain_json({
        "target_id": target_id,
        "assignee_type": target["assignee_type"],
        "assignee_id": target["assignee_id"],
        "period": target["period"],
        "status": target["status"],
        "amount": amount,
        "actual": actual,
        "attainment": sales_ratio,
        "kpis": kpis,
        "weighted_score": score,
    })
