"""Field types shared by request models: money and rates as decimal strings, never numbers."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from channel_domain.values import FIRST_DAY, KPI_NAME, LAST_DAY, YEAR, holds_nul

Money = Annotated[
    str,
    Field(
        pattern=r"^\d{1,13}(\.\d{1,2})?$",
        description="CNY as a decimal string with at most 2 places. A JSON number is refused, never rounded.",
        examples=["1234.50"],
    ),
]
Rate = Annotated[
    str,
    Field(pattern=r"^0(\.\d{1,8})?$", description="A fraction as a decimal string: 0.05 is 5 %.", examples=["0.05"]),
]


def _iso_day(value: object) -> object:
    # Lax pydantic would take a number as a Unix timestamp; a date here is YYYY-MM-DD.
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise ValueError("a date is a string YYYY-MM-DD")


def _business_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:  # refused here too, before any query sees it
        raise ValueError(f"a date between {FIRST_DAY} and {LAST_DAY}")
    return value


Day = Annotated[date, BeforeValidator(_iso_day), AfterValidator(_business_day),
                Field(description=f"YYYY-MM-DD, from {FIRST_DAY} to {LAST_DAY}", examples=["2026-03-15"])]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Period = Annotated[str, Field(pattern=rf"^{YEAR}(-(0[1-9]|1[0-2])|-Q[1-4])?$", examples=["2026-03", "2026-Q1", "2026"])]
KpiName = Annotated[str, Field(pattern=KPI_NAME.pattern, examples=["sales_revenue"])]
Score = Annotated[int | str, Field(description="0 to 100; an integer or a decimal string", examples=[85])]


class Command(BaseModel):
    """A command body: unknown fields are refused, so a typo never passes silently; and no
    text may hold a NUL character, which the read models (PostgreSQL text and jsonb) cannot
    store: accepted, such an event would stop every projection at it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if holds_nul(data):
            raise ValueError("text may not contain the NUL character")
        return data


class NoBody(Command):
    """For commands that take no fields: an empty object, or no body at all."""


class FlatCommission(Command):
    type: Literal["flat"]
    rate: Rate


class Tier(Command):
    up_to: Money | None = None
    rate: Rate


class TieredCommission(Command):
    type: Literal["tiered"]
    tiers: list[Tier] = Field(min_length=1, max_length=20)


Commission = Annotated[FlatCommission | TieredCommission, Field(discriminator="type")]


class RecordState(BaseModel):
    """A record's state after a command or at a point in time. Fields beyond these depend
    on the record type; money is always a decimal string."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "id": "6f1c2d3e-4f50-4b8e-9a0e-0b7c1f0e3a52", "version": 6, "position": 1042, "status": "signed",
        "partner_id": "0b7c1f0e-3a52-4b8e-9a0e-6f1c2d3e4f50", "partner_kind": "enterprise_agent",
        "starts_on": "2026-01-01", "ends_on": "2026-12-31", "territory": "Zhejiang",
        "commission": {"type": "flat", "rate": "0.03"}, "orders": 1, "gross_sales": "60000.00", "returns": "0.00",
    }]})

    id: str
    version: int = Field(description="The record's version (its event count)")
    status: str
    position: int | None = Field(None, description="Global log position of the last event written")


class HistoryItem(BaseModel):
    position: int
    version: int
    type: str
    recorded_at: str
    effective_on: str | None
    actor: str
    roles: list[str]
    correlation_id: str
    causation_id: str
    data: dict


class History(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [{
        "position": 1042, "version": 5, "type": "Contract.SaleRecorded", "recorded_at": "2026-03-02T08:15:02.113Z",
        "effective_on": "2026-03-02", "actor": "erp", "roles": ["integration"],
        "correlation_id": "erp-batch-77", "causation_id": "erp-batch-77",
        "data": {"order_id": "SO-1", "amount": "60000.00", "sold_on": "2026-03-02", "region": "Zhejiang",
                 "product": None, "employee_id": None},
    }], "next_cursor": None}]})

    items: list[HistoryItem]
    next_cursor: str | None = None


class DiffEvent(BaseModel):
    position: int
    version: int
    type: str
    actor: str
    recorded_at: str
    correlation_id: str


class FieldChange(BaseModel):
    field: str
    old: Any = Field(description="The field at `from` (null: absent then)")
    new: Any = Field(description="The field at `to` (null: absent then)")
    events: list[DiffEvent] = Field(description="The events between that moved this field, in order (the first 1 000)")
    events_total: int = Field(description="How many events between moved it")


class DiffEnd(BaseModel):
    given: int | str = Field(description="`from` or `to` as sent: a version, or a time")
    version: int = Field(description="The record's version then (0: it did not exist yet)")


class RecordDiff(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "6f1c2d3e-4f50-4b8e-9a0e-0b7c1f0e3a52", "from": {"given": 4, "version": 4},
        "to": {"given": "2026-03-31T16:00:00Z", "version": 6}, "events_between": 2,
        "changes": [{"field": "commission", "old": {"type": "flat", "rate": "0.03"},
                     "new": {"type": "flat", "rate": "0.035"}, "events_total": 1, "events": [{
                         "position": 1042, "version": 6, "type": "Contract.AmendmentApproved", "actor": "gm-1",
                         "recorded_at": "2026-03-20T02:15:02.113Z", "correlation_id": "req-8812"}]}],
    }]})

    id: str
    from_: DiffEnd = Field(alias="from")
    to: DiffEnd
    events_between: int
    changes: list[FieldChange]
