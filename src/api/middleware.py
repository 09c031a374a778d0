"""ASGI middleware: a correlation id on every request and answer; a cap on command bodies;
no NUL in a query; a prompt 503 while the database is away."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import database_unavailable, problem

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
