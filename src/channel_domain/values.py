"""Value types shared by the aggregates: money, rates, periods, commission terms."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from channel_domain.errors import ValidationFailed

CENT = Decimal("0.01")


def money(value: Any, field: str = "amount", *, allow_zero: bool = False, signed: bool = False) -> Decimal:
    """A CNY amount: a Decimal (or decimal string) with at most 2 places, never a float;
    `signed`: a correction, which may be negative.

    Floats are refused rather than rounded: 0.1 + 0.2 is not a price anyone agreed to.
    """
    amount = decimal_value(value, field)
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValidationFailed(field, "money has at most 2 decimal places")
    if (amount < 0 and not signed) or (amount == 0 and not allow_zero):
        raise ValidationFailed(field, "must be greater than zero")
    return amount.quantize(CENT)


def rate(value: Any, field: str = "rate") -> Decimal:
    """A commission or fee rate as a fraction: 0.05 means 5 %."""
    fraction = decimal_value(value, field)
    if not Decimal(0) <= fraction < Decimal(1):
        raise ValidationFailed(field, "a rate is a fraction from 0 up to (not including) 1")
    return fraction


def decimal_value(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValidationFailed(field, "must be a decimal string such as \"1234.50\", not a float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (str, int)):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValidationFailed(field, f"{value!r} is not a decimal number") from None
    else:
        raise ValidationFailed(field, "must be a decimal string")
    if not result.is_finite():
        raise ValidationFailed(field, "must be a finite number")
    return result


def holds_nul(value: Any) -> bool:
    """Whether a string, or any key or item of a nested dict, list or tuple, holds a NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    return False


def require_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(field, "is required")
    return value.strip()


# A KPI is named in lower_snake_case: sales_revenue, partner_satisfaction, new_partners …
KPI_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# The department's calendar runs from 1900 to 2999. Beyond it, date arithmetic in the read
# models (a month before 0001-01-01, a probation ending after 9999) leaves what Python can hold.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)
YEAR = r"(?:19|2\d)\d{2}"  # a year of that calendar, as a pattern the API's schema shares

_PERIOD = re.compile(rf"^(?P<year>{YEAR})(?:-(?:(?P<month>0[1-9]|1[0-2])|Q(?P<quarter>[1-4])))?$")


@dataclass(frozen=True, order=True)
class Period:
    """A month (`2026-03`), a quarter (`2026-Q1`) or a year (`2026`)."""

    starts_on: date
    ends_on: date
    text: str

    @classmethod
    def parse(cls, text: Any, field: str = "period") -> Period:
        if isinstance(text, Period):
            return text
        match = _PERIOD.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValidationFailed(field, "a period is YYYY-MM, YYYY-Qn or YYYY")
        year = int(match["year"])
        if match["month"]:
            first = last = int(match["month"])
        elif match["quarter"]:
            first = 3 * int(match["quarter"]) - 2
            last = first + 2
        else:
            first, last = 1, 12
        return cls(
            starts_on=date(year, first, 1),
            ends_on=date(year, last, calendar.monthrange(year, last)[1]),
            text=text,
        )

    @property
    def kind(self) -> str:
        if "Q" in self.text:
            return "quarter"
        return "month" if "-" in self.text else "year"

    def contains(self, other: Period) -> bool:
        return self.starts_on <= other.starts_on and other.ends_on <= self.ends_on

    def __str__(self) -> str:
        return self.text


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def term_end(starts_on: date, months: int) -> date:
    """The last day of a term of `months` months from `starts_on`: the day before the same
    day `months` later — or, when that day does not exist in the end month (a 31st, 29 Feb),
    the end month's last day (hired 2024-02-29 for 12 months: 2025-02-28; 2024-01-31 for one
    month: 2024-02-29). Clamping first and subtracting after would end such terms a day early."""
    same_day = add_months(starts_on, months)
    return same_day if same_day.day != starts_on.day else same_day - timedelta(days=1)


def parse_date(value: Any, field: str) -> date:
    day = None
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            pass
    if day is None:
        raise ValidationFailed(field, "a date is YYYY-MM-DD")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationFailed(field, f"a date between {FIRST_DAY} and {LAST_DAY}")
    return day


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # cumulative monthly net sales this rate applies up to; None = no cap
    rate: Decimal


@dataclass(frozen=True)
class CommissionTerms:
    """`flat`: one rate on every sale. `tiered`: marginal rates on the contract's cumulative
    net sales within a calendar month (domain.md §6)."""

    type: str
    tiers: tuple[Tier, ...]

    @classmethod
    def parse(cls, value: Any, field: str = "commission") -> CommissionTerms:
        if isinstance(value, CommissionTerms):
            return value
        if not isinstance(value, dict):
            raise ValidationFailed(field, 'expected {"type": "flat", "rate": "0.05"} or tiers')
        kind = value.get("type")
        if kind == "flat":
            if set(value) - {"type", "rate"}:
                raise ValidationFailed(field, "flat terms have only type and rate")
            return cls("flat", (Tier(None, rate(value.get("rate"), f"{field}.rate")),))
        if kind == "tiered":
            raw_tiers = value.get("tiers")
            if set(value) - {"type", "tiers"} or not isinstance(raw_tiers, list) or not raw_tiers:
                raise ValidationFailed(field, "tiered terms need a non-empty list of tiers")
            tiers: list[Tier] = []
            for index, raw in enumerate(raw_tiers):
                where = f"{field}.tiers[{index}]"
                if not isinstance(raw, dict) or set(raw) - {"up_to", "rate"}:
                    raise ValidationFailed(where, "a tier has up_to and rate")
                last = index == len(raw_tiers) - 1
                up_to = raw.get("up_to")
                if last and up_to is not None:
                    raise ValidationFailed(where, "the last tier has no up_to: it has no cap")
                if not last:
                    up_to = money(up_to, f"{where}.up_to")
                    if tiers and up_to <= tiers[-1].up_to:  # type: ignore[operator]
                        raise ValidationFailed(where, "tier bounds must increase")
                tiers.append(Tier(up_to, rate(raw.get("rate"), f"{where}.rate")))
            return cls("tiered", tuple(tiers))
        raise ValidationFailed(f"{field}.type", "must be flat or tiered")

    @property
    def lowest_rate(self) -> Decimal:
        return min(tier.rate for tier in self.tiers)

    @property
    def highest_rate(self) -> Decimal:
        return max(tier.rate for tier in self.tiers)

    def as_dict(self) -> dict[str, Any]:
        if self.type == "flat":
            return {"type": "flat", "rate": str(self.tiers[0].rate)}
        return {
            "type": "tiered",
            "tiers": [
                {"rate": str(t.rate)} if t.up_to is None else {"up_to": str(t.up_to), "rate": str(t.rate)}
                for t in self.tiers
            ],
        }


def json_default(value: Any) -> Any:
    """`plain_json` for `json.dumps(default=...)`: the encoder walks dicts and lists in C and
    calls this only for what JSON lacks."""
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, datetime):
        # In UTC whatever zone the database session reads timestamps in (a server kept on
        # Beijing time answers +08:00).
        moment = value if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


_ALREADY_JSON = frozenset({str, int, float, bool, type(None)})


def plain_json(value: Any) -> Any:
    """JSON-ready values: Decimal stays exact as a string (unlike FastAPI's encoder, which
    turns it into a float), dates ISO 8601, UUIDs as strings, times RFC 3339 in UTC."""
    if type(value) in _ALREADY_JSON:  # most leaves: answered before the isinstance checks (the relay's P9)
        return value
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, (Decimal, UUID, date)):  # date covers datetime
        return json_default(value)
    return value
