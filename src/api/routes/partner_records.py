"""/v1/partners/{id}: the archive (档案), corrective plans and inventory (进销存) reports."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api.deps import Department, allowed
from api.models import Command, Day, RecordState, ShortText, Text
from api.routes.partners import Channel, Manager, partner_command
from api.routes.records import COMMAND_ERRORS
from api.tokens import Principal

router = APIRouter(prefix="/v1/partners", tags=["partners"])
StockReporter = Annotated[Principal, Depends(allowed("integration", "channel_specialist"))]
Units = Annotated[int, Field(ge=0, strict=True, description="Whole units, 0 or more")]


class Document(Command):
    kind: Literal["business_licence", "legal_representative_id", "financial_assessment", "sales_model",
                  "key_staff", "other"]
    reference: ShortText = Field(description="e.g. the licence number")
    issued_on: Day | None = None
    expires_on: Day | None = None

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"kind": "business_licence", "reference": "91330100MA2B3C4D5E", "issued_on": "2024-03-01",
         "expires_on": "2044-02-29"},
    ]}}


class CorrectivePlan(Command):
    actions: list[Text] = Field(min_length=1, max_length=50)
    due_on: Day

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"actions": ["weekly sales report", "two staff trained by June"], "due_on": "2026-06-30"},
    ]}}


class PlanClosing(Command):
    outcome: Literal["met", "failed"] = Field(description="failed leads to termination or a new plan")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{"outcome": "met"}]}}


class StockLine(Command):
    product: ShortText
    opening: Units
    received: Units
    sold: Units
    closing: Units


class InventoryReport(Command):
    as_of: Day
    lines: list[StockLine] = Field(min_length=1, max_length=1000)
    correction_reason: Text | None = Field(
        None, description="Marks a correction: its opening need not follow the previous report's closing"
    )

    model_config = Command.model_config | {"json_schema_extra": {"examples": [
        {"as_of": "2026-03-31", "lines": [
            {"product": "router", "opening": 120, "received": 60, "sold": 95, "closing": 85},
        ]},
    ]}}



@router.post("/{partner_id}/documents", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="File a document in the partner's archive; the answer carries document_id")
def record_document(partner_id: UUID, body: Document, request: Request, app: Department,
                    caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.record_partner_document(
        partner_id, body.kind, body.reference, body.issued_on, body.expires_on))


@router.post("/{partner_id}/corrective-plans", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Record a corrective plan; the answer carries plan_id")
def record_corrective_plan(partner_id: UUID, body: CorrectivePlan, request: Request, app: Department,
                           caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body,
                   lambda: app.record_corrective_plan(partner_id, list(body.actions), body.due_on))


@router.post("/{partner_id}/corrective-plans/{plan_id}/close", response_model=RecordState, responses=COMMAND_ERRORS)
def close_corrective_plan(partner_id: UUID, plan_id: UUID, body: PlanClosing, request: Request, app: Department,
                          caller: Manager) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.close_corrective_plan(partner_id, plan_id, body.outcome))


@router.post("/{partner_id}/inventory-reports", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Report stock per product (distributors and consignees)")
def report_inventory(partner_id: UUID, body: InventoryReport, request: Request, app: Department,
                     caller: StockReporter) -> JSONResponse:
    lines = [line.model_dump() for line in body.lines]
    return partner_command(request, caller, app, body,
                   lambda: app.report_inventory(partner_id, body.as_of, lines, body.correction_reason))
