"""/v1/partners/{id}/trainings: training sessions held for a partner's staff."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from api.deps import Department
from api.models import Command, Day, RecordState, ShortText
from api.routes.partners import Channel, partner_command
from api.routes.records import COMMAND_ERRORS

router = APIRouter(prefix="/v1/partners", tags=["partners"])
HeadCount = Annotated[int, Field(strict=True, ge=0, le=1_000_000, description="A whole number of people")]


class Training(Command):
    held_on: Day
    topic: ShortText
    trainer_id: UUID = Field(description="The employee who trained; employed on held_on")
    attendees: HeadCount
    passed: HeadCount = Field(description="How many passed the final test; at most the attendees")

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{
        "held_on": "2026-04-10", "topic": "Product line 2026", "trainer_id": "5f0c6f3e-8d1a-4f8e-9a65-2b1d4c7e9f10",
        "attendees": 12, "passed": 10,
    }]}}


@router.post("/{partner_id}/trainings", response_model=RecordState, responses=COMMAND_ERRORS,
             summary="Record a training session (「培训过多少次,有多少代理商参加,有多少人通过了最终测试」); "
                     "the answer carries training_id")
def record_training(partner_id: UUID, body: Training, request: Request, app: Department,
                    caller: Channel) -> JSONResponse:
    return partner_command(request, caller, app, body, lambda: app.record_training(
        partner_id, body.held_on, body.topic, body.trainer_id, body.attendees, body.passed))
