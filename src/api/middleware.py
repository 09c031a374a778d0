"""ASGI middleware: a correlation id on every request and answer; a cap on command bodies;
no NUL in a query; a prompt 503 while the database is away; a log line per request."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import logging_setup
from api.errors import database_unavailable, problem
from channel_domain import observability

MAX_COMMAND_BODY = 1024 * 1024  # api.md: a JSON command body is at most 1 MiB
_CORRELATION = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")


class CorrelationId:
    """Takes `X-Correlation-Id` from the request (or makes one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        correlation_id = given if _CORRELATION.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = correlation_id

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-correlation-id", correlation_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_header)


class _TooLarge(BaseException):  # noqa: N818
    """Unwinds the request from inside `receive`. A BaseException, because FastAPI turns any
    Exception raised while reading a body into a generic 400."""


class BodyLimit:
    """Refuses command bodies over 1 MiB with 413, without reading past the limit.
    Streaming endpoints (the NDJSON import) are exempt and police their own lines."""

    def __init__(self, app: ASGIApp, streaming_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.streaming_paths = streaming_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.streaming_paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_COMMAND_BODY:
            await _too_large()(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_COMMAND_BODY:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _too_large()(scope, receive, send)


class RefuseNul:
    """Refuses a query string holding a NUL character (`%00`): PostgreSQL text cannot hold one,
    so a filter with it could only fail in the database. (Bodies are checked by `Command`.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"%00" in scope.get("query_string", b""):
            await problem(422, "validation_error", "query: text may not contain the NUL character")(scope, receive, send)
            return
        await self.app(scope, receive, send)


class DatabaseGate:
    """While the breaker says the database is away, answer 503 at once (see breaker.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        breaker = getattr(scope["app"].state, "breaker", None) if scope["type"] == "http" else None
        if breaker is not None and scope["path"].startswith("/v1/") and not await breaker.admits():
            await database_unavailable()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _too_large() -> ASGIApp:
    return problem(413, "payload_too_large", f"a command body is at most {MAX_COMMAND_BODY} bytes")


class RequestLog:
    """One log line per request (see logging_setup.py) and, when tracing is on, the request's
    server span, parent of the command and append spans. Inside CorrelationId, so the line
    carries the id the client sees; outside everything else, so a 413 or a 503 is logged too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log_requests = logging_setup.request_log_enabled()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app answers: an exception escaping it becomes a 500
        tracer = observability.tracer()

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span_scope = _server_span(tracer, scope) if tracer is not None else contextlib.nullcontext()
        with span_scope as span:
            try:
                await self.app(scope, receive, noting_status)
            finally:
                route = getattr(scope.get("route"), "path", None)  # the template; None when nothing matched
                if span is not None:
                    _end_server_span(span, scope, route, status)
                if self.log_requests:
                    _log_request(scope, route, status, started)


def _log_request(scope: Scope, route: str | None, status: int, started: float) -> None:
    state = scope.get("state", {})
    principal = state.get("principal")
    logging_setup.request_logger.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "request",
        extra={
            "correlation_id": state.get("correlation_id"),
            "actor": principal.actor if principal else None,
            "roles": list(principal.roles) if principal else [],
            "method": scope["method"],
            "route": route,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )


def _server_span(tracer, scope: Scope):  # noqa: ANN001, ANN202 - OpenTelemetry's, imported only when tracing
    from opentelemetry import propagate, trace

    carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
    return tracer.start_as_current_span(
        scope["method"], context=propagate.extract(carrier), kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": scope["method"]},
        record_exception=True, set_status_on_exception=True,
    )


def _end_server_span(span, scope: Scope, route: str | None, status: int) -> None:  # noqa: ANN001
    from opentelemetry.trace import StatusCode

    if route is not None:
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    correlation_id = scope.get("state", {}).get("correlation_id")
    if correlation_id:
        span.set_attribute("channel_domain.correlation_id", correlation_id)
    if status >= 500:
        span.set_status(StatusCode.ERROR)
