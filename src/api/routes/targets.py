"""/v1/targets: setting and decomposing targets, revisions, closing."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api import commands
from api.deps import Department, allowed
from api.models import Command, KpiName, Money, NoBody, Period, RecordState, ShortText, Text
from api.routes.records import COMMAND_ERRORS, add_record_reads
from api.tokens import Principal
from channel_domain.sales_target import SalesTarget

router = APIRouter(prefix="/v1/targets", tags=["targets"])
Manager = Annotated[Principal, Depends(allowed("channel_manager"))]
Approver = Annotated[Principal, Depends(allowed("general_manager", "channel_manager"))]
Ratio = Annotated[str, Field(pattern=r"^\d{1,6}(\.\d{1,6})?$", examples=["0.6"])]


class CountedKpi(Command):
    weight: Ratio
    goal: Ratio = Field(description="What counts as full attainment: attainment = actual ÷ goal")


class SetTarget(Command):
    assignee_type: Literal["employee", "partner", "team"]
    assignee_id: ShortText = Field(description="An existing employee or partner id; a team by its leader's employee id")
    period: Period
    amount: Money
    kpis: dict[KpiName, Ratio | CountedKpi] = Field(
        min_length=1, max_length=20,
        description="KPI → weight, or {weight, goal} for the counted KPIs new_partners, "
                    "active_second_tier_agents and training_pass_rate; weights sum to 1")
    parent_id: UUID | None = None

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{
        "assignee_type": "employee", "assignee_id": "5f0c6f3e-8d1a-4f8e-9a65-2b1d4c7e9f10", "period": "2026-Q1",
        "amount": "300000.00",
        "kpis": {"sales_revenue": "0.6", "partner_satisfaction": "0.25",
                 "new_partners": {"weight": "0.15", "goal": "4"}},
    }]}}


class Revision(Command):
    amount: Money
    reason: Text



class Close(Command):
    kpi_results: dict[KpiName, Ratio] | None = Field(
        None, description="KPI → attainment ratio, for every KPI the service cannot compute (never "
                          "sales_revenue, new_partners, active_second_tier_agents, training_pass_rate)")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"kpi_results": {"partner_satisfaction": "0.9"}}]}}


@router.post("", status_code=201, response_model=RecordState, responses=COMMAND_ERRORS, summary="Set a target")
def set_target(body: SetTarget, request: Request, app: Department, caller: Manager) -> JSONResponse:
    return commands.run(request, caller, app, SalesTarget, lambda: app.set_target(**body.model_dump()), body,
                        created=True)


@router.post("/{target_id}/revisions", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Request a revision; the answer carries revision_id")
def request_revision(target_id: UUID, body: Revision, request: Request, app: Department,
                     caller: Manager) -> JSONResponse:
    return commands.run(request, caller, app, SalesTarget,
                        lambda: app.request_target_revision(target_id, body.amount, body.reason), body)


@router.post("/{target_id}/revisions/{revision_id}/approve", response_model=RecordState, responses=COMMAND_ERRORS)
def approve_revision(target_id: UUID, revision_id: UUID, request: Request, app: Department, caller: Approver,
                     body: NoBody | None = None) -> JSONResponse:
    return commands.run(request, caller, app, SalesTarget,
                        lambda: app.approve_target_revision(target_id, revision_id), body)


@router.post("/{target_id}/close", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Close at period end: enter the results of the KPIs not computed (status closing), or, "
                     "when every KPI is computed, close")
def close(target_id: UUID, request: Request, app: Department, caller: Manager,
          body: Close | None = None) -> JSONResponse:
    results = body.kpi_results if body else None
    return commands.run(request, caller, app, SalesTarget, lambda: app.close_target(target_id, results), body)


@router.post("/{target_id}/close/confirm", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Confirm the entered results (not whoever entered them): closed")
def confirm_close(target_id: UUID, request: Request, app: Department, caller: Approver,
                  body: NoBody | None = None) -> JSONResponse:
    return commands.run(request, caller, app, SalesTarget, lambda: app.confirm_target_closing(target_id), body)


add_record_reads(router, SalesTarget, "target")
