"""Running one command for an HTTP request: who, which version, which key, what answer."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.errors import ApiProblem
from api.logging_setup import command_logger
from api.tokens import Principal
from api.views import record_view
from channel_domain import acting_as, observability
from channel_domain.aggregate import ChannelAggregate
from channel_domain.application import ChannelDepartment, CommandOutcome, answering_with
from channel_domain.errors import DomainError
from channel_domain.values import plain_json

_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')
MAX_KEY_LENGTH = 255


def expected_version(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None:
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise ApiProblem(400, "invalid_if_match", 'If-Match carries a version, e.g. "3"')
    return int(match[1])


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ApiProblem(400, "invalid_idempotency_key", f"an Idempotency-Key has 1 to {MAX_KEY_LENGTH} characters")
    return key


def run(
    request: Request,
    principal: Principal,
    app: ChannelDepartment,
    record_type: type[ChannelAggregate],
    command: Callable[[], CommandOutcome],
    body: BaseModel | None = None,
    *,
    created: bool = False,
    location: Callable[[CommandOutcome], str] | None = None,
) -> JSONResponse:
    """Execute `command` as the caller and answer with the record's new state. A creation
    answers 201 with `Location`: the request's path and the new id, or `location(outcome)`
    for a record read elsewhere."""
    started = time.perf_counter()
    with observability.observing_command() as observed:
        try:
            outcome = _execute(request, principal, app, command, body)
        except (DomainError, ApiProblem) as refused:
            _log_command(request, principal, observed.name, record_type, None, started, "refused", refused.code)
            raise
        except Exception:
            _log_command(request, principal, observed.name, record_type, None, started, "failed")
            raise
    _log_command(request, principal, observed.name, record_type, outcome, started)
    # A replay answers from the state at the command's own version, exactly as the first did.
    view = outcome.answer
    if view is None:
        view = record_view(app, app.get(record_type, outcome.id, version=outcome.version), principal)
    answer: dict[str, Any] = {**view, "position": outcome.position}
    answer.update(plain_json(outcome.extra))
    headers = {"ETag": f'"{outcome.version}"'}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if created:
        headers["Location"] = location(outcome) if location else f"{request.url.path.rstrip('/')}/{outcome.id}"
    return JSONResponse(answer, status_code=201 if created else 200, headers=headers)


def _execute(request: Request, principal: Principal, app: ChannelDepartment, command: Callable[[], CommandOutcome],
             body: BaseModel | None) -> CommandOutcome:
    key = idempotency_key(request)
    # Only a keyed command is ever compared with an earlier one.
    fingerprint = hashlib.sha256(
        f"{request.method} {request.url.path}\n{body.model_dump_json() if body else ''}".encode()
    ).hexdigest() if key else None
    with acting_as(
        principal.actor,
        principal.roles,
        correlation_id=request.state.correlation_id,
        causation_id=request.state.correlation_id,
        idempotency_key=key,
        expected_version=expected_version(request),
        request_fingerprint=fingerprint,
    ), answering_with(lambda record: record_view(app, record, principal)):
        return command()


def _log_command(request: Request, principal: Principal, name: str | None, record_type: type[ChannelAggregate],
                 outcome: CommandOutcome | None, started: float, result: str = "ok", code: str | None = None) -> None:
    """The command's log line: ids and positions only, never the body (it may hold personal data)."""
    if not command_logger.isEnabledFor(logging.INFO):
        return
    if outcome is not None:
        record_id: str | None = str(outcome.id)
    else:  # refused: the record named in the path, if any (None for a creation)
        record_id = next((str(value) for key, value in request.path_params.items() if key.endswith("_id")), None)
    command_logger.log(
        logging.ERROR if result == "failed" else logging.INFO,
        "command",
        extra={
            "correlation_id": request.state.correlation_id,
            "actor": principal.actor,
            "roles": list(principal.roles),
            "command": name,
            "record_type": record_type.__name__,
            "record_id": record_id,
            "positions": outcome.positions if outcome is not None else [],
            "replayed": outcome.replayed if outcome is not None else False,
            "outcome": result,
            "code": code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
