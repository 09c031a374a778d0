"""GET /v1/partners/{id}/activity: visits against the grade minimum, active second-tier agents."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import Department, allowed
from api.models import Period
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.errors import NotFound
from channel_domain.partner import MINIMUM_MONTHLY_VISITS
from channel_domain.values import Period as BusinessPeriod
from channel_domain.values import plain_json

router = APIRouter(prefix="/v1/partners", tags=["read models"])
Reader = Annotated[Principal, Depends(allowed("reporting", "channel_manager", "auditor"))]


class MonthOfVisits(BaseModel):
    month: str
    visits: int
    minimum: int | None
    meets_minimum: bool | None


class Activity(BaseModel):
    partner_id: str
    period: str
    grade: str | None
    visits: int
    months: list[MonthOfVisits]
    second_tier_agents: int
    active_second_tier_agents: list[str]


@router.get("/{partner_id}/activity", response_model=Activity, responses=ERRORS,
            summary="Visits per month against the grade minimum; second-tier agents with a sale in the period")
def activity(
    partner_id: UUID,
    period: Annotated[Period, Query()],
    app: Department,
    _: Reader,
    __: Annotated[int, fresh("partner_activity")],
) -> dict[str, Any]:
    span = BusinessPeriod.parse(period)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT grade FROM partner_directory WHERE partner_id = %s", (partner_id,))
        partner = curs.fetchone()
        if partner is None:
            raise NotFound(f"no partner {partner_id} in the read model")
        curs.execute(
            "SELECT to_char(m, 'YYYY-MM') AS month, count(v.position) AS visits"
            " FROM generate_series(%s::date, %s::date, interval '1 month') AS m"
            " LEFT JOIN partner_visits v ON v.partner_id = %s AND date_trunc('month', v.visited_on) = m"
            " GROUP BY m ORDER BY m",
            (span.starts_on, span.ends_on, partner_id),
        )
        months = curs.fetchall()
        curs.execute("SELECT count(*) AS n FROM partner_directory WHERE parent_partner_id = %s", (partner_id,))
        second_tier = curs.fetchone()["n"]
        curs.execute(
            "SELECT DISTINCT d.partner_id FROM partner_directory d"
            " JOIN partner_orders o ON o.partner_id = d.partner_id AND o.sold_on BETWEEN %s AND %s"
            " WHERE d.parent_partner_id = %s ORDER BY d.partner_id",
            (span.starts_on, span.ends_on, partner_id),
        )
        active = [row["partner_id"] for row in curs.fetchall()]
    minimum = MINIMUM_MONTHLY_VISITS.get(partner["grade"]) if partner["grade"] else None
    return plain_json({
        "partner_id": partner_id,
        "period": span.text,
        "grade": partner["grade"],
        "visits": sum(m["visits"] for m in months),
        "months": [{"month": m["month"], "visits": m["visits"], "minimum": minimum,
                    "meets_minimum": None if minimum is None else m["visits"] >= minimum} for m in months],
        "second_tier_agents": second_tier,
        "active_second_tier_agents": active,
    })
