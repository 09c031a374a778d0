"""/v1/contracts: drafting, approval, signing, termination, sales (amendments and renewals:
contract_requests)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api import commands
from api.deps import Department, allowed
from api.models import Command, Commission, Day, Money, NoBody, Rate, RecordState, ShortText, Text
from api.routes.records import COMMAND_ERRORS, add_record_reads
from api.tokens import Principal
from channel_domain.contract import Contract

router = APIRouter(prefix="/v1/contracts", tags=["contracts"])
Manager = Annotated[Principal, Depends(allowed("channel_manager"))]
Approver = Annotated[Principal, Depends(allowed("general_manager", "channel_manager"))]
SalesRecorder = Annotated[Principal, Depends(allowed("integration", "channel_specialist"))]


class Draft(Command):
    partner_id: UUID
    starts_on: Day
    ends_on: Day
    commission: Commission
    territory: ShortText | None = Field(None, description="Required for an enterprise agent, absent for a sales agent")
    products: list[ShortText] | None = Field(None, max_length=500)
    price_policy: Text | None = None
    goals: Text | None = None
    obligations: Text | None = None
    support: Text | None = None
    confidentiality: Text | None = None
    fee_rate: Rate | None = Field(None, description="Consignee contracts only")
    exclusive: bool = False
    rate_justification: Text | None = None

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{
        "partner_id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50",
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "commission": {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]},
        "territory": "Zhejiang",
        "products": ["router", "switch"],
        "price_policy": "list price less 8 %",
        "goals": "grow Zhejiang revenue 20 %",
        "obligations": "monthly sales report",
        "support": "training and co-marketing",
        "confidentiality": "two years after the term",
    }]}}



class Sign(Command):
    signed_on: Day


class Terminate(Command):
    effective_on: Day
    reason: Text


class Sale(Command):
    order_id: ShortText
    amount: Money
    sold_on: Day
    product: ShortText | None = None
    region: ShortText | None = None
    employee_id: UUID | None = Field(None, description="The employee credited with the sale")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"order_id": "SO-2026-0001", "amount": "60000.00", "sold_on": "2026-03-02", "region": "Zhejiang"}
    ]}}


class Return(Command):
    order_id: ShortText
    amount: Money
    returned_on: Day
    return_id: ShortText | None = Field(None, description="Unique per contract: a repeat is refused (duplicate_return)")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"order_id": "SO-2026-0001", "amount": "1000.00", "returned_on": "2026-03-05", "return_id": "RMA-77"}
    ]}}


def contract_command(request: Request, caller: Principal, app: Department, body: Command | None,
                     call) -> JSONResponse:
    """Runs a command on a contract and answers with its state (every contract router's)."""
    return commands.run(request, caller, app, Contract, call, body)


@router.post("", status_code=201, response_model=RecordState, responses=COMMAND_ERRORS, summary="Draft a contract")
def draft(body: Draft, request: Request, app: Department, caller: Manager) -> JSONResponse:
    fields = body.model_dump(exclude_none=True)
    return commands.run(request, caller, app, Contract, lambda: app.draft_contract(**fields), body, created=True)


@router.post("/{contract_id}/submit", response_model=RecordState, responses=COMMAND_ERRORS)
def submit(contract_id: UUID, request: Request, app: Department, caller: Manager,
           body: NoBody | None = None) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.submit_contract(contract_id))


@router.post("/{contract_id}/approve", response_model=RecordState, responses=COMMAND_ERRORS)
def approve(contract_id: UUID, request: Request, app: Department, caller: Approver,
            body: NoBody | None = None) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.approve_contract(contract_id))


@router.post("/{contract_id}/sign", response_model=RecordState, responses=COMMAND_ERRORS)
def sign(contract_id: UUID, body: Sign, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.sign_contract(contract_id, body.signed_on))


@router.post("/{contract_id}/terminate", response_model=RecordState, responses=COMMAND_ERRORS)
def terminate(contract_id: UUID, body: Terminate, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.terminate_contract(contract_id, body.effective_on, body.reason))


@router.post("/{contract_id}/sales", response_model=RecordState, responses=COMMAND_ERRORS, summary="Record a sale")
def record_sale(contract_id: UUID, body: Sale, request: Request, app: Department, caller: SalesRecorder) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.record_sale(contract_id, **body.model_dump()))


@router.post("/{contract_id}/returns", response_model=RecordState, responses=COMMAND_ERRORS, summary="Record a return")
def record_return(contract_id: UUID, body: Return, request: Request, app: Department,
                  caller: SalesRecorder) -> JSONResponse:
    return contract_command(request, caller, app, body, lambda: app.record_return(contract_id, **body.model_dump()))


add_record_reads(router, Contract, "contract")
