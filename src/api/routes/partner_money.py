"""/v1/partners/{id}/remittances and /housing-subsidies: money a consignee hands over, and the
housing subsidy (房补) paid to a social-channel agent through four hands (domain.md §1, §6)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import Department
from api.models import Command, Day, Money, NoBody, RecordState
from api.routes.commissions import Month
from api.routes.partners import Channel, Finance, GeneralManager, partner_command
from api.routes.records import COMMAND_ERRORS

router = APIRouter(prefix="/v1/partners", tags=["partners"])


class SubsidyPaid(Command):
    paid_on: Day

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{"paid_on": "2026-04-10"}]}}


class Remittance(Command):
    period: Month
    amount: Money
    received_on: Day

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"period": "2026-03", "amount": "7040.00", "received_on": "2026-04-14"}]}}


class Subsidy(Command):
    period: Month
    amount: Money

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"period": "2026-03", "amount": "800.00"}]}}




@router.post("/{partner_id}/remittances", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Record a consignee's remittance for a month (consignees only: not_a_consignee)")
def record_remittance(partner_id: UUID, body: Remittance, request: Request, app: Department,
                      caller: Finance) -> JSONResponse:
    return partner_command(request, caller, app, body,
                   lambda: app.record_remittance(partner_id, body.period, body.amount, body.received_on))


@router.post("/{partner_id}/housing-subsidies", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Prepare a month's housing subsidy (social-channel agents only: subsidy_not_applicable)")
def prepare_subsidy(partner_id: UUID, body: Subsidy, request: Request, app: Department,
                    caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body,
                   lambda: app.prepare_housing_subsidy(partner_id, body.period, body.amount))


@router.post("/{partner_id}/housing-subsidies/{period}/verify", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Verify a prepared housing subsidy (not whoever prepared it)")
def verify_subsidy(partner_id: UUID, period: Month, request: Request, app: Department, caller: Finance,
                   body: NoBody | None = None) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.verify_housing_subsidy(partner_id, period))


@router.post("/{partner_id}/housing-subsidies/{period}/approve", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Approve a verified housing subsidy (neither preparer nor verifier)")
def approve_subsidy(partner_id: UUID, period: Month, request: Request, app: Department,
                    caller: GeneralManager, body: NoBody | None = None) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.approve_housing_subsidy(partner_id, period))


@router.post("/{partner_id}/housing-subsidies/{period}/pay", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Pay an approved housing subsidy to the approved payout account")
def pay_subsidy(partner_id: UUID, period: Month, body: SubsidyPaid, request: Request, app: Department,
                caller: Finance) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.pay_housing_subsidy(partner_id, period, body.paid_on))
