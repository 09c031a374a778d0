"""/v1/audit: the audit trail, one row per event, for auditors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from api import full_check
from api.cursors import NumberCursor, cursor_number
from api.deps import Department, allowed
from api.errors import ApiProblem, Problem
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.errors import NotFound
from channel_domain.store import integrity
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
    cursor: NumberCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    clauses, params = ["position > %s"], [max(after or 0, cursor_number(cursor))]
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
            "SELECT a.position, event_id, stream_id, stream_type, version, type, actor, roles, a.recorded_at,"  # noqa: S608
            " a.effective_on, correlation_id, causation_id, data, encode(e.hash, 'hex') AS hash,"
            " encode(e.prev_hash, 'hex') AS prev_hash"
            f" FROM (SELECT * FROM audit_events WHERE {' AND '.join(clauses)} ORDER BY position LIMIT %s) AS a"
            " LEFT JOIN events e ON e.position = a.position ORDER BY a.position",
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
    "sale_while_partner_inactive",
    "remittance_overdue",
    "inventory_report_missing",
    "poor_evaluation_unaddressed",
    "separation_missing",
    "account_changed_before_subsidy",
)

# --- tamper evidence -------------------------------------------------------------------


class VerifyResult(BaseModel):
    ok: bool
    verified_through: int
    head_hash: str | None
    events: int
    unsealed: int
    first_bad_position: int | None = None
    problem: str | None = None


@router.get("/verify", response_model=VerifyResult,
            responses={**ERRORS, 503: {"model": Problem, "description": "Another full verification is running"
                                                                        " (verification_running), with Retry-After"}},
            summary="Recompute every hash, stream chain and seal; name the first position that fails")
def audit_verify(app: Department, _: Auditor) -> dict[str, Any]:
    # It reads the whole log: one at a time across every process and node, shared with the workspace.
    return full_check.verify_alone(app.event_recorder.datastore)


# How long an export waits for transactions that could still write below its end.
EXPORT_SETTLE_S = 30.0


@router.get("/export", responses={**ERRORS, 200: {"content": {"application/x-ndjson": {}}}},
            response_class=StreamingResponse,
            summary="The whole event log as NDJSON in position order, with hashes and the latest seal")
def audit_export(app: Department, _: Auditor) -> StreamingResponse:
    datastore = app.event_recorder.datastore
    # Fixed before the answer starts: once a 200 is sent, a failure can only cut it off.
    try:
        bounds = integrity.export_bounds(datastore, EXPORT_SETTLE_S)
    except integrity.ExportUnsettled as error:
        raise ApiProblem(503, "export_unsettled", str(error), {"Retry-After": "5"}) from None
    return StreamingResponse(integrity.export(datastore, bounds=bounds), media_type="application/x-ndjson")


class CausedEvent(BaseModel):
    position: int
    event_id: str
    stream_id: str
    type: str
    actor: str
    recorded_at: str
    command_id: str | None
    causation_id: str
    caused_by: list[int]


class Causation(BaseModel):
    correlation_id: str
    events: list[CausedEvent]


@router.get("/causation/{correlation_id}", response_model=Causation, responses=ERRORS,
            summary="Every event of one request or process across records, in order, with causation links")
def audit_causation(
    correlation_id: Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9._:/+=@-]+$")],
    app: Department,
    _: Auditor,
    __: Annotated[int, fresh("audit_events")],
) -> dict[str, Any]:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT position, event_id, stream_id, type, actor, recorded_at, command_id, causation_id"
            " FROM audit_events WHERE correlation_id = %s ORDER BY position LIMIT 10001",
            (correlation_id,),
        )
        rows = curs.fetchall()
    if not rows:
        raise NotFound(f"no events with correlation id {correlation_id}")
    # An event's causes: the events of the command it names as its cause; the command's own
    # first event causes the rest of that command (a contract signed activates its partner).
    first_of_command: dict[str, int] = {}
    by_command: dict[str, list[int]] = {}
    events = []
    for row in rows:
        command = row["command_id"]
        if row["causation_id"] in by_command:
            caused_by = list(by_command[row["causation_id"]])
        elif command is not None and command in first_of_command:
            caused_by = [first_of_command[command]]
        else:
            caused_by = []
        if command is not None:
            first_of_command.setdefault(command, row["position"])
            by_command.setdefault(command, []).append(row["position"])
        events.append({**plain_json(dict(row)), "caused_by": caused_by})
    return {"correlation_id": correlation_id, "events": events}



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
    cursor: NumberCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    # Findings are computed, not stored, so the cursor is an offset in their stable order.
    offset = cursor_number(cursor)
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
