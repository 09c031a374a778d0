"""/v1/webhooks: subscriptions that POST the feed's items to a URL, signed (Standard Webhooks).
The logic is in integration/webhook_subscriptions.py; delivery in integration/webhooks.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.commands import idempotency_key
from api.deps import Department, allowed
from api.errors import Problem
from api.models import Command
from api.routes.records import COMMAND_ERRORS, ERRORS
from api.tokens import Principal
from channel_domain.values import plain_json
from integration.webhook_subscriptions import Actor, Subscriptions

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Integration = Annotated[Principal, Depends(allowed("integration"))]
# Auditors read everything: the subscriptions and who changed them, never a secret.
Reader = Annotated[Principal, Depends(allowed("integration", "auditor"))]

EventType = Annotated[str, Field(min_length=1, max_length=200, examples=["Contract.SaleRecorded"])]
StreamType = Annotated[str, Field(min_length=1, max_length=100, examples=["Contract"])]


class NewWebhook(Command):
    url: str = Field(min_length=1, max_length=2000, description="http:// or https://, to an allowed host"
                     " (CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS; by default any host with public addresses only)")
    types: list[EventType] = Field(default=[], max_length=200, description="Event types to deliver; empty: all")
    stream_types: list[StreamType] = Field(default=[], max_length=50,
                                           description="Record types to deliver; empty: all")
    from_position: int | None = Field(default=None, ge=0, le=2**62, description=(
        "Deliver the events after this position (exclusive); default: the head, i.e. new events only"))

    model_config = Command.model_config | {"json_schema_extra": {"examples": [{
        "url": "https://erp.example.com/hooks/channel", "types": ["Contract.SaleRecorded", "Contract.ReturnRecorded"],
    }]}}


class Line(BaseModel):
    stream_id: UUID
    events: int = Field(description="Events of this record waiting")
    positions: list[int] = Field(description="Their positions, in order (the first 100)")
    attempts: int = Field(description="Failures of the first of them so far")
    last_error: str | None
    next_attempt_at: datetime | None = None
    parked_at: datetime | None = None


class Lines(BaseModel):
    events: int
    records: list[Line]


class WebhookState(BaseModel):
    id: UUID
    url: str
    types: list[str]
    stream_types: list[str]
    status: Literal["active", "paused"]
    position: int = Field(description="Every event up to here was delivered, filtered out, or set aside in its"
                                      " record's line (`waiting`, `parked`)")
    head: int = Field(description="The log's last position")
    lag: int = Field(description="head − position")
    attempts: int = Field(description="Failures of the event at the head of the line waiting longest (0: none)")
    last_error: str | None = Field(description="The last delivery failure (HTTP status, timeout, refusal)")
    last_error_at: datetime | None
    last_delivered_at: datetime | None
    waiting: Lines = Field(description="Records whose events wait behind a failed one, to be tried again")
    parked: Lines = Field(description="Records given up after 8 failed attempts: `POST .../parked/replay`")
    created_at: datetime
    created_by: str


class CreatedWebhook(WebhookState):
    secret: str | None = Field(description="whsec_…: the signing secret, shown in this answer only (null on an"
                                           " idempotent replay)")


class WebhookList(BaseModel):
    items: list[WebhookState]
    next_cursor: str | None


class Change(BaseModel):
    action: Literal["created", "paused", "resumed", "deleted", "replayed"]
    actor: str
    roles: list[str]
    correlation_id: str | None
    at: datetime
    details: dict[str, Any]


class Changes(BaseModel):
    items: list[Change]
    next_cursor: str | None = None


REFUSALS: dict[int | str, dict[str, Any]] = {
    **COMMAND_ERRORS,
    422: {"model": Problem, "description": "`webhook_url_not_allowed` (with `reason`: scheme, host, address,"
                                           " unresolvable, credentials, malformed), `from_position_beyond_head`,"
                                           " `idempotency_key_reused` or `validation_error`"},
}


def _subscriptions(app: Any) -> Subscriptions:
    return Subscriptions(app.event_recorder.datastore)


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor(principal.actor, tuple(principal.roles), request.state.correlation_id)


@router.post("", status_code=201, response_model=CreatedWebhook, responses=REFUSALS,
             summary="Subscribe a URL to the events; the answer carries the signing secret, shown once")
def create_webhook(body: NewWebhook, request: Request, app: Department, caller: Integration) -> JSONResponse:
    """With an `Idempotency-Key`, a repeat of the same request by the same actor answers the
    same subscription with `Idempotent-Replayed: true` — but `secret: null`: the secret is
    shown once. A client that lost the first answer deletes that subscription and creates
    another."""
    created = _subscriptions(app).create(_actor(caller, request), body.url, body.types, body.stream_types,
                                         body.from_position, idempotency_key(request))
    headers = {"Location": f"/v1/webhooks/{created.subscription['id']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(plain_json({**created.subscription, "secret": created.secret}), status_code=201,
                        headers=headers)


@router.get("", response_model=WebhookList, responses={**ERRORS, 422: {"model": Problem, "description": "A malformed cursor or limit"}}, summary="The subscriptions, paginated")
def list_webhooks(app: Department, _: Reader,
                  cursor: Annotated[UUID | None, Query(description="`next_cursor` of the previous page")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    items, next_after = _subscriptions(app).list(cursor, limit)
    return JSONResponse(plain_json({"items": items, "next_cursor": str(next_after) if next_after else None}))


@router.get("/{webhook_id}", response_model=WebhookState, responses=ERRORS,
            summary="A subscription: its position, lag, failures, waiting and parked records (never its secret)")
def read_webhook(webhook_id: UUID, app: Department, _: Reader) -> JSONResponse:
    return JSONResponse(plain_json(_subscriptions(app).get(webhook_id)))


@router.get("/{webhook_id}/changes", response_model=Changes, responses=ERRORS,
            summary="Who created, paused, resumed, replayed or deleted the subscription, and when")
def webhook_changes(webhook_id: UUID, app: Department, _: Reader) -> JSONResponse:
    return JSONResponse(plain_json({"items": _subscriptions(app).changes(webhook_id), "next_cursor": None}))


@router.delete("/{webhook_id}", status_code=204, responses=COMMAND_ERRORS,
               summary="Stop delivering for good; the secret and the waiting events are forgotten")
def delete_webhook(webhook_id: UUID, request: Request, app: Department, caller: Integration) -> Response:
    _subscriptions(app).delete(webhook_id, _actor(caller, request))
    return Response(status_code=204)


@router.post("/{webhook_id}/pause", response_model=WebhookState, responses=COMMAND_ERRORS,
             summary="Stop delivering until resumed; the position stays where it is")
def pause_webhook(webhook_id: UUID, request: Request, app: Department, caller: Integration) -> JSONResponse:
    return JSONResponse(plain_json(_subscriptions(app).pause(webhook_id, _actor(caller, request))))


@router.post("/{webhook_id}/resume", response_model=WebhookState, responses=COMMAND_ERRORS,
             summary="Deliver again, from where it stopped")
def resume_webhook(webhook_id: UUID, request: Request, app: Department, caller: Integration) -> JSONResponse:
    return JSONResponse(plain_json(_subscriptions(app).resume(webhook_id, _actor(caller, request))))


@router.post("/{webhook_id}/parked/replay", response_model=WebhookState, responses=COMMAND_ERRORS,
             summary="Send the parked records' events again, in order, with their attempts counted afresh")
def replay_parked(webhook_id: UUID, request: Request, app: Department, caller: Integration) -> JSONResponse:
    return JSONResponse(plain_json(_subscriptions(app).replay_parked(webhook_id, _actor(caller, request))))
