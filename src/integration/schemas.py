"""The published event contracts: a JSON Schema (draft 2020-12) of the feed item of each event
type, generated from the event classes themselves, so the contract cannot drift from the code.

An event type is what the feed calls `type` (`Partner.Applied`); its version is the event
class's `class_version` (1 unless the class says otherwise). The mapper upcasts every stored
event to its class's current version when it reads it, so the feed, SSE, webhooks and NATS
only ever carry the current version of each type: that is the only one published.

`data` is described field by field from the event's annotations — the `@event`-decorated
method's signature, or the class body for an event class written out. A field with a default
may be absent (events recorded before it existed carry none); any other is always present.

The published schemas are open (unknown fields allowed): fields are only ever added to a
version, and a consumer that rejects an unknown field would break on the first addition.
`event_schema(..., closed=True)` is the same schema refusing anything undeclared, which the
test suite checks every event it writes against, so the published field list is complete.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Union
from uuid import UUID

from eventsourcing.domain import CommandMethodDecorator

from channel_domain.aggregate import EFFECTIVE_DATE_FIELDS, ENVELOPE_FIELDS, ChannelAggregate
from channel_domain.employee import PERSONAL_FIELDS, Employee
from integration.items import ERASED, OPERATIONAL_STREAM_TYPES, REDACTED

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:channel-domain:events:"

# As `values.plain_json` writes them: a Decimal is its exact `str` (so a tiny rate such as
# 0.0000001 is "1E-7"), a time RFC 3339 in UTC.
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"

STRING = {"type": "string"}
DECIMAL = {"type": "string", "pattern": DECIMAL_PATTERN, "description": "A decimal number as a string"}
DATE = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
DATE_TIME = {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN}
UUID_STRING = {"type": "string", "format": "uuid"}
NULL = {"type": "null"}
PERSONAL = {"enum": [REDACTED, ERASED],
            "description": "Personal data never leaves the service: a marker stands for the value"}


@dataclass(frozen=True)
class DataField:
    name: str
    annotation: Any
    required: bool  # False: absent from events recorded before the field existed


@dataclass(frozen=True)
class EventType:
    stream_type: str  # "Partner"
    type: str  # "Partner.Applied", as the feed item's `type`
    version: int  # the event class's class_version
    creates_stream: bool  # the first event of its stream: always version 1 of it
    fields: tuple[DataField, ...]

    @property
    def schema_id(self) -> str:
        return f"{ID_PREFIX}{self.type}:{self.version}"


def event_types() -> tuple[EventType, ...]:
    """Every event type the aggregates can record, in a stable order."""
    return _event_types()


@functools.cache
def _event_types() -> tuple[EventType, ...]:
    found = [event_type for aggregate in _aggregates() for event_type in _event_types_of(aggregate)]
    return tuple(sorted(found, key=lambda event_type: event_type.type))


def _aggregates() -> Iterator[type[ChannelAggregate]]:
    # The application records every aggregate there is: importing it defines them all.
    importlib.import_module("channel_domain.application")
    # Only the service's own: a test may define an aggregate of its own, which records nothing
    # a client could receive.
    pending = list(ChannelAggregate.__subclasses__())
    while pending:
        aggregate = pending.pop()
        pending.extend(aggregate.__subclasses__())
        if aggregate.__module__.startswith("channel_domain."):
            yield aggregate


def _event_types_of(aggregate: type[ChannelAggregate]) -> Iterator[EventType]:
    methods = _decorated_methods(aggregate)
    # An aggregate whose __init__ is decorated @event("Hired") records Hired, never the generic
    # Created the library also defines on it.
    init = vars(aggregate).get("__init__")
    created_name = init.event_cls_name if isinstance(init, CommandMethodDecorator) else "Created"
    for name, value in vars(aggregate).items():
        if not (isinstance(value, type) and issubclass(value, ChannelAggregate.Event)) or name == "Event":
            continue
        creates_stream = issubclass(value, ChannelAggregate.Created)
        if creates_stream and name != created_name:
            continue
        yield EventType(
            stream_type=aggregate.__name__,
            type=f"{aggregate.__name__}.{name}",
            version=getattr(value, "class_version", 1),
            creates_stream=creates_stream,
            fields=tuple(_data_fields(value, methods.get(name))),
        )


def _decorated_methods(aggregate: type[ChannelAggregate]) -> dict[str, Any]:
    """The method each event class was made from, by event name: its defaults say which
    fields older events may lack (the event class itself keeps only the annotations)."""
    methods = {}
    for value in vars(aggregate).values():
        if isinstance(value, CommandMethodDecorator):
            name = value.given_event_cls.__name__ if value.given_event_cls else value.event_cls_name
            methods[name] = value.decorated_func
    return methods


def _data_fields(event_class: type, method: Any) -> Iterator[DataField]:
    hints = typing.get_type_hints(event_class)
    parameters = inspect.signature(method).parameters.values() if method is not None else ()
    defaulted = {parameter.name for parameter in parameters if parameter.default is not parameter.empty}
    for field in dataclasses.fields(event_class):  # a ClassVar is no field
        if field.name not in ENVELOPE_FIELDS:
            yield DataField(field.name, hints[field.name], required=field.name not in defaulted)


# Schemas ----------------------------------------------------------------------------------


def event_schema(event_type: EventType, *, closed: bool = False) -> dict[str, Any]:
    """The JSON Schema of `event_type`'s feed item. `closed`: refuse undeclared properties."""
    return _event_schema(event_type, closed)


@functools.cache
def _event_schema(event_type: EventType, closed: bool) -> dict[str, Any]:
    personal = PERSONAL_FIELDS if event_type.stream_type == Employee.__name__ else frozenset()
    data_properties = {
        field.name: _personal(field.annotation) if field.name in personal else type_schema(field.annotation)
        for field in event_type.fields
    }
    data = {
        "type": "object",
        "properties": data_properties,
        "required": [field.name for field in event_type.fields if field.required],
    }
    item = {
        "$schema": DIALECT,
        "$id": event_type.schema_id,
        "title": f"{event_type.type} (version {event_type.version})",
        "type": "object",
        "properties": {
            "position": {"type": "integer", "minimum": 1,
                         "description": "The event's place in the log: resume after it"},
            "event_id": {**UUID_STRING, "description": "Stable across every channel: deduplicate on it"},
            "stream_id": {**UUID_STRING, "description": "The record the event belongs to"},
            "stream_type": {"type": "string", "const": event_type.stream_type},
            "version": ({"type": "integer", "const": 1} if event_type.creates_stream else
                        {"type": "integer", "minimum": 2}) | {"description": "The record's version after the event"},
            "type": {"type": "string", "const": event_type.type},
            "recorded_at": {**DATE_TIME, "description": "When the event was recorded (UTC)"},
            "effective_on": _effective_on(event_type) | {"description": "The business date it takes effect on"},
            "actor": {"type": "string", "description": "Who did it (the token's actor)"},
            "correlation_id": {"type": "string"},
            "causation_id": {"type": "string"},
            "data": data,
        },
        "required": ["position", "event_id", "stream_id", "stream_type", "version", "type", "recorded_at",
                     "effective_on", "actor", "correlation_id", "causation_id", "data"],
    }
    if closed:
        item["additionalProperties"] = data["additionalProperties"] = False
    return item


def _effective_on(event_type: EventType) -> dict[str, Any]:
    """As `aggregate.effective_on` finds it: the first date among the effective-date fields."""
    dated = [field for field in event_type.fields
             if field.name in EFFECTIVE_DATE_FIELDS and date in _members(field.annotation)]
    if not dated:
        return NULL
    if any(field.required and type(None) not in _members(field.annotation) for field in dated):
        return DATE
    return {"anyOf": [DATE, NULL]}


def _personal(annotation: Any) -> dict[str, Any]:
    return {"anyOf": [PERSONAL, NULL]} if type(None) in _members(annotation) else PERSONAL


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a value annotated `annotation`, as `plain_json` writes it. An
    annotation it does not know is an error, so a new kind of field is described on purpose."""
    members = _members(annotation)
    if len(members) > 1:
        schemas = [type_schema(member) for member in members if member is not type(None)]
        described = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        return {"anyOf": [described, NULL]} if type(None) in members else described
    if annotation is Any:
        return {}
    if annotation is type(None):
        return NULL
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) or annotation in (list, tuple):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = args[:1]
        return {"type": "array", "items": type_schema(args[0]) if len(args) == 1 else {}}
    if origin is dict or annotation is dict:
        value = type_schema(args[1]) if args else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    simple = {bool: {"type": "boolean"}, int: {"type": "integer"}, str: STRING, Decimal: DECIMAL,
              datetime: DATE_TIME, date: DATE, UUID: UUID_STRING}
    if annotation in simple:  # exact: a datetime is a date, and a bool an int
        return dict(simple[annotation])
    raise TypeError(f"no JSON Schema for the annotation {annotation!r}: describe it in integration/schemas.py")


# What GET /v1/events/schemas serves ---------------------------------------------------------


def published() -> list[dict[str, Any]]:
    """Each type's current version and its schema, in type order: the types integration
    clients receive (not the service's own operations, `items.OPERATIONAL_STREAM_TYPES`)."""
    return [
        {"type": event_type.type, "version": event_type.version, "stream_type": event_type.stream_type,
         "schema": event_schema(event_type)}
        for event_type in _published_types()
    ]


def schema_of(type_: str) -> dict[str, Any] | None:
    for event_type in _published_types():
        if event_type.type == type_:
            return event_schema(event_type)
    return None


def _published_types() -> Iterator[EventType]:
    return (event_type for event_type in event_types() if event_type.stream_type not in OPERATIONAL_STREAM_TYPES)


def etag_of(document: Any) -> str:
    """A strong ETag of a JSON document: it changes exactly when the document does."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'
