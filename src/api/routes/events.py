"""/v1/events and /v1/events/stream: the event feed for integration clients, as long-polled
pages and as Server-Sent Events (docs/integration.md). The logic is `integration.feed`'s."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import AppStatus

from api.deps import Department, allowed
from api.errors import ApiProblem
from api.routes.records import ERRORS
from api.tokens import Principal
from integration.feed import FeedTail, follow, next_page
from integration.items import EventFilter

router = APIRouter(prefix="/v1/events", tags=["events"])
Reader = Annotated[Principal, Depends(allowed("integration", "auditor"))]

POLL_VARIABLE = "CHANNEL_DOMAIN_FEED_POLL_S"
LINGER_VARIABLE = "CHANNEL_DOMAIN_FEED_LINGER_S"
PING_VARIABLE = "CHANNEL_DOMAIN_FEED_PING_S"
MAX_WAIT_S = 30
MAX_NAMES = 100

ITEM_EXAMPLE = {
    "position": 1843, "event_id": "5c0f3a52-9d1e-5b7a-8c1f-2f4b3e6d7a90",
    "stream_id": "0b8e4c1a-6f2d-4e9b-9a3c-5d7e8f901234", "stream_type": "Partner", "version": 1,
    "type": "Partner.Applied", "recorded_at": "2026-12-02T15:04:05.123456Z", "effective_on": None,
    "actor": "spec-1", "correlation_id": "req-7", "causation_id": None,
    "data": {"kind": "retailer", "name": "Corner Shop"},
}


class FeedItem(BaseModel):
    """One event, as every integration channel carries it; an employee's personal fields are
    `"redacted"` or `"erased"`, never their values."""

    model_config = ConfigDict(json_schema_extra={"examples": [ITEM_EXAMPLE]})

    position: int
    event_id: str
    stream_id: str
    stream_type: str
    version: int
    type: str
    recorded_at: str
    effective_on: str | None
    actor: str
    correlation_id: str
    causation_id: str | None
    data: dict[str, Any]


class FeedPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [ITEM_EXAMPLE], "next_after": 1843}]})

    items: list[FeedItem]
    next_after: int = Field(description="Ask again with `after` = this. The last position examined: past events "
                                        "your filters left out too, so a narrow filter never scans them again.")


def _names(text: str | None, parameter: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in (text or "").split(",") if name.strip())
    if len(names) > MAX_NAMES:
        raise ApiProblem(422, "validation_error", f"{parameter}: at most {MAX_NAMES} names")
    return names


TypesQuery = Annotated[str | None, Query(
    max_length=10_000, description="Comma-separated event types, e.g. `Partner.Applied,Contract.Signed` "
    "(a name that is no type matches nothing). Default: every type.")]
StreamTypesQuery = Annotated[str | None, Query(
    max_length=10_000, description="Comma-separated record types, e.g. `Partner,Contract`. Default: every type.")]
StreamIdQuery = Annotated[UUID | None, Query(description="Only the events of this record")]


def _filter(types: str | None, stream_types: str | None, stream_id: UUID | None) -> EventFilter:
    return EventFilter.of(_names(types, "types"), _names(stream_types, "stream_types"), stream_id)


async def feed_tail(request: Request, app: Department) -> FeedTail:
    """The process's one reader at the head of the log (made on first use, on the event loop)."""
    state = request.app.state
    tail = getattr(state, "feed_tail", None)
    if tail is None:
        tail = state.feed_tail = FeedTail(app, poll_interval_s=float(os.environ.get(POLL_VARIABLE, "0.01")),
                                          linger_s=float(os.environ.get(LINGER_VARIABLE, "5")))
    return tail


Tail = Annotated[FeedTail, Depends(feed_tail)]


def _server_stopping() -> bool:
    # uvicorn installs its bound `handle_exit` as the signal handler of each worker; its
    # `should_exit` is the one sign of a graceful shutdown an application can read.
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return AppStatus.should_exit or bool(getattr(server, "should_exit", False))


@router.get(
    "",
    response_model=FeedPage,
    responses=ERRORS,
    summary="The events after a position, in position order; waits up to wait_s for news",
)
async def events(
    tail: Tail,
    _: Reader,
    after: Annotated[int, Query(ge=0, le=2**62, description="Exclusive: the events after this position")] = 0,
    types: TypesQuery = None,
    stream_types: StreamTypesQuery = None,
    stream_id: StreamIdQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="When nothing new matches, wait up to this "
                                                                      "many seconds for something to")] = 0,
) -> Response:
    """Every event of the log in position order, as feed items (personal data as markers).
    Never skips a position that a running transaction could still fill: a client that asks
    again with `after` = `next_after` misses nothing and sees nothing twice. `items` may be
    empty while `next_after` moves on — past events the filters left out, or a scan of a
    long stretch of them cut short: ask again."""
    page = await next_page(tail, after, _filter(types, stream_types, stream_id), limit, wait_s, _server_stopping)
    # The items are serialised once, when first read; a page only joins them.
    body = '{"items":[' + ",".join(entry.item_json for entry in page.entries) + f'],"next_after":{page.next_after}}}'
    return Response(body, media_type="application/json")


STREAM_EXAMPLE = ('id: 1843\nevent: Partner.Applied\ndata: {"position":1843,"event_id":"5c0f3a52-…",'
                  '"type":"Partner.Applied","…":"…"}\n\n: ping\n\n')


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={**ERRORS, 200: {"description": "Server-Sent Events: `id:` the position, `event:` the type, `data:` "
                                              "the feed item; a comment line every ping interval",
                               "content": {"text/event-stream": {"schema": {"type": "string"},
                                                                 "example": STREAM_EXAMPLE}}}},
    summary="The events as Server-Sent Events; resumes after Last-Event-ID",
)
async def event_stream(
    tail: Tail,
    _: Reader,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="Exclusive. Default: the head (only events "
                                                                    "committed from now on)")] = None,
    types: TypesQuery = None,
    stream_types: StreamTypesQuery = None,
    stream_id: StreamIdQuery = None,
    last_event_id: Annotated[str | None, Header(description="Set by an EventSource when it reconnects: resumes "
                                                            "after that position, whatever `after` says")] = None,
) -> EventSourceResponse:
    """The feed as an endless stream, for clients that keep a connection open. Every event
    after `after` (or after `Last-Event-ID`, which an EventSource sends when it reconnects),
    in position order, never skipping a position a running transaction could still fill. The
    stream ends when the server shuts down: reconnect, and it resumes exactly."""
    start = after
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit() or int(last_event_id) > 2**62:
            raise ApiProblem(422, "validation_error", "Last-Event-ID: a position (a whole number)")
        start = int(last_event_id)
    wanted = _filter(types, stream_types, stream_id)

    async def events_() -> AsyncIterator[ServerSentEvent]:
        async for entry in follow(tail, start, wanted):
            yield ServerSentEvent(data=entry.item_json, id=str(entry.position), event=entry.type)

    return EventSourceResponse(events_(), ping=float(os.environ.get(PING_VARIABLE, "15")), send_timeout=60)


def add_feed_metrics(state: Any, registry: CollectorRegistry) -> None:
    """The feed's figures on /metrics (`state`: the application's), for the process that answers the scrape."""
    tail: FeedTail | None = getattr(state, "feed_tail", None)
    Counter("channel_domain_feed_reader_polls", "Reads of the log by this process's shared feed reader (one short"
            f" transaction each, every {POLL_VARIABLE} while a client waits, none otherwise)",
            registry=registry).inc(tail.polls if tail else 0)
    Gauge("channel_domain_feed_waiting_clients", "Long-polls and Server-Sent Event streams of this process waiting"
          " at the head", registry=registry).set(tail.waiting if tail else 0)
