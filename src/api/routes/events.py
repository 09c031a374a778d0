"""/v1/events and /v1/events/stream: the event feed for integration clients, as long-polled
pages and as Server-Sent Events (docs/integration.md). The logic is `integration.feed`'s."""

from __future__ import annotations

import os
import re
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
from api.revocations import TokenWatch
from api.tokens import Principal
from channel_domain.store.log import WritersStillOpen
from integration.feed import FeedTail, beyond_head, follow, next_page, start_of_new_events
from integration.items import EventFilter

router = APIRouter(prefix="/v1/events", tags=["events"])
Reader = Annotated[Principal, Depends(allowed("integration", "auditor"))]

POLL_VARIABLE = "CHANNEL_DOMAIN_FEED_POLL_S"
LINGER_VARIABLE = "CHANNEL_DOMAIN_FEED_LINGER_S"
PING_VARIABLE = "CHANNEL_DOMAIN_FEED_PING_S"
MAX_WAIT_S = 30
MAX_NAMES = 100

# An event with a date: FastAPI drops None from the OpenAPI document, and a published example
# that lost its `effective_on: null` would fail its own type's schema.
ITEM_EXAMPLE = {
    "position": 1843, "event_id": "5c0f3a52-9d1e-5b7a-8c1f-2f4b3e6d7a90",
    "stream_id": "0b8e4c1a-6f2d-4e9b-9a3c-5d7e8f901234", "stream_type": "Partner", "version": 3,
    "type": "Partner.DepositPaid", "recorded_at": "2026-12-02T15:04:05.123456Z", "effective_on": "2026-12-01",
    "actor": "fin-1", "correlation_id": "req-7", "causation_id": "6f1d2c0e-4b7a-4e8d-9c3f-2a1b0c9d8e7f",
    "data": {"amount": "5000.00", "on": "2026-12-01"},
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
    causation_id: str
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


async def token_watch(request: Request, app: Department) -> TokenWatch:
    """The process's one watch over the tokens of its open streams and waiting long-polls."""
    state = request.app.state
    watch = getattr(state, "token_watch", None)
    if watch is None:
        watch = state.token_watch = TokenWatch(app)
    return watch


Watch = Annotated[TokenWatch, Depends(token_watch)]


def _revoked() -> ApiProblem:
    return ApiProblem(401, "invalid_token", "the token was revoked while the request waited",
                      {"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def _refuse_beyond_head(tail: FeedTail, after: int, name: str) -> None:
    head = await beyond_head(tail, after)
    if head is not None:
        raise ApiProblem(422, "after_beyond_head", f"{name} {after} is beyond the head of the log, {head}: a "
                                                   f"position this service never gave (another environment?)")


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
    watch: Watch,
    reader: Reader,
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
    long stretch of them cut short: ask again. An `after` beyond the head is refused
    (`after_beyond_head`). A token revoked while the request waits ends it with a `401`."""
    wanted = _filter(types, stream_types, stream_id)
    await _refuse_beyond_head(tail, after, "after")
    if wait_s > 0:
        async with watch.watching(reader.token_id) as revoked:
            page = await next_page(tail, after, wanted, limit, wait_s, lambda: _server_stopping() or revoked())
            if revoked():
                raise _revoked()
    else:
        page = await next_page(tail, after, wanted, limit, wait_s)
    # The items are serialised once, when first read; a page only joins them.
    body = '{"items":[' + ",".join(entry.item_json for entry in page.entries) + f'],"next_after":{page.next_after}}}'
    return Response(body, media_type="application/json")


STREAM_EXAMPLE = ('id: 1843\nevent: Partner.DepositPaid\ndata: {"position":1843,"event_id":"5c0f3a52-…",'
                  '"type":"Partner.DepositPaid","…":"…"}\n\n: ping\n')


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
    watch: Watch,
    reader: Reader,
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
    stream ends when the server shuts down: reconnect, and it resumes exactly. It ends too,
    within about two seconds, when its token is revoked. A start beyond the head is refused
    (`after_beyond_head`); starting at the head waits for any writer that could still commit
    below it (`503 head_not_settled` if one stays open 5 s)."""
    wanted = _filter(types, stream_types, stream_id)
    start, name = after, "after"
    if last_event_id is not None and last_event_id.strip():
        # ASCII digits only: str.isdigit also takes "²", which int() then refuses.
        if not re.fullmatch(r"[0-9]{1,19}", last_event_id.strip()) or int(last_event_id) > 2**62:
            raise ApiProblem(422, "validation_error", "Last-Event-ID: a position (a whole number)")
        start, name = int(last_event_id), "Last-Event-ID"
    if start is None:
        try:
            start = await start_of_new_events(tail.app)
        except WritersStillOpen:
            raise ApiProblem(503, "head_not_settled", "a transaction that could still commit below the head has "
                                                      "been open for seconds; retry shortly", {"Retry-After": "1"}) from None
    else:
        await _refuse_beyond_head(tail, start, name)
    token_id = reader.token_id

    async def events_() -> AsyncIterator[ServerSentEvent]:
        async with watch.watching(token_id) as revoked:
            async for entry in follow(tail, start, wanted, revoked):
                yield ServerSentEvent(data=entry.item_json, id=str(entry.position), event=entry.type)
            if revoked():
                yield _comment("the token was revoked: this stream ends")

    return EventSourceResponse(events_(), ping=float(os.environ.get(PING_VARIABLE, "15")), send_timeout=60,
                               ping_message_factory=lambda: PING)


def _comment(text: str) -> bytes:
    # A lone comment line, not followed by the blank line that ends an event: some clients
    # (httpx-sse 0.4) dispatch an empty event at every blank line once an `id:` was seen, so a
    # client that parses each event's data would choke on a ping that came after an event.
    return f": {text}\r\n".encode()


PING = _comment("ping")


def add_feed_metrics(state: Any, registry: CollectorRegistry) -> None:
    """The feed's figures on /metrics (`state`: the application's), for the process that answers the scrape."""
    tail: FeedTail | None = getattr(state, "feed_tail", None)
    Counter("channel_domain_feed_reader_polls", "Reads of the log by this process's shared feed reader (one short"
            f" transaction each, every {POLL_VARIABLE} while a client waits, none otherwise)",
            registry=registry).inc(tail.polls if tail else 0)
    Gauge("channel_domain_feed_waiting_clients", "Long-polls and Server-Sent Event streams of this process waiting"
          " at the head", registry=registry).set(tail.waiting if tail else 0)
