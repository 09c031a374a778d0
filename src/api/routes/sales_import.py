"""POST /v1/sales/import: a day's sales and returns as NDJSON, one command per line.

The body is streamed, never read whole: 100 000 lines go through in one request. Each line
succeeds or fails on its own; the answer counts the accepted lines and lists the first
1 000 rejected ones with their codes (`rejected_total` counts them all).

With an `Idempotency-Key`, the body is fingerprinted as it streams by; a retry of the same
body replays the first answer and writes nothing. The key is held while the import runs
and its answer kept once every line is done. A run cut short (the client went away, the
server stopped) keeps no answer, but each transaction it committed recorded, with its
events, the numbers of the lines it booked and a digest of each: a retry with the same key
skips those lines, counting them accepted, and books the rest — every line at most once,
returns without a `return_id` too. A retry whose body differs on a line already booked is
refused `idempotency_key_reused` (what it booked before that line stays booked).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.commands import idempotency_key
from api.deps import Department, allowed
from api.models import Command, Day, Money, ShortText
from api.errors import Problem
from api.routes.records import ERRORS
from api.tokens import Principal
from channel_domain import acting_as
from channel_domain.application import ChannelDepartment, SalesLine
from channel_domain.errors import CommandInFlight, IdempotencyKeyReused
from channel_domain.store.recorder import ImportLines

router = APIRouter(prefix="/v1/sales", tags=["sales"])
Integration = Annotated[Principal, Depends(allowed("integration"))]
MAX_LINE = 64 * 1024
BATCH = 2000  # lines handed to a worker thread at a time: larger batches, fewer commits per contract
MAX_LISTED_REJECTIONS = 1000


class SaleLine(Command):
    kind: Literal["sale"]
    contract_id: UUID
    order_id: ShortText
    amount: Money
    sold_on: Day
    product: ShortText | None = None
    region: ShortText | None = None
    employee_id: UUID | None = None


class ReturnLine(Command):
    kind: Literal["return"]
    contract_id: UUID
    order_id: ShortText
    amount: Money
    returned_on: Day
    return_id: ShortText | None = None


ImportLine = Annotated[SaleLine | ReturnLine, Field(discriminator="kind")]
_LINE = TypeAdapter(ImportLine)


class Rejection(BaseModel):
    line: int
    code: str
    detail: str


class ImportResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "accepted": 99998, "rejected": [
            {"line": 17, "code": "outside_territory", "detail": "this enterprise agent sells in Zhejiang, not Jiangsu"},
            {"line": 50211, "code": "duplicate_order", "detail": "order SO-88 is already recorded on this contract"},
        ], "rejected_total": 2}]})

    accepted: int
    rejected: list[Rejection] = Field(description=f"The first {MAX_LISTED_REJECTIONS} rejected lines, in line order")
    rejected_total: int


class Rejections:
    """Every rejection counted, the first MAX_LISTED_REJECTIONS (by line) kept: an import of
    a million bad lines answers in bounded memory."""

    def __init__(self) -> None:
        self.total = 0
        self._kept: list[Rejection] = []

    def add(self, *rejections: Rejection) -> None:
        self.total += len(rejections)
        self._kept.extend(rejections)
        if len(self._kept) > 2 * MAX_LISTED_REJECTIONS:
            self._kept = self.listed()

    def listed(self) -> list[Rejection]:
        return sorted(self._kept, key=lambda r: r.line)[:MAX_LISTED_REJECTIONS]


async def _lines(request: Request, fingerprint: Any = None) -> AsyncIterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each non-empty line; None for a line over the limit. Each
    chunk read also goes into `fingerprint` (a hashlib object), when given."""
    buffer, number, skipping = b"", 0, False
    async for chunk in request.stream():
        if fingerprint is not None:
            fingerprint.update(chunk)
        buffer += chunk
        start = 0  # lines are cut by offset: slicing the rest of a large chunk per line was quadratic
        while (newline := buffer.find(b"\n", start)) >= 0:
            line, start = buffer[start:newline], newline + 1
            number += 1
            if skipping:
                skipping = False
                yield number, None
            elif len(line) > MAX_LINE:
                yield number, None
            elif line.strip():
                yield number, line
        buffer = buffer[start:]
        if len(buffer) > MAX_LINE and not skipping:
            skipping, buffer = True, b""  # drop the rest of this line as it arrives
        elif skipping:
            buffer = b""
    if skipping:
        yield number + 1, None
    elif buffer.strip():
        yield number + 1, buffer if len(buffer) <= MAX_LINE else None


class KeyedRun:
    """A keyed import's key, and the lines (number: digest) its earlier runs booked."""

    def __init__(self, actor: str, key: str, booked: dict[int, int]) -> None:
        self.actor, self.key, self.booked = actor, key, booked
        # Up to the last line booked, this body is still being compared with the first: what it
        # books waits until then, so a different body is refused having written nothing.
        self.compared_through = max(booked, default=0)

    def already_booked(self, number: int, digest: int) -> bool:
        booked = self.booked.get(number)
        if booked is not None and booked != digest:
            raise IdempotencyKeyReused(f"idempotency key {self.key!r} was used for a different import "
                                       f"(line {number} differs from the line booked under it)")
        return booked is not None


def _digest(raw: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)


def _run_batch(app: ChannelDepartment, caller: Principal, correlation_id: str,
               batch: list[tuple[int, Any, int]], keyed: KeyedRun | None) -> tuple[int, list[Rejection]]:
    lines = [
        SalesLine(line.contract_id, line.kind, line.model_dump(exclude={"kind", "contract_id"}))
        for _, line, _ in batch
    ]
    marks = None if keyed is None else ImportLines(
        keyed.actor, keyed.key, [number for number, _, _ in batch], [digest for _, _, digest in batch])
    with acting_as(caller.actor, caller.roles, correlation_id=correlation_id):
        outcomes = app.import_sales(lines, marks)
    rejected = [
        Rejection(line=number, code=refusal.code, detail=refusal.message)
        for (number, _, _), refusal in zip(batch, outcomes, strict=True)
        if refusal is not None
    ]
    return len(batch) - len(rejected), rejected


@router.post(
    "/import",
    response_model=ImportResult,
    responses={
        **ERRORS,
        400: {"model": Problem, "description": "Malformed Idempotency-Key"},
        409: {"model": Problem, "description": "An import with the same Idempotency-Key is still running"},
        422: {"model": Problem, "description": "idempotency_key_reused: the key was used for another body"},
    },
    summary="Import sales and returns as NDJSON, one command per line",
    description=(
        "Each line succeeds or fails on its own. With an `Idempotency-Key`, a retry of the same body replays the "
        "first answer and writes nothing. A run cut short keeps no answer, but every line it booked is recorded "
        "with the line's events: the retry with the same key and body skips those lines (counted accepted) and "
        "books the rest, so no line is booked twice. A retry whose body differs on a line already booked is "
        "refused `idempotency_key_reused` and writes nothing: it books no line before it has passed the last "
        "line booked under the key."
    ),
    openapi_extra={"requestBody": {"content": {"application/x-ndjson": {
        "schema": {"type": "string"},
        "example": '{"kind": "sale", "contract_id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50", "order_id": "SO-1",'
                   ' "amount": "60000.00", "sold_on": "2026-03-02", "region": "Zhejiang"}\n'
                   '{"kind": "return", "contract_id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50", "order_id": "SO-1",'
                   ' "amount": "1000.00", "returned_on": "2026-03-05"}\n',
    }}, "required": True}},
)
async def import_sales(request: Request, app: Department, caller: Integration) -> Any:
    key = idempotency_key(request)
    if key is None:
        return await _import(request, app, caller)
    fingerprint = hashlib.sha256(f"{request.method} {request.url.path}\n".encode())
    if (stored := await run_in_threadpool(app.import_outcome, caller.actor, key)) is not None:
        return await _replay(request, key, fingerprint, stored)
    holding = app.keyed_import(caller.actor, key)
    if not await run_in_threadpool(holding.__enter__):
        await run_in_threadpool(holding.__exit__, None, None, None)
        raise CommandInFlight(f"an import with idempotency key {key!r} is still running")
    try:
        if (stored := await run_in_threadpool(app.import_outcome, caller.actor, key)) is not None:
            return await _replay(request, key, fingerprint, stored)  # it finished before we held the key
        booked = await run_in_threadpool(app.imported_lines, caller.actor, key)
        result = await _import(request, app, caller, fingerprint, KeyedRun(caller.actor, key, booked))
        await run_in_threadpool(app.keep_import_outcome, caller.actor, key, fingerprint.hexdigest(),
                                result.model_dump(mode="json"))
        return result
    finally:
        await run_in_threadpool(holding.__exit__, None, None, None)


async def _replay(request: Request, key: str, fingerprint: Any, stored: tuple[str, dict[str, Any]]) -> JSONResponse:
    async for chunk in request.stream():
        fingerprint.update(chunk)
    if fingerprint.hexdigest() != stored[0]:
        raise IdempotencyKeyReused(f"idempotency key {key!r} was used for a different import")
    return JSONResponse(stored[1], headers={"Idempotent-Replayed": "true"})


async def _import(request: Request, app: ChannelDepartment, caller: Principal, fingerprint: Any = None,
                  keyed: KeyedRun | None = None) -> ImportResult:
    accepted, rejected = 0, Rejections()
    batch: list[tuple[int, Any, int]] = []

    async def flush() -> None:
        nonlocal accepted
        if batch:
            done, refused = await run_in_threadpool(_run_batch, app, caller, request.state.correlation_id, list(batch),
                                                    keyed)
            accepted += done
            rejected.add(*refused)
            batch.clear()

    async for number, raw in _lines(request, fingerprint):
        if raw is None:
            rejected.add(Rejection(line=number, code="line_too_long", detail=f"a line is at most {MAX_LINE} bytes"))
            continue
        digest = 0
        if keyed is not None:
            digest = _digest(raw)
            if keyed.already_booked(number, digest):
                accepted += 1
                continue
        try:
            batch.append((number, _LINE.validate_python(json.loads(raw)), digest))
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            code, detail = "malformed_json", "the line is not a JSON object"
            if isinstance(error, RecursionError):
                # The decoder gives up (cleanly) past the interpreter's depth limit; an import
                # line is a flat object, so such a line is refused alone, as unreadable.
                detail = "the line is nested too deeply to read"
            elif isinstance(error, ValidationError):
                code = "validation_error"
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in issue['loc'][1:]) or 'line'}: {issue['msg']}" for issue in error.errors()
                )
            rejected.add(Rejection(line=number, code=code, detail=detail))
            continue
        if len(batch) >= BATCH and (keyed is None or number > keyed.compared_through):
            await flush()
    await flush()
    return ImportResult(accepted=accepted, rejected=rejected.listed(), rejected_total=rejected.total)
