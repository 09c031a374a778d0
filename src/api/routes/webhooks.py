"""/v1/webhooks: subscriptions that POST the feed's items to a URL, signed (Standard Webhooks).
The logic is in integration/webhook_subscriptions.py; delivery in integration/webhooks.py.

An integration actor sees and manages only the subscriptions it created (another's answers
404, as one that does not exist); auditors read every one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.commands import idempotency_key
from api.deps import Department, allowed
from api.errors import ApiProblem, Problem
from api.models import Command
from api.routes.records import COMMAND_ERRORS, ERRORS
from api.tokens import Principal
from channel_domain.store.log import WritersStillOpen
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


_LINE_EXAMPLE = {"stream_id": "0b8e4f4e-9a52-4f0e-8d1c-2a7a4c3e9b10", "events": 3, "positions": [1790, 1801, 1842],
                 "attempts": 2, "last_error": "HTTP 503", "next_attempt_at": "2025-03-04T09:15:07Z"}
_STATE_EXAMPLE = {
    "id": "3f6c2d1e-5b7a-4c89-9e0f-1a2b3c4d5e6f", "url": "https://erp.example.com/hooks/channel",
    "types": ["Contract.SaleRecorded"], "stream_types": [], "status": "active", "position": 1789, "head": 1850,
    "lag": 61, "attempts": 2, "last_error": "HTTP 503", "last_error_at": "2025-03-04T09:15:02Z",
    "last_delivered_at": "2025-03-04T09:15:06Z", "waiting": {"events": 3, "records_total": 1, "records": [_LINE_EXAMPLE]},
    "parked": {"events": 0, "records_total": 0, "records": []}, "created_at": "2025-03-01T08:00:00Z", "created_by": "erp",
}


class Line(BaseModel):
    stream_id: UUID
    events: int = Field(description="Events of this record not yet delivered")
    positions: list[int] = Field(description="Their positions, in order (the first 100)")
    attempts: int = Field(description="Failures of the first of them so far")
    last_error: str | None = Field(description="Why the first of them last failed: `HTTP <status>`, `timeout`,"
                                               " `url not allowed: <reason>`, or a connection error's class")
    next_attempt_at: datetime | None = None
    parked_at: datetime | None = None

    model_config = {"json_schema_extra": {"examples": [_LINE_EXAMPLE]}}


class Lines(BaseModel):
    events: int
    records_total: int = Field(description="How many records; `records` lists the oldest 100")
    records: list[Line]


class WebhookState(BaseModel):
    id: UUID
    url: str
    types: list[str]
    stream_types: list[str]
    status: Literal["active", "paused"]
    position: int = Field(description="Every event up to here was delivered or filtered out (the one after it,"
                                      " if it is the subscription's, is not delivered yet)")
    head: int = Field(description="The log's last position")
    lag: int = Field(description="head − position")
    attempts: int = Field(description="Failures of the first event not yet delivered (0: none, or not tried yet)")
    last_error: str | None = Field(description="Why that event last failed (null when nothing waits)")
    last_error_at: datetime | None
    last_delivered_at: datetime | None
    waiting: Lines = Field(description="Records with events not yet delivered: being sent, or waiting to be tried"
                                       " again")
    parked: Lines = Field(description="Records given up after 8 failed attempts: `POST .../parked/replay`")
    created_at: datetime
    created_by: str

    model_config = {"json_schema_extra": {"examples": [_STATE_EXAMPLE]}}


class CreatedWebhook(WebhookState):
    secret: str | None = Field(description="whsec_…: the signing secret, shown in this answer only (null on an"
                                           " idempotent replay)")

    model_config = {"json_schema_extra": {"examples": [{
        **_STATE_EXAMPLE, "position": 1843, "head": 1843, "lag": 0, "attempts": 0, "last_error": None,
        "last_error_at": None, "last_delivered_at": None, "waiting": {"events": 0, "records_total": 0, "records": []},
        "created_at": "2025-03-04T09:00:00Z", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]}}


class WebhookList(BaseModel):
    items: list[WebhookState]
    next_cursor: str | None

    model_config = {"json_schema_extra": {"examples": [{"items": [_STATE_EXAMPLE], "next_cursor": None}]}}


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

    model_config = {"json_schema_extra": {"examples": [{"items": [
        {"action": "created", "actor": "erp", "roles": ["integration"], "correlation_id": "ops-1",
         "at": "2025-03-01T08:00:00Z", "details": {"url": "https://erp.example.com/hooks/channel",
                                                    "types": ["Contract.SaleRecorded"], "stream_types": [],
                                                    "from_position": 1843}},
        {"action": "paused", "actor": "erp", "roles": ["integration"], "correlation_id": None,
         "at": "2025-03-02T17:30:00Z", "details": {}}], "next_cursor": None}]}}


REFUSALS: dict[int | str, dict[str, Any]] = {
    **COMMAND_ERRORS,
    422: {"model": Problem, "description": "`webhook_url_not_allowed` (with `reason`: scheme, host, address,"
                                           " credentials, malformed), `from_position_beyond_head`,"
                                           " `idempotency_key_reused` or `validation_error`"},
    503: {"model": Problem, "description": "`head_not_settled`: the head did not settle in time (a long transaction);"
                                           " retry"},
}


def _subscriptions(app: Any) -> Subscriptions:
    return Subscriptions(app.event_recorder)


def _actor(principal: Principal, request: Request) -> Actor:
    return Actor(principal.actor, tuple(principal.roles), request.state.correlation_id)


def _owner(principal: Principal) -> str | None:
    """Whose subscriptions the caller reads: an auditor's, all; an integration actor's, its own."""
    return None if "auditor" in principal.roles else principal.actor


@router.post("", status_code=201, response_model=CreatedWebhook, responses=REFUSALS,
             summary="Subscribe a URL to the events; the answer carries the signing secret, shown once")
def create_webhook(body: NewWebhook, request: Request, app: Department, caller: Integration) -> JSONResponse:
    """With an `Idempotency-Key`, a repeat of the same request by the same actor answers the
    same subscription with `Idempotent-Replayed: true` — but `secret: null`: the secret is
    shown once. A client that lost the first answer deletes that subscription and creates
    another."""
    try:
        created = _subscriptions(app).create(_actor(caller, request), body.url, body.types, body.stream_types,
                                             body.from_position, idempotency_key(request))
    except WritersStillOpen:
        # As the stream's start from the head: one code for one cause.
        raise ApiProblem(503, "head_not_settled", "a transaction that could still commit below the head has "
                                                  "been open for seconds; retry shortly", {"Retry-After": "1"}) from None
    headers = {"Location": f"/v1/webhooks/{created.subscription['id']}"}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(plain_json({**created.subscription, "secret": created.secret}), status_code=201,
                        headers=headers)


@router.get("", response_model=WebhookList, responses={**ERRORS, 422: {"model": Problem, "description": "A malformed cursor or limit"}}, summary="The subscriptions, paginated")
def list_webhooks(app: Department, caller: Reader,
                  cursor: Annotated[UUID | None, Query(description="`next_cursor` of the previous page")] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    items, next_after = _subscriptions(app).list(cursor, limit, _owner(caller))
    return JSONResponse(plain_json({"items": items, "next_cursor": str(next_after) if next_after else None}))


@router.get("/{webhook_id}", response_model=WebhookState, responses=ERRORS,
            summary="A subscription: its position, lag, failures, waiting and parked records (never its secret)")
def read_webhook(webhook_id: UUID, app: Department, caller: Reader) -> JSONResponse:
    return JSONResponse(plain_json(_subscriptions(app).get(webhook_id, _owner(caller))))


@router.get("/{webhook_id}/changes", response_model=Changes, responses=ERRORS,
            summary="Who created, paused, resumed, replayed or deleted the subscription, and when")
def webhook_changes(webhook_id: UUID, app: Department, caller: Reader) -> JSONResponse:
    return JSONResponse(plain_json({"items": _subscriptions(app).changes(webhook_id, _owner(caller)),
                                    "next_cursor": None}))


@router.delete("/{webhook_id}", status_code=204, responses=COMMAND_ERRORS,
               summary="Stop delivering for good; the secret and the waiting events are forgotten. A request"
               " already in flight may still arrive; none is started after the next pass (~25 ms)")
def delete_webhook(webhook_id: UUID, request: Request, app: Department, caller: Integration) -> Response:
    _subscriptions(app).delete(webhook_id, _actor(caller, request))
    return Response(status_code=204)


@router.post("/{webhook_id}/pause", response_model=WebhookState, responses=COMMAND_ERRORS,
             summary="Stop delivering until resumed; the position stays where it is. A request already in flight"
                     " may still arrive; none is started after the next pass (~25 ms)")
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
