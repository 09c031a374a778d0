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


class SetTarget(Command):
    assignee_type: Literal["employee", "partner", "team"]
    assignee_id: ShortText
    period: Period
    amount: Money
    kpis: dict[KpiName, Ratio] = Field(min_length=1, max_length=20, description="KPI → weight; weights sum to 1")
    parent_id: UUID | None = None

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{
        "assignee_type": "employee", "assignee_id": "e-1024", "period": "2026-Q1", "amount": "300000.00",
        "kpis": {"sales_revenue": "0.6", "partner_satisfaction": "0.25", "active_second_tier_agents": "0.15"},
    }]}}


class Revision(Command):
    amount: Money
    reason: Text



class Close(Command):
    kpi_results: dict[KpiName, Ratio] | None = Field(
        None, description="KPI → attainment ratio, for KPIs not computed from sales")


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


@router.post("/{target_id}/close", response_model=RecordState, responses=COMMAND_ERRORS)
def close(target_id: UUID, request: Request, app: Department, caller: Manager,
          body: Close | None = None) -> JSONResponse:
    results = body.kpi_results if body else None
    return commands.run(request, caller, app, SalesTarget, lambda: app.close_target(target_id, results), body)


add_record_reads(router, SalesTarget, "target")
