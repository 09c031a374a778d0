"""/v1/audit: the audit trail, one row per event, for auditors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import Department, allowed
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.values import plain_json

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(allowed("auditor"))]


class AuditEvent(BaseModel):
    position: int
    event_id: str
    stream_id: str
    stream_type: str
    version: int
    type: str
    actor: str
    roles: list[str]
    recorded_at: str
    effective_on: str | None
    correlation_id: str
    causation_id: str
    data: dict
    hash: str | None = None
    prev_hash: str | None = None


class AuditEvents(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None


@router.get("/events", response_model=AuditEvents, responses=ERRORS, summary="The audit trail, filtered")
def audit_events(
    app: Department,
    _: Auditor,
    __: Annotated[int, fresh("audit_events")],
    stream_id: UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=200, description="e.g. Contract.SaleRecorded")] = None,  # noqa: A002
    from_: Annotated[datetime | None, Query(alias="from", description="recorded at or after")] = None,
    to: Annotated[datetime | None, Query(description="recorded before")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="positions after this one")] = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    clauses, params = ["position > %s"], [max(after or 0, int(cursor) if cursor and cursor.isdigit() else 0)]
    for column, value in (("stream_id", stream_id), ("actor", actor), ("type", type)):
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if from_ is not None:
        clauses.append("recorded_at >= %s")
        params.append(from_)
    if to is not None:
        clauses.append("recorded_at < %s")
        params.append(to)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT position, event_id, stream_id, stream_type, version, type, actor, roles, recorded_at,"  # noqa: S608
            f" effective_on, correlation_id, causation_id, data FROM audit_events WHERE {' AND '.join(clauses)}"
            " ORDER BY position LIMIT %s",
            [*params, limit + 1],
        )
        rows = curs.fetchall()
    page = rows[:limit]
    return {
        "items": [plain_json(dict(row)) for row in page],
        "next_cursor": str(page[-1]["position"]) if len(rows) > limit else None,
    }


FINDING_KINDS = (
    "approved_by_requester",
    "visits_below_minimum",
    "account_changed_before_payout",
    "deposit_refunded_before_termination",
    "probation_overdue",
    "sales_agent_rate_not_below_enterprise_agents",
    "contract_review_missing",
    "payout_not_total_due",
)


class Finding(BaseModel):
    kind: str
    status: str
    subject_id: str
    detail: str
    positions: list[int]
    raised_on: str


class Findings(BaseModel):
    items: list[Finding]
    next_cursor: str | None


@router.get("/findings", response_model=Findings, responses=ERRORS,
            summary="Findings the audit view raises on its own (domain.md §7), with the events behind each")
def audit_findings(
    app: Department,
    _: Auditor,
    __: Annotated[int, fresh("audit_events", "partner_activity", "employee_contracts", "commissions")],
    kind: Annotated[Literal[FINDING_KINDS] | None, Query()] = None,  # type: ignore[valid-type]
    status: Annotated[Literal["open"] | None, Query(description="every finding stays open until its cause is corrected")] = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    # Findings are computed, not stored, so the cursor is an offset in their stable order.
    offset = int(cursor) if cursor and cursor.isdigit() else 0
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT kind, 'open' AS status, subject_id, detail, positions, raised_on FROM audit_findings"
            " WHERE %s::text IS NULL OR kind = %s ORDER BY raised_on, kind, subject_id, positions"
            " OFFSET %s LIMIT %s",
            (kind, kind, offset, limit + 1),
        )
        rows = curs.fetchall()
    return {
        "items": [plain_json(dict(row)) for row in rows[:limit]],
        "next_cursor": str(offset + limit) if len(rows) > limit else None,
    }
