"""/v1/contracts/{id}: amendments and renewals — requested, previewed, approved or rejected by
someone other than the requester (domain.md §2). Until approved they change nothing."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Department, allowed
from api.models import Command, Commission, Day, NoBody, RecordState, Text
from api.routes.contracts import contract_command
from api.routes.records import COMMAND_ERRORS, ERRORS
from api.tokens import Principal
from channel_domain.values import plain_json

router = APIRouter(prefix="/v1/contracts", tags=["contracts"])
Manager = Annotated[Principal, Depends(allowed("channel_manager"))]
Approver = Annotated[Principal, Depends(allowed("general_manager", "channel_manager"))]
PreviewReader = Annotated[Principal, Depends(allowed("general_manager", "channel_manager", "finance", "auditor"))]

DIGEST_EXAMPLE = "9f2c4e0a5b7d1c3e8f6a0b2d4c6e8a1f3b5d7c9e0a2b4c6d8e1f3a5b7c9d0e2f"


class Amend(Command):
    effective_on: Day
    commission: Commission
    reason: Text | None = None
    rate_justification: Text | None = None

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{
        "effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.035"},
        "reason": "volume incentive agreed in the March review",
    }]}}


class ApproveAmendment(Command):
    preview_digest: str = Field(min_length=1, max_length=200, description="The `digest` of the preview approved")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{"preview_digest": DIGEST_EXAMPLE}]}}


class Reject(Command):
    reason: Text

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{"reason": "not in this year's budget"}]}}


class Renew(Command):
    ends_on: Day

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{"ends_on": "2027-12-31"}]}}


class PreviewLine(BaseModel):
    corrects_period: str = Field(description="The month whose figures the adjustment corrects")
    booked: str = Field(description="What the ledger holds for that month now")
    would_book: str = Field(description="What it would hold once the amendment is approved")
    adjustment: str = Field(description="would_book − booked, booked in the month of the approval")


class Preview(BaseModel):
    """The adjustment lines approving the amendment would book now, priced like the statements."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "contract_id": "6f1c2d3e-4f50-4b8e-9a0e-0b7c1f0e3a52",
        "amendment_id": "2b4c6d8e-1f3a-4b7c-9d0e-2f9f2c4e0a5b",
        "contract_version": 14,
        "books_in": "2026-04",
        "digest": DIGEST_EXAMPLE,
        "lines": [{"corrects_period": "2026-03", "booked": "1800.00", "would_book": "2100.00", "adjustment": "300.00"}],
        "total": "300.00",
    }]})

    contract_id: str
    amendment_id: str
    contract_version: int = Field(description="The contract's version the preview was priced at")
    books_in: str = Field(description="The month (YYYY-MM, company time) whose statement the adjustment lines land "
                                      "on if approved now; part of the digest")
    digest: str = Field(description="SHA-256 (hex) of the preview's canonical text: approve with it")
    lines: list[PreviewLine]
    total: str


@router.post("/{contract_id}/amendments", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Request an amendment; the answer carries amendment_id, the terms change on approval")
def request_amendment(contract_id: UUID, body: Amend, request: Request, app: Department,
                      caller: Manager) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.request_amendment(
        contract_id, body.effective_on, body.commission.model_dump(exclude_none=True), body.reason,
        body.rate_justification))


@router.get("/{contract_id}/amendments/{amendment_id}/preview", response_model=Preview,
            responses={**ERRORS, 422: COMMAND_ERRORS[422]},
            summary="Preview the adjustment lines a requested amendment would book")
def preview_amendment(contract_id: UUID, amendment_id: UUID, app: Department, _: PreviewReader) -> JSONResponse:
    preview = app.preview_amendment(contract_id, amendment_id)
    return JSONResponse(plain_json({
        "contract_id": contract_id,
        "amendment_id": amendment_id,
        "contract_version": preview.contract_version,
        "books_in": preview.books_in,
        "digest": preview.digest,
        "lines": [{"corrects_period": line.corrects_period, "booked": line.booked, "would_book": line.would_book,
                   "adjustment": line.adjustment} for line in preview.lines],
        "total": preview.total,
    }))


@router.post("/{contract_id}/amendments/{amendment_id}/approve", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Approve the amendment as previewed (preview_stale if the ledger moved)")
def approve_amendment(contract_id: UUID, amendment_id: UUID, body: ApproveAmendment, request: Request,
                      app: Department, caller: Approver) -> JSONResponse:
    return contract_command(request, caller, app, body,
                lambda: app.approve_amendment(contract_id, amendment_id, body.preview_digest))


@router.post("/{contract_id}/amendments/{amendment_id}/reject", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Reject a requested amendment")
def reject_amendment(contract_id: UUID, amendment_id: UUID, body: Reject, request: Request, app: Department,
                     caller: Approver) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.reject_amendment(contract_id, amendment_id, body.reason))


@router.post("/{contract_id}/renew", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Request a renewal; the answer carries renewal_id, ends_on changes on approval")
def request_renewal(contract_id: UUID, body: Renew, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.request_renewal(contract_id, body.ends_on))


@router.post("/{contract_id}/renewals/{renewal_id}/approve", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Approve a requested renewal (the exclusivity rules are checked now)")
def approve_renewal(contract_id: UUID, renewal_id: UUID, request: Request, app: Department, caller: Approver,
                    body: NoBody | None = None) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.approve_renewal(contract_id, renewal_id))


@router.post("/{contract_id}/renewals/{renewal_id}/reject", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Reject a requested renewal")
def reject_renewal(contract_id: UUID, renewal_id: UUID, body: Reject, request: Request, app: Department,
                   caller: Approver) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.reject_renewal(contract_id, renewal_id, body.reason))
