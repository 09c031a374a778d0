"""GET /v1/targets/{id}/attainment: actual net sales against the target, per KPI and weighted.

Net sales are credited by the target's assignee: an employee gets the sales that name them
(less returns of those orders), a partner the sales on its contracts, a team the sum of its
children. `sales_revenue` is computed from sales; other KPIs take the ratio given when the
target was closed (null until then, and counted as 0 in the weighted score).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.deps import Department, allowed
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.errors import NotFound
from channel_domain.values import plain_json

router = APIRouter(prefix="/v1/targets", tags=["read models"])
Reader = Annotated[Principal, Depends(allowed("reporting", "channel_manager", "auditor"))]
SALES_KPI = "sales_revenue"
RATIO = Decimal("0.0001")


class KpiAttainment(BaseModel):
    weight: str
    attainment: str | None


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
    weighted_score: str


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


def _actual(curs: Any, target: dict[str, Any]) -> Decimal:
    if target["assignee_type"] == "team":
        curs.execute("SELECT * FROM targets WHERE parent_id = %s", (target["target_id"],))
        return sum((_actual(curs, child) for child in curs.fetchall()), Decimal("0"))
    try:
        assignee = UUID(target["assignee_id"])
    except ValueError:
        return Decimal("0")  # an assignee that is not a record id has no sales credited
    column = "employee_id" if target["assignee_type"] == "employee" else "partner_id"
    return _credited(curs, column, assignee, target)


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
    amount = Decimal(target["amount"])
    sales_ratio = (actual / amount).quantize(RATIO)
    kpis = {}
    for name, weight in target["kpis"].items():
        given = target["kpi_results"].get(name)
        ratio = sales_ratio if name == SALES_KPI else (Decimal(given) if given is not None else None)
        kpis[name] = {"weight": Decimal(weight), "attainment": ratio}
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
