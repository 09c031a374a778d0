"""GET /v1/commissions/statements/{partner_id}/{period}/diff: what a statement gained between
two "as known at" times (api.md, "Proof for auditors")."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api import diffs
from api.deps import Department, allowed
from api.errors import Problem
from api.routes.commissions import Month, StatementDispute, StatementLine
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal

router = APIRouter(prefix="/v1/commissions", tags=["read models"])
Reader = Annotated[Principal, Depends(allowed("reporting", "finance", "auditor", "channel_manager"))]


class LineEvent(BaseModel):
    position: int
    type: str
    actor: str
    stream_id: str
    recorded_at: str
    correlation_id: str


class NewLine(StatementLine):
    event: LineEvent | None = Field(description="The event that wrote the line (null while the audit trail has "
                                                "not reached it)")


class FigureChange(BaseModel):
    figure: str
    old: Any
    new: Any


class StatementDiff(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "partner_id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50", "period": "2026-03",
        "from": "2026-03-31T16:00:00Z", "to": "2026-04-10T16:00:00Z",
        "before": {"commission": "1800.00", "total_due": "1800.00"},
        "after": {"commission": "1650.00", "total_due": "1650.00"},
        "changed": [{"figure": "commission", "old": "1800.00", "new": "1650.00"}],
        "lines": [{"position": 2210, "line_no": 1, "kind": "return", "amount": "-5000.00", "commission": "-150.00",
                   "event": {"position": 2210, "type": "Contract.ReturnRecorded", "actor": "erp",
                             "correlation_id": "erp-batch-81"}}],
        "disputes": [],
    }]})

    partner_id: str
    period: str
    from_: str = Field(alias="from")
    to: str
    before: dict[str, Any] = Field(description="The statement's figures as known at `from`")
    after: dict[str, Any] = Field(description="The statement's figures as known at `to`")
    changed: list[FigureChange]
    lines: list[NewLine] = Field(description="Lines recorded after `from` up to `to`, in log order")
    disputes: list[StatementDispute] = Field(description="Disputes raised or resolved between the two times")


@router.get(
    "/statements/{partner_id}/{period}/diff",
    response_model=StatementDiff,
    responses={**ERRORS, 422: {"model": Problem, "description": "A time without offset, or from after to"}},
    summary="What a statement gained between two \"as known at\" times: the new lines with their events, "
            "and the figures before and after",
    description="A ledger only adds lines (a correction is a line of its own), so the difference is the lines "
                "recorded after `from` and up to `to`. `to` defaults to now.",
)
def statement_diff(
    partner_id: UUID,
    period: Month,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("commissions", "audit_events")],
    from_: Annotated[AwareDatetime, Query(alias="from", description="As known at this time (RFC 3339, offset)")],
    to: Annotated[AwareDatetime | None, Query(description="As known at this time (default: now)")] = None,
) -> JSONResponse:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        if to is None:
            curs.execute("SELECT now() AS now")
            to = curs.fetchone()["now"]
        found = diffs.statement_diff(curs, partner_id, period, from_, to)
    return JSONResponse(found, headers={"X-Projection-Position": str(position)})
