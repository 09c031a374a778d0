"""/v1/commissions/statements: each partner's monthly statement, as it stands or as known at a
past time (domain.md §6)."""

from __future__ import annotations

import json
import threading
from typing import Annotated, Any
from uuid import UUID
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import Department, allowed
from api.routes.checkpoints import SignedCheckpoint
from api.routes.read_models import fresh
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain.application import ChannelDepartment
from channel_domain.errors import NotFound
from channel_domain.store import checkpoints, merkle
from channel_domain.values import YEAR, plain_json
from projections.commissions import StatementLinesCache, statement, statements

router = APIRouter(prefix="/v1/commissions", tags=["read models"])
Reader = Annotated[Principal, Depends(allowed("reporting", "finance", "auditor", "channel_manager"))]
Month = Annotated[str, Field(pattern=rf"^{YEAR}-(0[1-9]|1[0-2])$", examples=["2026-03"])]
KnownAt = Annotated[AwareDatetime | None, Query(
    description="Read the statement as it stood at this time (RFC 3339 with offset)")]


# A busy month's lines (hundreds) built as JSON were most of a statement's cost, read again and
# again while they had not changed (P7): each department's server keeps them, 64 MB at most,
# checked against the month's version on every read (`projections.commissions.statement`).
_lines_caches: WeakKeyDictionary[ChannelDepartment, StatementLinesCache] = WeakKeyDictionary()
_lines_caches_lock = threading.Lock()


def lines_cache(app: ChannelDepartment) -> StatementLinesCache:
    with _lines_caches_lock:
        cache = _lines_caches.get(app)
        if cache is None:
            cache = _lines_caches[app] = StatementLinesCache()
        return cache


class InclusionProof(BaseModel):
    leaf_index: int = Field(description="The event's leaf: its rank in position order, from 0")
    tree_size: int = Field(description="Leaves of the tree proven against: `proof_checkpoint`'s tree_size")
    event_hash: str = Field(description="The leaf's input: the event's hash (hex), as the export and verify check it")
    audit_path: list[str] = Field(description="RFC 9162 inclusion path, hex, leaf side first")


class StatementLine(BaseModel):
    position: int
    line_no: int
    event_id: str
    contract_id: str | None
    order_id: str | None
    kind: str
    business_date: str | None
    amount: str
    rate: str | None
    commission: str
    corrects_period: str | None
    moved_kind: str | None = Field(
        description="An adjustment carrying a sale, return or deal of a closed month into this one: its kind")
    dispute_id: str | None = Field(description="An adjustment booking an upheld dispute: the dispute")
    recorded_at: str
    inclusion_proof: InclusionProof | None = Field(
        None, description="With ?proofs=true: the proof that the line's event (at `position`) is in the tree of"
                          " `proof_checkpoint`; null when that checkpoint was signed before the event reached the"
                          " tree. Absent without ?proofs=true")


class HousingSubsidy(BaseModel):
    amount: str
    status: str = Field(description="prepared, verified, approved or paid")


class DisputeAdjustment(BaseModel):
    period: str = Field(description="The statement month the adjustment line was booked in (the month the resolution was recorded, or the first open one after it)")
    position: int = Field(description="The line's position: the resolution's event")
    line_no: int


class StatementDispute(BaseModel):
    dispute_id: str
    line_position: int
    line_no: int | None = Field(description="The line disputed at that position; null: all its lines there")
    reason: str
    raised_by: str
    raised_at: str
    status: str = Field(description="open, upheld or rejected")
    resolved_by: str | None
    resolved_at: str | None
    note: str | None
    amount: str | None = Field(description="An upheld dispute's signed correction")
    adjustment: DisputeAdjustment | None


class StatementSummary(BaseModel):
    partner_id: str
    period: str
    gross_sales: str
    returns: str
    net_sales: str
    commission: str
    adjustments: str
    adjusted_sales: str = Field(
        description="Net sales of closed months carried into this month by adjustments (late sales, returns, deals); "
                    "a consignee's settlement counts them as proceeds")
    carried_in: str
    total_due: str
    carried_out: str
    fees: str | None = Field(description="Consignees: fee_rate × net proceeds; null for other partners")
    remittance_due: str | None = Field(
        description="Consignees: proceeds − commission − fees − adjustments when not below zero (else total_due "
                    "is what the company owes); null for other partners")
    remitted: str | None = Field(description="Consignees: remittances received for this month")
    remittance_outstanding: str | None = Field(description="Consignees: remittance_due − remitted")
    payout_status: str
    payout_amount: str | None
    housing_subsidy: HousingSubsidy | None = Field(description="The month's housing subsidy, never part of total_due")
    period_status: str = Field(description="open, or closed: a closed month takes no new lines")
    disputes: list[StatementDispute] = Field(description="Disputes raised against this statement's lines")


class Statement(StatementSummary):
    proof_checkpoint: SignedCheckpoint | None = Field(
        None, description="With ?proofs=true: the latest signed checkpoint, which the lines' inclusion proofs are"
                          " against (null: none signed yet). Absent without ?proofs=true")
    lines: list[StatementLine]


class Statements(BaseModel):
    items: list[StatementSummary]
    next_cursor: str | None


@router.get("/statements/{partner_id}/{period}", response_model=Statement, responses=ERRORS,
            summary="A partner's commission statement for a month")
def read_statement(
    partner_id: UUID,
    period: Month,
    app: Department,
    _: Reader,
    position: Annotated[int, fresh("commissions")],
    as_known_at: KnownAt = None,
    proofs: Annotated[bool, Query(description="Give each line the inclusion proof of its event against the latest"
                                              " signed checkpoint (docs/audit.md, \"Statement lines with proofs\")")]
    = False,
) -> Response:
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        # With proofs the lines are read back and extended: built afresh, never kept.
        found = statement(curs, partner_id, period, as_known_at, lines_cache=None if proofs else lines_cache(app))
        if found is None:
            raise NotFound(f"no partner {partner_id} in the commission read model")
        lines = found.pop("lines_json")
        if proofs:
            checkpoint, lines = _with_proofs(curs, lines)
    # Answered as built, the lines as PostgreSQL wrote them: re-validating hundreds of lines
    # against `Statement` cost more than the query (the model documents the shape; tests
    # hold the answers to it).
    summary = json.dumps(plain_json(found))
    proven = f', "proof_checkpoint": {json.dumps(checkpoint)}' if proofs else ""
    body = f'{summary[:-1]}{proven}, "lines": {lines}}}'
    return Response(body, media_type="application/json", headers={"X-Projection-Position": str(position)})


def _with_proofs(curs: Any, lines_json: str) -> tuple[dict[str, Any] | None, str]:
    """The latest checkpoint and the lines with their inclusion proofs against it, all read in
    three queries however many lines (`merkle.prove_inclusions`)."""
    lines = json.loads(lines_json)
    latest = checkpoints.latest(curs)
    proven = {} if latest is None else merkle.prove_inclusions(curs, [line["position"] for line in lines],
                                                                latest.tree_size)
    for line in lines:
        found = proven.get(line["position"])
        line["inclusion_proof"] = None if found is None else {
            "leaf_index": found[0], "tree_size": latest.tree_size, "event_hash": found[1].hex(),
            "audit_path": [step.hex() for step in found[2]]}
    return (None if latest is None else latest.as_dict()), json.dumps(lines)


@router.get("/statements", response_model=Statements, responses=ERRORS,
            summary="Statements by month and partner, paginated")
def list_statements(
    app: Department,
    _: Reader,
    __: Annotated[int, fresh("commissions")],
    period: Annotated[Month | None, Query()] = None,
    partner_id: UUID | None = None,
    as_known_at: KnownAt = None,
    cursor: Annotated[str | None, Query(max_length=60, pattern=r"^[0-9]{4}-[0-9]{2}/[0-9a-f-]{36}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    after_period, _, after_partner = (cursor or "/").partition("/")
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        # Every month with a line, a payout or subsidy step or a remittance is a statement;
        # months between them only carry a balance through.
        curs.execute(
            "SELECT period, partner_id FROM ("
            " SELECT period, partner_id, recorded_at FROM commission_lines"
            " UNION ALL SELECT period, partner_id, recorded_at FROM commission_payouts"
            " UNION ALL SELECT period, partner_id, recorded_at FROM commission_housing_subsidies"
            " UNION ALL SELECT period, partner_id, recorded_at FROM commission_remittances) AS known"
            " WHERE (%(period)s::text IS NULL OR period = %(period)s)"
            " AND (%(partner)s::uuid IS NULL OR partner_id = %(partner)s)"
            " AND (%(known_at)s::timestamptz IS NULL OR recorded_at <= %(known_at)s)"
            " AND (%(after_period)s = '' OR (period, partner_id::text) > (%(after_period)s, %(after_partner)s))"
            " GROUP BY period, partner_id ORDER BY period, partner_id::text LIMIT %(limit)s",
            {"period": period, "partner": partner_id, "known_at": as_known_at, "after_period": after_period,
             "after_partner": after_partner, "limit": limit + 1},
        )
        keys = curs.fetchall()
        # The page in a fixed number of queries, however long (never one query per statement).
        page = [(key["partner_id"], key["period"]) for key in keys[:limit]]
        found = statements(curs, page, as_known_at)
    last = keys[limit - 1] if len(keys) > limit else None
    return {
        "items": [plain_json(found[key]) for key in page if key in found],
        "next_cursor": f"{last['period']}/{last['partner_id']}" if last else None,
    }

