"""Money is Decimal with two places; floats are refused, never rounded."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from channel_domain.values import Period, add_months, money, parse_date, plain_json, term_end
from tests.channel_domain.helpers import refused


def test_decimal_strings_become_two_place_decimals():
    assert money("1234.5") == Decimal("1234.50")
    assert money(Decimal("7")) == Decimal("7.00")


@pytest.mark.parametrize("value", [0.1, 1.0, True, "1.005", "NaN", "Infinity", "", None, [1]])
def test_floats_and_non_amounts_are_refused(value):
    with refused("validation_error"):
        money(value)


@pytest.mark.parametrize(
    ("text", "starts", "ends"),
    [
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("2026-Q4", date(2026, 10, 1), date(2026, 12, 31)),
        ("2026", date(2026, 1, 1), date(2026, 12, 31)),
    ],
)
def test_periods(text, starts, ends):
    period = Period.parse(text)
    assert (period.starts_on, period.ends_on) == (starts, ends)


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "26", "2026-1", "2026/01", "0000", "0000-03", "1899-12", "3000"])
def test_malformed_periods_are_refused(text):
    with refused("validation_error"):
        Period.parse(text)


def test_add_months_clamps_to_month_end():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)


@pytest.mark.parametrize(
    ("starts_on", "months", "ends_on"),
    [
        (date(2024, 2, 29), 12, date(2025, 2, 28)),  # no 29 Feb in 2025: the month's last day
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # no 31 Feb: the month's last day
        (date(2024, 1, 30), 1, date(2024, 2, 29)),
        (date(2024, 1, 29), 1, date(2024, 2, 28)),  # 29 Feb exists: the day before it
        (date(2026, 1, 5), 12, date(2027, 1, 4)),
        (date(2026, 3, 1), 2, date(2026, 4, 30)),
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
    ],
)
def test_a_term_ends_the_day_before_the_same_day_or_on_the_end_months_last_day(starts_on, months, ends_on):
    assert term_end(starts_on, months) == ends_on


@pytest.mark.parametrize("day", ["0001-01-01", date(1899, 12, 31), "3000-01-01", date(9999, 12, 31)])
def test_dates_outside_the_departments_calendar_are_refused(day):
    """Whoever calls: the read models' date arithmetic cannot reach below year 1 or past 9999."""
    with refused("validation_error"):
        parse_date(day, "on")


def test_dates_at_the_ends_of_the_calendar_are_taken():
    assert parse_date("1900-01-01", "on") == date(1900, 1, 1)
    assert parse_date(date(2999, 12, 31), "on") == date(2999, 12, 31)


def test_times_are_written_in_utc_whatever_zone_they_were_read_in() -> None:
    beijing = datetime(2026, 4, 1, 7, 30, tzinfo=timezone(timedelta(hours=8)))
    assert plain_json({"at": beijing}) == {"at": "2026-03-31T23:30:00Z"}
