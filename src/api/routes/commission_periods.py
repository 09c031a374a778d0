"""/v1/commissions/periods: finance closes a commission month (domain.md §6, "Period close").

A closed month takes no new lines: what is recorded later that would change it is booked as an
adjustment in the month it is recorded (or the first open one after it). Months close in order, each once it has ended on the
company calendar and once every partner owed money in it has a payout prepared.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api import commands
from api.deps import Department, allowed
from api.errors import Problem
from api.models import NoBody
from api.routes.commissions import Month
from api.routes.records import COMMAND_ERRORS, ERRORS
from api.tokens import Principal
from channel_domain.commission_period import CommissionPeriod
from channel_domain.values import plain_json
from projections.commissions import close_facts

router = APIRouter(prefix="/v1/commissions/periods", tags=["commissions"])
Finance = Annotated[Principal, Depends(allowed("finance"))]
Reader = Annotated[Principal, Depends(allowed("reporting", "finance", "auditor", "channel_manager"))]

CLOSE_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMAND_ERRORS,
    422: {"model": Problem, "description": "period_closed, period_not_ended, earlier_period_open, "
                                           "payouts_not_prepared (naming the partners), or an invalid period"},
    503: {"model": Problem, "description": "projection_lagging: the commissions ledger did not catch up with the log "
                                           "in time; nothing was written, retry (Retry-After)"},
}


class PeriodState(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "0c3e9a51-77f2-5b8e-a0a4-2f1d6c8e9b10", "version": 1, "period": "2026-03", "status": "closed",
        "closed_at": "2026-04-03T02:15:00Z", "closed_by": "fin-1", "closed_with": "2026-03", "closes_after": "2026-02",
    }]})

    id: str = Field(description="The month's record (derived from the month)")
    version: int = Field(description="1 once the month was closed by its own close; 0 otherwise")
    period: str
    status: str = Field(description="open or closed")
    closed_at: str | None
    closed_by: str | None
    closed_with: str | None = Field(
        description="The month whose close closed this one: itself, or a later month (a close also closes the "
                    "earlier months that had no statement)")
    closes_after: str | None = Field(None, description="The month closed before this one; null for the first close")
    position: int | None = Field(None, description="On the close's answer: the position of its event")


@router.post("/{period}/close", status_code=201, response_model=PeriodState, responses=CLOSE_ERRORS,
             summary="Close a month's commissions (finance)")
def close_period(period: Month, request: Request, app: Department, caller: Finance,
                 body: NoBody | None = None) -> JSONResponse:
    """Refused `period_closed` (closed already, by its own close or a later one),
    `period_not_ended` (closable from the first day after it, company calendar),
    `earlier_period_open` (an earlier month with a statement is still open: months close in
    order) and `payouts_not_prepared` (a partner's statement of the month has `total_due` > 0
    and no payout prepared: `partners` names them, at most 20, `partners_total` counts them).
    The ledger is read caught up to the log in the close's own transaction: `503
    projection_lagging` when it is not within a few seconds."""
    return commands.run(request, caller, app, CommissionPeriod, lambda: app.close_commission_period(period, close_facts),
                        body, created=True, location=lambda _: f"/v1/commissions/periods/{period}")


@router.get("/{period}", response_model=PeriodState, responses=ERRORS, summary="A commission month: open or closed")
def read_period(
    period: Month,
    app: Department,
    _: Reader,
    as_of: Annotated[AwareDatetime | None, Query(description="The month as it stood at this time")] = None,
) -> JSONResponse:
    return JSONResponse(plain_json(app.commission_period(period, as_of)))
