"""Record reads shared by every resource: state (now, at a version, as of a time) and history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api import diffs
from api.cursors import NumberCursor, cursor_number
from api.deps import Department, allowed
from api.errors import ApiProblem, Problem
from api.models import History, RecordDiff, RecordState
from api.tokens import ROLES, Principal
from api.views import history_view, record_view
from channel_domain.aggregate import ChannelAggregate
from channel_domain.errors import NotFound

Reader = Annotated[Principal, Depends(allowed(*ROLES))]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token"},
    403: {"model": Problem, "description": "The token's roles do not allow this, or segregation_of_duties"},
    404: {"model": Problem, "description": "No such record"},
}
COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": Problem, "description": "Malformed JSON or header"},
    409: {"model": Problem, "description": "Concurrent modification, or the same Idempotency-Key still running"},
    412: {"model": Problem, "description": "If-Match names another version"},
    413: {"model": Problem, "description": "Body over 1 MiB"},
    422: {"model": Problem, "description": "A business rule refused the command, or the body is invalid"},
}


def add_record_reads(router: APIRouter, record_type: type[ChannelAggregate], noun: str) -> None:
    @router.get(
        "/{record_id}",
        response_model=RecordState,
        responses={**ERRORS, 422: {"model": Problem, "description": "Both as_of and version given"}},
        summary=f"Read a {noun}, now or as it stood at a version or a moment",
        name=f"read_{noun}",
    )
    def read(
        record_id: UUID,
        app: Department,
        reader: Reader,
        as_of: Annotated[datetime | None, Query(description="RFC 3339 time: the record as it stood then")] = None,
        version: Annotated[int | None, Query(ge=1, le=2**62, description="The record at this version")] = None,
    ) -> JSONResponse:
        if as_of is not None and version is not None:
            raise ApiProblem(422, "validation_error", "give as_of or version, not both")
        if as_of is not None and as_of.tzinfo is None:
            raise ApiProblem(422, "validation_error", "as_of: an RFC 3339 time with its offset, e.g. 2026-03-01T00:00:00Z")
        record = app.get(record_type, record_id, version=version, as_of=as_of)
        return JSONResponse(record_view(app, record, reader), headers={"ETag": f'"{record.version}"'})

    @router.get(
        "/{record_id}/history",
        response_model=History,
        responses=ERRORS,
        summary=f"Every event of a {noun}: who, what, when, why",
        name=f"{noun}_history",
    )
    def history(
        record_id: UUID,
        app: Department,
        reader: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: NumberCursor = None,
    ) -> dict[str, Any]:
        after = cursor_number(cursor)
        # Only the page is read and decoded, however long the record's history.
        entries = app.history(record_id, after, limit + 1)
        first = entries[0] if entries else app.history(record_id, 0, 1)[0]
        if not first.type.startswith(f"{record_type.__name__}."):
            raise NotFound(f"no {noun} {record_id}")
        page, more = entries[:limit], len(entries) > limit
        return {
            "items": [history_view(app, entry, reader, record_id) for entry in page],
            "next_cursor": str(page[-1].version) if more else None,
        }

    @router.get(
        "/{record_id}/diff",
        response_model=RecordDiff,
        responses={**ERRORS, 404: {"model": Problem, "description": "No such record, or no such version"},
                   422: {"model": Problem, "description": "A moment that is neither a version nor an RFC 3339 time "
                                                          "with offset, one that reads as both or as no single moment "
                                                          "(`ambiguous_moment`), or from after to"}},
        summary=f"What changed in a {noun} between two versions or times, and which events changed it",
        description="`from` and `to` are each a version (decimal digits: `4`) or an RFC 3339 time with its "
                    "offset (`2026-03-01T00:00:00Z`, `2026-03-01T08:00:00%2B08:00`); a time means the version "
                    "recorded at or before it (0 when the record did not exist yet). A date alone, a time "
                    "without offset, or eight digits that spell a date (`20260301`) is refused "
                    "`ambiguous_moment`. Fields follow the record read's rules for the caller's roles: an "
                    "employee's personal fields appear for hr only, and for nobody once erased.",
        name=f"{noun}_diff",
    )
    def diff(
        record_id: UUID,
        app: Department,
        reader: Reader,
        from_: Annotated[str, Query(alias="from", min_length=1, max_length=64,
                                    description="A version or an RFC 3339 time with offset")],
        to: Annotated[str, Query(min_length=1, max_length=64,
                                 description="A version or an RFC 3339 time with offset")],
    ) -> JSONResponse:
        first, last = diffs.moment("from", from_), diffs.moment("to", to)
        return JSONResponse(diffs.record_diff(app, record_type, record_id, noun, first, last, reader))
