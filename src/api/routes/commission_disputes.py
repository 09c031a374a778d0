"""Disputes of commission statement lines: raised by the channel department or finance,
resolved by finance — never by whoever raised them (domain.md §5). An upheld dispute's signed
amount is booked as an adjustment line in the month the resolution is recorded (or the first
open one after it), correcting the disputed one."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api import commands
from api.deps import Department, allowed
from api.models import Command, RecordState, Text
from api.routes.commissions import Month
from api.routes.records import COMMAND_ERRORS, add_record_reads
from api.tokens import Principal
from channel_domain.application import CommandOutcome
from channel_domain.commission_dispute import CommissionDispute
from projections.commissions import statement_line

router = APIRouter(prefix="/v1/commissions/statements", tags=["commissions"])
records = APIRouter(prefix="/v1/commissions/disputes", tags=["commissions"])
Raiser = Annotated[Principal, Depends(allowed("channel_specialist", "channel_manager", "finance"))]
Finance = Annotated[Principal, Depends(allowed("finance"))]
SignedMoney = Annotated[str, Field(
    pattern=r"^-?\d{1,13}(\.\d{1,2})?$",
    description="CNY as a signed decimal string, at most 2 places: negative reduces what is due",
    examples=["-150.00"],
)]


class RaiseDispute(Command):
    line_position: int = Field(ge=1, le=2**62, description="The `position` of the line on the statement")
    line_no: int | None = Field(None, ge=1, le=100_000,
                                description="Which of the lines at that position; default: all of them")
    reason: Text

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"line_position": 1042, "reason": "order SO-1 was sold at list price; the 3 % tier is wrong"}]}}


class ResolveDispute(Command):
    outcome: Literal["upheld", "rejected"]
    note: Text
    amount: SignedMoney | None = Field(
        None, description="Required (non-zero) when upheld, booked as an adjustment in the month it is recorded (or the first open one after it); "
                          "refused when rejected")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"outcome": "upheld", "note": "tier applied twice", "amount": "-150.00"},
        {"outcome": "rejected", "note": "the rate is the contract's"},
    ]}}


def _dispute_location(outcome: CommandOutcome) -> str:
    return f"/v1/commissions/disputes/{outcome.id}"


@router.post("/{partner_id}/{period}/disputes", status_code=201, response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Dispute a line of a partner's statement")
def raise_dispute(partner_id: UUID, period: Month, body: RaiseDispute, request: Request, app: Department,
                  caller: Raiser) -> JSONResponse:
    """`404` for an unknown partner; `422 unknown_line` when the statement has no line at
    `line_position` (and `line_no`). Answers the dispute with `dispute_id`; `Location` is
    `/v1/commissions/disputes/{dispute_id}`."""
    return commands.run(
        request, caller, app, CommissionDispute,
        lambda: app.raise_commission_dispute(partner_id, period, body.line_position, body.reason, statement_line,
                                             body.line_no),
        body, created=True, location=_dispute_location)


@router.post("/{partner_id}/{period}/disputes/{dispute_id}/resolve", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Resolve a dispute (finance; not whoever raised it)")
def resolve_dispute(partner_id: UUID, period: Month, dispute_id: UUID, body: ResolveDispute, request: Request,
                    app: Department, caller: Finance) -> JSONResponse:
    """`403 segregation_of_duties` for whoever raised it (as an actor or through their
    employee record); `422 invalid_transition` once resolved; `422 validation_error` for an
    upheld dispute without a non-zero `amount`, or a rejected one with an amount."""
    return commands.run(
        request, caller, app, CommissionDispute,
        lambda: app.resolve_commission_dispute(partner_id, period, dispute_id, body.outcome, body.note, body.amount),
        body)


add_record_reads(records, CommissionDispute, "dispute")
