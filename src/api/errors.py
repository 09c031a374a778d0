"""Every refusal as RFC 9457 problem+json, with the stable `code` clients branch on."""

from __future__ import annotations

from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from channel_domain.errors import (
    CommandInFlight,
    ConcurrentModification,
    DomainError,
    IdempotencyKeyReused,
    LedgerLagging,
    NotFound,
    RoleRequired,
    SegregationOfDuties,
    VersionMismatch,
)
from channel_domain.store.recorder import means_database_away, means_database_busy
from channel_domain.values import plain_json

PROBLEM_JSON = "application/problem+json"
_PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code", "instance", "errors"}

_STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (NotFound, 404),
    (SegregationOfDuties, 403),
    (RoleRequired, 403),
    (VersionMismatch, 412),
    (ConcurrentModification, 409),
    (CommandInFlight, 409),
    (IdempotencyKeyReused, 422),
    (LedgerLagging, 503),
]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "urn:channel-domain:problem:outside_territory", "title": "Outside territory", "status": 422,
        "detail": "this enterprise agent sells in Zhejiang, not Jiangsu", "code": "outside_territory",
    }]})

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:channel-domain:problem:{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def database_unavailable() -> JSONResponse:
    return problem(503, "database_unavailable", "the database is not answering; retry shortly", {"Retry-After": "1"})


def service_busy() -> JSONResponse:
    # The database answers, but no connection to it came in time: every one is at work.
    return problem(503, "service_busy", "the service is busy; retry shortly", {"Retry-After": "1"})


class ApiProblem(Exception):
    """A refusal raised by the HTTP layer itself (auth, headers)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def status_for(error: DomainError) -> int:
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 422


def _field_path(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_refusal(_: Request, error: DomainError) -> JSONResponse:
        field = getattr(error, "field", None)
        extra = {"errors": [{"field": field, "message": error.message}]} if field else {}
        # What the refusal names (a fresh preview digest, what is left of an order…), as
        # extension members — never over the problem's own members.
        facts = {name: value for name, value in plain_json(error.details).items() if name not in _PROBLEM_MEMBERS}
        status = status_for(error)
        headers = {"Retry-After": "1"} if status == 503 else None  # retryable: nothing was written
        return problem(status, error.code, error.message, headers, **{**facts, **extra})

    @app.exception_handler(ApiProblem)
    async def api_problem(_: Request, error: ApiProblem) -> JSONResponse:
        return problem(error.status, error.code, error.detail, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        issues = error.errors()
        if any(issue.get("type") == "json_invalid" for issue in issues):
            return problem(400, "malformed_json", "the request body is not valid JSON")
        # Echo where and why, never the input: it may hold personal data or an injection.
        details = [{"field": _field_path(tuple(i.get("loc", ()))), "message": i.get("msg", "")} for i in issues]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return problem(422, "validation_error", summary, errors=details)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def database_failed(request: Request, error: Exception) -> JSONResponse:
        # Nothing was answered 2xx, so nothing is lost: the client retries (with its
        # Idempotency-Key, a retry of a command that did commit replays its answer).
        # A deadlock or a timeout is worth a retry too; only a database that is away makes
        # the requests after this one refused at once (breaker.py). Neither a busy service nor
        # one broken connection may pass for a database that is away: that would refuse
        # everyone, the idle too — so the probe is asked before the breaker trips.
        breaker = getattr(request.app.state, "breaker", None)
        if breaker is None:
            return database_unavailable()
        if means_database_busy(error):
            return service_busy() if await breaker.is_busy() else database_unavailable()
        if means_database_away(error):
            await breaker.trip_if_away()
        return database_unavailable()

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(_: Request, __: ClientDisconnect) -> Response:
        # The client closed the connection while its body was being read: no one is left to
        # answer and nothing failed here, so no 500 and no error logged. 499, as nginx has it.
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # FastAPI could not decode the body (bad UTF-8, nesting too deep)
            return problem(400, "malformed_json", "the request body is not valid JSON")
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return problem(error.status_code, code, str(error.detail), getattr(error, "headers", None))
