"""GET /v1/events/schemas: the published contract of every event type a client can receive.

The schemas are generated from the event classes (`integration/schemas.py`), once per process,
and served with a strong ETag of their content, so a client (or a code generator in CI) can
revalidate with `If-None-Match` and learn in a 304 that nothing changed.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import allowed
from api.errors import ApiProblem, Problem
from api.routes.records import ERRORS
from api.tokens import ROLES, Principal
from integration.schemas import etag_of, published, schema_of

router = APIRouter(tags=["events"])
Anyone = Annotated[Principal, Depends(allowed(*ROLES))]
SCHEMA_MEDIA_TYPE = "application/schema+json"
# Private: behind a token. no-cache: keep it, but ask (If-None-Match) before using it again.
CACHE_CONTROL = "private, no-cache"


class PublishedSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description="The feed item's `type`", examples=["Partner.Applied"])
    version: int = Field(description="The event type's version: the feed carries only this one", examples=[1])
    stream_type: str = Field(description="The feed item's `stream_type`", examples=["Partner"])
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema (draft 2020-12) of the whole feed item")


class PublishedSchemas(BaseModel):
    items: list[PublishedSchema]
    next_cursor: str | None = Field(None, description="Always null: every type fits on one page")

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [{
        "type": "Partner.Applied", "version": 1, "stream_type": "Partner",
        "schema": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                   "$id": "urn:channel-domain:events:Partner.Applied:1", "type": "object",
                   "properties": {"type": {"type": "string", "const": "Partner.Applied"}, "data": {"…": "…"}}},
    }], "next_cursor": None}]})


@functools.cache
def _listing() -> tuple[dict[str, Any], str]:
    body = {"items": published(), "next_cursor": None}
    return body, etag_of(body)


def _cached(request: Request, body: Any, etag: str, media_type: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    # If-None-Match compares weakly (RFC 9110 §13.1.2): a proxy that compressed the answer
    # hands the tag back as W/"…".
    wanted = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers, media_type=media_type)


NOT_MODIFIED = {304: {"description": "`If-None-Match` names the current ETag: nothing changed"}}


@router.get(
    "/v1/events/schemas",
    response_model=PublishedSchemas,
    responses={**NOT_MODIFIED, 401: ERRORS[401]},
    summary="The JSON Schema of the feed item of every event type, at its current version",
)
def event_schemas(request: Request, _: Anyone) -> Response:
    """One entry per event type; `schema` describes the whole feed item (as `GET /v1/events`,
    its stream, webhooks and NATS carry it) with `data` field by field. Keyed by `type`: the
    feed carries only the current `version` of each, older events being upcast when read."""
    body, etag = _listing()
    return _cached(request, body, etag, "application/json")


@router.get(
    "/v1/events/schemas/{type}",
    responses={
        200: {"description": "The schema document itself, `$id` and all",
              "content": {SCHEMA_MEDIA_TYPE: {"schema": {"type": "object"}}}},
        **NOT_MODIFIED,
        401: ERRORS[401],
        404: {"model": Problem, "description": "No such event type (`unknown_event_type`)"},
    },
    summary="The JSON Schema of one event type's feed item",
)
def event_schema(
    request: Request,
    _: Anyone,
    type: Annotated[str, Path(description="An event type, as the feed item's `type`", examples=["Partner.Applied"])],  # noqa: A002
) -> Response:
    schema = schema_of(type)
    if schema is None:
        raise ApiProblem(404, "unknown_event_type", "no such event type: GET /v1/events/schemas lists them")
    return _cached(request, schema, etag_of(schema), SCHEMA_MEDIA_TYPE)
