"""/v1/employees: hiring, probation, discipline, reviews (hr); evaluations (managers too)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api import commands
from api.deps import Department, allowed
from api.models import Command, Day, NoBody, Period, RecordState, Score, ShortText, Text
from api.routes.records import COMMAND_ERRORS, add_record_reads
from api.tokens import Principal
from channel_domain.employee import Employee

router = APIRouter(prefix="/v1/employees", tags=["employees"])
HR = Annotated[Principal, Depends(allowed("hr"))]
Evaluator = Annotated[Principal, Depends(allowed("channel_manager", "hr"))]
Manager = Annotated[Principal, Depends(allowed("channel_manager"))]
JobRole = Literal["director", "manager", "supervisor", "specialist", "sales_rep"]


class Hire(Command):
    name: ShortText
    role: JobRole
    hired_on: Day
    manager_id: UUID | None = None
    contract_months: int = Field(12, ge=0, le=120, description="0 = open-ended")
    probation_months: int | None = Field(None, ge=0, le=6, description="Default and maximum: the legal cap for the term, never above 3")
    national_id: ShortText | None = None
    bank_card: ShortText | None = None
    login: ShortText | None = Field(None, description="The actor name this employee's tokens carry; unique")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2026-01-05", "manager_id": None, "login": "wang.fang"}
    ]}}


class OnDate(Command):
    on: Day


class WithReason(Command):
    on: Day
    reason: Text


class Promote(Command):
    role: JobRole
    on: Day


class Transfer(Command):
    manager_id: UUID
    on: Day


class Evaluate(Command):
    period: Period
    score: Score
    notes: Text | None = None


class Warn(Command):
    level: Literal["oral", "written", "serious", "dereliction"]
    reason: Text


class ContractReview(Command):
    on: Day
    decision: Literal["renew", "not_renew"]
    contract_months: int | None = Field(None, ge=0, le=120, description="0 = open-ended")


class Separation(Command):
    on: Day
    reason: Literal["contract_expired", "resignation", "dismissal", "probation_failed"]

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"on": "2026-06-30", "reason": "resignation"}]}}


class DismissalProposal(Command):
    on: Day
    reason: Text

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"on": "2026-09-30", "reason": "targets missed three quarters running (工作表现不符合要求)"}]}}


def _change(request: Request, caller: Principal, app: Department, body: Command, call) -> JSONResponse:
    return commands.run(request, caller, app, Employee, call, body)


@router.post("", status_code=201, response_model=RecordState, responses=COMMAND_ERRORS, summary="Hire an employee")
def hire(body: Hire, request: Request, app: Department, caller: HR) -> JSONResponse:
    return commands.run(request, caller, app, Employee, lambda: app.hire_employee(**body.model_dump()), body, created=True)


@router.post("/{employee_id}/regularize", response_model=RecordState, responses=COMMAND_ERRORS)
def regularize(employee_id: UUID, body: OnDate, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.regularize_employee(employee_id, body.on))


@router.post("/{employee_id}/fail-probation", response_model=RecordState, responses=COMMAND_ERRORS)
def fail_probation(employee_id: UUID, body: WithReason, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.fail_probation(employee_id, body.on, body.reason))


@router.post("/{employee_id}/promote", response_model=RecordState, responses=COMMAND_ERRORS)
def promote(employee_id: UUID, body: Promote, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.promote_employee(employee_id, body.role, body.on))


@router.post("/{employee_id}/transfer", response_model=RecordState, responses=COMMAND_ERRORS)
def transfer(employee_id: UUID, body: Transfer, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.transfer_employee(employee_id, body.manager_id, body.on))


@router.post("/{employee_id}/evaluations", response_model=RecordState, responses=COMMAND_ERRORS)
def evaluate(employee_id: UUID, body: Evaluate, request: Request, app: Department, caller: Evaluator) -> JSONResponse:
    return _change(request, caller, app, body,
                   lambda: app.evaluate_employee(employee_id, body.period, body.score, body.notes))


@router.post("/{employee_id}/warnings", response_model=RecordState, responses=COMMAND_ERRORS)
def warn(employee_id: UUID, body: Warn, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.warn_employee(employee_id, body.level, body.reason))


@router.post("/{employee_id}/contract-reviews", response_model=RecordState, responses=COMMAND_ERRORS)
def review_contract(employee_id: UUID, body: ContractReview, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body,
                   lambda: app.review_employee_contract(employee_id, body.on, body.decision, body.contract_months))


@router.post("/{employee_id}/dismiss", response_model=RecordState, responses=COMMAND_ERRORS)
def dismiss(employee_id: UUID, body: WithReason, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.dismiss_employee(employee_id, body.on, body.reason))


@router.post("/{employee_id}/separation", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Record how and when the employment ended; nothing is credited or recorded against it after")
def separate(employee_id: UUID, body: Separation, request: Request, app: Department, caller: HR) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.separate_employee(employee_id, body.on, body.reason))


@router.post("/{employee_id}/dismissal-proposals", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Propose a dismissal for poor performance (the employee's manager); the answer carries "
                     "proposal_id")
def propose_dismissal(employee_id: UUID, body: DismissalProposal, request: Request, app: Department,
                      caller: Manager) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.propose_dismissal(employee_id, body.on, body.reason))


@router.post("/{employee_id}/dismissal-proposals/{proposal_id}/approve", response_model=RecordState,
             responses=COMMAND_ERRORS, summary="Approve a dismissal proposal (HR, not the proposer): dismissed")
def approve_dismissal(employee_id: UUID, proposal_id: UUID, request: Request, app: Department, caller: HR,
                      body: NoBody | None = None) -> JSONResponse:
    return _change(request, caller, app, body, lambda: app.approve_dismissal(employee_id, proposal_id))


@router.post("/{employee_id}/personal-data/erase", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Erase an employee's personal data (PIPL): the events stay, the fields become unreadable")
def erase_personal_data(employee_id: UUID, request: Request, app: Department, caller: HR,
                        body: NoBody | None = None) -> JSONResponse:
    return commands.run(request, caller, app, Employee, lambda: app.erase_personal_data(employee_id), body)


add_record_reads(router, Employee, "employee")
