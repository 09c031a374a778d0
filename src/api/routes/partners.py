"""/v1/partners: application and review, lifecycle, visits, complaints, money."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api import commands
from api.deps import Department, allowed
from api.models import Command, Day, KpiName, Money, NoBody, Period, Rate, RecordState, Score, ShortText, Text
from api.routes.records import COMMAND_ERRORS, add_record_reads
from api.tokens import Principal
from channel_domain.partner import Partner

router = APIRouter(prefix="/v1/partners", tags=["partners"])
Manager = Annotated[Principal, Depends(allowed("channel_manager"))]
Channel = Annotated[Principal, Depends(allowed("channel_manager", "channel_specialist"))]
Finance = Annotated[Principal, Depends(allowed("finance"))]
GeneralManager = Annotated[Principal, Depends(allowed("general_manager"))]
DealRecorder = Annotated[Principal, Depends(allowed("channel_specialist", "integration"))]
Kind = Literal["enterprise_agent", "sales_agent", "consignee", "broker", "distributor", "retailer", "direct_store"]


class Apply(Command):
    kind: Kind
    name: ShortText
    region: ShortText | None = None
    grade: Literal["A", "B", "C", "D"] | None = Field(None, description="Required for direct stores")
    commission_rate: Rate | None = Field(None, description="Required for brokers")
    parent_partner_id: UUID | None = None
    recruited_by: UUID | None = Field(None, description="The employee who recruited the partner")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"kind": "enterprise_agent", "name": "Hangzhou Trading Co.", "region": "Zhejiang"},
        {"kind": "direct_store", "name": "Store 12", "grade": "A"},
        {"kind": "broker", "name": "Li Wei", "commission_rate": "0.01"},
    ]}}


class Review(Command):
    decision: Literal["approve", "reject"]
    notes: Text | None = None


class Reason(Command):
    reason: Text


class LifecycleChange(Command):
    reason: Text
    on: Day | None = Field(None, description="The first day the change applies; default today")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"reason": "overdue remittance", "on": "2026-05-01"},
    ]}}


class ChangeRejection(Command):
    reason: Text | None = None

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"reason": "the account holder is not the partner"},
    ]}}


class Terminate(Command):
    reason: Text
    on: Day = Field(description="The partner's last day of business: sales and deals dated after it are "
                                "refused, and its contracts in force after it end with it")


class Visit(Command):
    visited_on: Day
    employee_id: UUID
    notes: Text | None = None


class Evaluation(Command):
    period: Period
    scores: dict[KpiName, Score] = Field(
        min_length=1, max_length=50, examples=[{"sales_revenue": 82, "partner_satisfaction": 90}]
    )


class Complaint(Command):
    subject: ShortText
    detail: Text | None = None


class Note(Command):
    note: Text


class MoneyOnDate(Command):
    amount: Money
    on: Day


class AccountChange(Command):
    account: ShortText



class Deal(Command):
    deal_id: ShortText
    amount: Money
    closed_on: Day


class Payout(Command):
    period: Period
    amount: Money


class Paid(Command):
    paid_on: Day


def partner_command(request: Request, caller: Principal, app: Department, body: Command | None,
                    call) -> JSONResponse:
    """Runs a command on a partner and answers with its state (every partner router's)."""
    return commands.run(request, caller, app, Partner, call, body)


@router.post("", status_code=201, response_model=RecordState, responses=COMMAND_ERRORS, summary="Apply for partnership")
def apply(body: Apply, request: Request, app: Department, caller: Channel) -> JSONResponse:
    return commands.run(request, caller, app, Partner, lambda: app.register_partner(**body.model_dump()), body, created=True)


@router.post("/{partner_id}/review", response_model=RecordState, responses=COMMAND_ERRORS)
def review(partner_id: UUID, body: Review, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.review_partner(partner_id, body.decision, body.notes))


@router.post("/{partner_id}/suspend", response_model=RecordState, responses=COMMAND_ERRORS)
def suspend(partner_id: UUID, body: LifecycleChange, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.suspend_partner(partner_id, body.reason, body.on))


@router.post("/{partner_id}/reinstate", response_model=RecordState, responses=COMMAND_ERRORS)
def reinstate(partner_id: UUID, body: LifecycleChange, request: Request, app: Department,
              caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.reinstate_partner(partner_id, body.reason, body.on))


@router.post("/{partner_id}/terminate", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Terminate a partner and, with the same last day, its contracts (terminated_contracts)")
def terminate(partner_id: UUID, body: Terminate, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.terminate_partner(partner_id, body.reason, body.on))


@router.post("/{partner_id}/visits", response_model=RecordState, responses=COMMAND_ERRORS)
def visit(partner_id: UUID, body: Visit, request: Request, app: Department, caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body,
                   lambda: app.record_visit(partner_id, body.visited_on, body.employee_id, body.notes))


@router.post("/{partner_id}/evaluations", response_model=RecordState, responses=COMMAND_ERRORS)
def evaluate(partner_id: UUID, body: Evaluation, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.evaluate_partner(partner_id, body.period, dict(body.scores)))


@router.post("/{partner_id}/complaints", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Open a complaint; the answer carries complaint_id")
def open_complaint(partner_id: UUID, body: Complaint, request: Request, app: Department, caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.open_complaint(partner_id, body.subject, body.detail))


@router.post("/{partner_id}/complaints/{complaint_id}/resolve", response_model=RecordState, responses=COMMAND_ERRORS)
def resolve_complaint(partner_id: UUID, complaint_id: UUID, body: Note, request: Request, app: Department,
                      caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.resolve_complaint(partner_id, complaint_id, body.note))


@router.post("/{partner_id}/complaints/{complaint_id}/escalate", response_model=RecordState, responses=COMMAND_ERRORS)
def escalate_complaint(partner_id: UUID, complaint_id: UUID, body: Note, request: Request, app: Department,
                       caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.escalate_complaint(partner_id, complaint_id, body.note))


@router.post("/{partner_id}/deposit/payments", response_model=RecordState, responses=COMMAND_ERRORS)
def pay_deposit(partner_id: UUID, body: MoneyOnDate, request: Request, app: Department, caller: Finance) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.pay_deposit(partner_id, body.amount, body.on))


@router.post("/{partner_id}/deposit/refunds", response_model=RecordState, responses=COMMAND_ERRORS)
def refund_deposit(partner_id: UUID, body: MoneyOnDate, request: Request, app: Department, caller: Finance) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.refund_deposit(partner_id, body.amount, body.on))


@router.post("/{partner_id}/payout-account/changes", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Request a payout-account change; the answer carries change_id")
def request_account_change(partner_id: UUID, body: AccountChange, request: Request, app: Department,
                           caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.request_payout_account_change(partner_id, body.account))


@router.post("/{partner_id}/payout-account/changes/{change_id}/approve", response_model=RecordState,
             responses=COMMAND_ERRORS)
def approve_account_change(partner_id: UUID, change_id: UUID, request: Request, app: Department, caller: Finance,
                           body: NoBody | None = None) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.approve_payout_account_change(partner_id, change_id))


@router.post("/{partner_id}/payout-account/changes/{change_id}/reject", response_model=RecordState,
             responses=COMMAND_ERRORS)
def reject_account_change(partner_id: UUID, change_id: UUID, request: Request, app: Department, caller: Finance,
                          body: ChangeRejection | None = None) -> JSONResponse:
    reason = body.reason if body else None
    return partner_command(request, caller, app, body, lambda: app.reject_payout_account_change(partner_id, change_id, reason))


@router.post("/{partner_id}/deals", response_model=RecordState, responses=COMMAND_ERRORS, summary="Record a broker's deal")
def record_deal(partner_id: UUID, body: Deal, request: Request, app: Department, caller: DealRecorder) -> JSONResponse:
    return partner_command(request, caller, app, body,
                   lambda: app.record_deal(partner_id, body.deal_id, body.amount, body.closed_on))


@router.post("/{partner_id}/payouts", response_model=RecordState, responses=COMMAND_ERRORS, summary="Prepare a payout")
def prepare_payout(partner_id: UUID, body: Payout, request: Request, app: Department, caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.prepare_payout(partner_id, body.period, body.amount))


@router.post("/{partner_id}/payouts/{period}/verify", response_model=RecordState, responses=COMMAND_ERRORS)
def verify_payout(partner_id: UUID, period: Period, request: Request, app: Department, caller: Finance,
                  body: NoBody | None = None) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.verify_payout(partner_id, period))


@router.post("/{partner_id}/payouts/{period}/approve", response_model=RecordState, responses=COMMAND_ERRORS)
def approve_payout(partner_id: UUID, period: Period, request: Request, app: Department, caller: GeneralManager,
                   body: NoBody | None = None) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.approve_payout(partner_id, period))


@router.post("/{partner_id}/payouts/{period}/pay", response_model=RecordState, responses=COMMAND_ERRORS)
def pay_payout(partner_id: UUID, period: Period, body: Paid, request: Request, app: Department,
               caller: Finance) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.pay_payout(partner_id, period, body.paid_on))


add_record_reads(router, Partner, "partner")
