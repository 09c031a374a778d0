"""/v1/reports/sales, /key-terminals, /commission-efficiency: the sales reports of issue 16,
JSON by default and CSV on `Accept: text/csv` or `?format=csv` (api/reports.py), read from the
`sales_reports` read model (projections/sales_reports.py; docs/reports.md says how each figure
is computed)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Department
from api.errors import ApiProblem, Problem
from api.reports import REPORT_CONTENT, PeriodQuery, Reader, ReportFormat, report_answer, streamed_rows, wants_csv
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from channel_domain.values import Period as BusinessPeriod
from projections import sales_reports

router = APIRouter(prefix="/v1/reports", tags=["reports"])
RESPONSES: dict[int | str, dict[str, Any]] = {
    **{status: answer for status, answer in ERRORS.items() if status != 404},
    **REPORT_CONTENT,
    422: {"model": Problem,
          "description": "A bad period, group_by, cursor, limit or min_position (`validation_error`)"},
}
GroupBy = Literal["partner", "region", "product", "employee", "month", "order"]
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "partner": ("key", "name", "kind", "gross", "returns", "net", "orders"),
    "employee": ("key", "name", "gross", "returns", "net", "orders"),
    "region": ("key", "gross", "returns", "net", "orders"),
    "product": ("key", "gross", "returns", "net", "orders"),
    "month": ("key", "gross", "returns", "net", "orders"),
}
ORDER_CURSOR = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})\.([0-9]{1,18})$")
MAX_LIMIT = 1000


class SalesReportRow(BaseModel):
    key: str | None = Field(description="The partner or employee id, the region, the product or the month "
                                        "(`YYYY-MM`); null gathers sales that named no region, product or employee")
    name: str | None = Field(None, description="group_by=partner: the partner's name; group_by=employee: the "
                                               "employee's login (a name is personal data, for `hr` only)")
    kind: str | None = Field(None, description="group_by=partner: the partner's kind")
    gross: str = Field(description="Sales and broker deals dated in the period", examples=["125000.00"])
    returns: str = Field(description="Returns dated in the period", examples=["5000.00"])
    net: str = Field(description="gross − returns", examples=["120000.00"])
    orders: int = Field(description="Sales and deals dated in the period (returns are not orders)")


class SalesReportLine(BaseModel):
    position: int
    event_id: str
    kind: str = Field(description="sale, return or deal")
    date: str = Field(description="sold_on, returned_on or closed_on")
    partner_id: str
    partner_name: str | None
    partner_kind: str
    contract_id: str | None
    order_id: str = Field(description="The order (sales, returns) or the deal id")
    product: str | None
    region: str | None
    employee_id: str | None
    gross: str
    returns: str
    net: str


class SalesReportTotals(BaseModel):
    gross: str
    returns: str
    net: str
    orders: int


class SalesReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [{"key": "华东", "gross": "15000.00", "returns": "1000.00", "net": "14000.00", "orders": 2},
                  {"key": None, "gross": "7000.00", "returns": "0.00", "net": "7000.00", "orders": 2}],
        "period": "2026-Q1", "group_by": "region",
        "total": {"gross": "22000.00", "returns": "1000.00", "net": "21000.00", "orders": 4}}]})

    items: list[SalesReportRow | SalesReportLine]
    period: str
    group_by: str
    total: SalesReportTotals | None = Field(None, description="The period's totals (not with group_by=order)")
    next_cursor: str | None = Field(None, description="group_by=order: the next page's cursor, null on the last")


@router.get("/sales", response_model=SalesReport, responses=RESPONSES,
            summary="Sales, returns and net per partner, region, product, employee or month; or every line")
def sales_report(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("sales_reports")],
    period: PeriodQuery,
    group_by: Annotated[GroupBy, Query(description="`order`: one row per sale, return or deal (paged in JSON)")],
    cursor: Annotated[str | None, Query(
        max_length=40, description="group_by=order: `next_cursor` of the page before")] = None,
    limit: Annotated[int | None, Query(
        ge=1, le=MAX_LIMIT,
        description="group_by=order: rows per page (default 100); a CSV without cursor and limit has every row")] = None,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    """Sales by `sold_on`, broker deals by `closed_on` and returns by `returned_on` in the
    period — the dates statements book them by. A return counts for its sale's partner,
    region, product and employee; a deal for its broker, with no region, product or employee."""
    span = BusinessPeriod.parse(period)
    name = f"sales-{span.text}-{group_by}"
    if group_by == "order":
        return _order_lines(request, app, report_format, span, cursor, limit, name, position)
    if cursor is not None or limit is not None:
        raise ApiProblem(422, "validation_error", "cursor and limit page group_by=order only")
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        rows = sales_reports.sales_by(curs, span, group_by)
    return report_answer(request, report_format, GROUP_COLUMNS[group_by], rows, name=name, position=position,
                         extra={"period": span.text, "group_by": group_by, "total": sales_reports.sales_total(rows)})


def _order_lines(request: Request, app: Any, report_format: str | None, span: BusinessPeriod, cursor: str | None,
                 limit: int | None, name: str, position: int) -> StreamingResponse:
    after: tuple[date, int] | None = None
    if cursor:
        match = ORDER_CURSOR.match(cursor)
        try:
            after = (date.fromisoformat(match[1]), int(match[2])) if match else None
        except ValueError:
            after = None
        if after is None:
            raise ApiProblem(422, "validation_error", "cursor: not a cursor this report gave")
    columns = sales_reports.DETAIL_COLUMNS
    datastore = app.event_recorder.datastore
    if wants_csv(request, report_format) and cursor is None and limit is None:
        # Every line of the period, streamed from a server-side cursor as it is sent.
        rows = streamed_rows(datastore, sales_reports.DETAIL_OF_PERIOD,
                             {"starts": span.starts_on, "ends": span.ends_on}, batch=5000)
        return report_answer(request, report_format, columns, rows, name=name, position=position)
    size = limit or 100
    with datastore.get_connection() as conn, conn.cursor() as curs:
        rows = sales_reports.detail_page(curs, span, after, size + 1)
    last = rows[size - 1] if len(rows) > size else None
    next_cursor = f"{last['date']}.{last['position']}" if last else None
    return report_answer(request, report_format, columns, rows[:size], name=name, position=position,
                         extra={"period": span.text, "group_by": "order", "next_cursor": next_cursor})


class KeyTerminal(BaseModel):
    rank: int
    partner_id: str
    name: str | None
    kind: str | None
    net: str = Field(description="Net sales in the period", examples=["480000.00"])
    share: str | None = Field(description="net ÷ the total of every partner, to 4 places (half up); null when the "
                                          "total is not above zero", examples=["0.4800"])
    cumulative_share: str | None = Field(description="This and every partner ranked above it ÷ the total, to 4 "
                                                     "places", examples=["0.7500"])
    key: bool = Field(description="Among the fewest top partners whose cumulative share reaches 80 % (the one "
                                  "that crosses 80 % included)")


class KeyTerminalsReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [{"rank": 1, "partner_id": "5b0e7c1e-2f7d-4a51-9b8e-0c3f5d7a9e21", "name": "Big", "kind": "distributor",
                   "net": "20000.00", "share": "0.7143", "cumulative_share": "0.7143", "key": True},
                  {"rank": 2, "partner_id": "91c2d0a4-6b3e-4f8a-8d1c-2e4b6a8c0d13", "name": "East",
                   "kind": "enterprise_agent", "net": "8000.00", "share": "0.2857", "cumulative_share": "1.0000",
                   "key": True}],
        "period": "2026-Q1", "total_net": "28000.00", "partners": 2, "key_partners": 2}]})

    items: list[KeyTerminal]
    period: str
    total_net: str
    partners: int
    key_partners: int


@router.get("/key-terminals", response_model=KeyTerminalsReport, responses=RESPONSES,
            summary="The 80/20 rule: partners ranked by net sales, and the key ones that make 80 % of them")
def key_terminals(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("sales_reports")],
    period: PeriodQuery,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    """「80/20」key terminals: every partner with a sale, deal or return in the period, ranked by
    net sales (descending, ties by partner id)."""
    span = BusinessPeriod.parse(period)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        rows, total = sales_reports.key_terminals(curs, span)
    return report_answer(
        request, report_format, ("rank", "partner_id", "name", "kind", "net", "share", "cumulative_share", "key"),
        rows, name=f"key-terminals-{span.text}", position=position,
        extra={"period": span.text, "total_net": total, "partners": len(rows),
               "key_partners": sum(1 for row in rows if row["key"])})


class KindEfficiency(BaseModel):
    kind: str
    partners: int = Field(description="Partners of the kind with a sale, deal or return in the period")
    net_sales: str
    sales_commission: str = Field(description="Commission of the sale, return and deal lines of the period's "
                                              "statements")
    adjustments: str = Field(description="Adjustment lines booked in the period's statements")
    commission: str = Field(description="sales_commission + adjustments")
    efficiency: str | None = Field(description="commission ÷ net_sales, to 4 places (half up); null when net "
                                               "sales are 0", examples=["0.0350"])


class EfficiencyTotal(BaseModel):
    partners: int
    net_sales: str
    sales_commission: str
    adjustments: str
    commission: str
    efficiency: str | None


class CommissionEfficiencyReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "items": [{"kind": "enterprise_agent", "partners": 1, "net_sales": "14000.00", "sales_commission": "700.00",
                   "adjustments": "0.00", "commission": "700.00", "efficiency": "0.0500"},
                  {"kind": "sales_agent", "partners": 0, "net_sales": "0.00", "sales_commission": "0.00",
                   "adjustments": "0.00", "commission": "0.00", "efficiency": None}],
        "period": "2026-Q1",
        "total": {"partners": 1, "net_sales": "14000.00", "sales_commission": "700.00", "adjustments": "0.00",
                  "commission": "700.00", "efficiency": "0.0500"}}]})

    items: list[KindEfficiency]
    period: str
    total: EfficiencyTotal


@router.get("/commission-efficiency", response_model=CommissionEfficiencyReport, responses=RESPONSES,
            summary="佣金使用效率: commission booked against net sales, per partner kind")
def commission_efficiency(
    request: Request,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("sales_reports", "commissions")],
    period: PeriodQuery,
    report_format: ReportFormat = None,
) -> StreamingResponse:
    """One row per partner kind, every kind, in the domain's order; the total in `total` (JSON)."""
    span = BusinessPeriod.parse(period)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        rows, total = sales_reports.commission_efficiency(curs, span)
    return report_answer(
        request, report_format,
        ("kind", "partners", "net_sales", "sales_commission", "adjustments", "commission", "efficiency"),
        rows, name=f"commission-efficiency-{span.text}", position=position,
        extra={"period": span.text, "total": total})
