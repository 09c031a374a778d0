"""Random sequences of sales (late ones too), partial and full returns and flat and tiered
amendments with past effective dates, priced as they arrive and afresh, with the invariants of
domain.md §6 checked at every step (issue 13, "Done means")."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal as D

import pytest

from channel_domain.commission import ContractCommissions, Entry, Line
from channel_domain.values import CommissionTerms, month_of

ZERO = D("0.00")


def random_terms(rng: random.Random) -> CommissionTerms:
    # Rates with many digits, so that rounding each slice and each return to the cent matters.
    rates = [D(f"0.0{rng.randint(100, 999)}") for _ in range(3)]
    if rng.random() < 0.4:
        return CommissionTerms.parse({"type": "flat", "rate": str(rates[0])})
    bounds = sorted(rng.sample(range(1, 40), 2))
    return CommissionTerms.parse({"type": "tiered", "tiers": [
        {"up_to": f"{bounds[0] * 1000}.00", "rate": str(rates[0])},
        {"up_to": f"{bounds[1] * 1000}.00", "rate": str(rates[1])},
        {"rate": str(rates[2])}]})


def cents_between(rng: random.Random, low: int, high: int) -> D:
    return D(rng.randint(low, high)) / 100


def by_month(lines: list[Line]) -> dict[str, D]:
    """What the ledger says each month earns: its own lines and the adjustments naming it."""
    months: dict[str, D] = defaultdict(lambda: ZERO)
    for line in lines:
        months[line.corrects_period or line.period] += line.commission
    return {month: total for month, total in months.items() if total or month}


def play(seed: int, steps: int = 160) -> None:
    rng = random.Random(seed)
    initial = random_terms(rng)
    book = ContractCommissions(initial)
    ledger: list[Line] = []
    told: list[tuple] = []  # every call, in recording order
    entries: list[Entry] = []
    amendments: list[tuple[date, CommissionTerms]] = []
    left: dict[str, tuple[D, date]] = {}  # order -> (not yet returned, sold on)
    emptied: list[str] = []
    recorded = date(2026, 1, 20)
    for position in range(1, steps):
        recorded += timedelta(days=rng.randint(0, 2))
        recorded_in = month_of(recorded)
        booked_before = dict(book.booked)
        roll = rng.random()
        if roll < 0.06:
            terms, effective_on = random_terms(rng), date(2026, 1, 1) + timedelta(days=rng.randint(0, 120))
            call = ("amendment", effective_on, terms, recorded_in)
            lines = book.amendment(effective_on, terms, recorded_in)
            amendments.append((effective_on, terms))
            assert {line.kind for line in lines} <= {"adjustment"}
            assert all(line.period == recorded_in for line in lines)
        elif roll < 0.4 and any(amount for amount, _ in left.values()):
            order = rng.choice(sorted(o for o, (amount, _) in left.items() if amount))
            held, sold_on = left[order]
            amount = held if rng.random() < 0.4 else min(held, cents_between(rng, 1, int(held * 100)))
            day = sold_on + timedelta(days=rng.randint(0, 60))
            call = ("return_", order, amount, day, position, recorded_in)
            lines = book.return_(order, amount, day, position, recorded_in)
            entries.append(Entry("return", order, day, position, amount))
            left[order] = (held - amount, sold_on)
            # A return books its own clawback, in its own month, and changes nothing else.
            assert all(line.kind == "return" and line.order_id == order and line.period == month_of(day)
                       and line.amount < 0 and line.commission <= 0 for line in lines)
            assert sum(line.amount for line in lines) == -amount
            expected = dict(booked_before)
            expected[month_of(day)] = expected.get(month_of(day), ZERO) + sum(line.commission for line in lines)
            assert {m: v for m, v in book.booked.items() if v or m in expected} == {
                m: v for m, v in expected.items() if v or m in book.booked}
            if held == amount:
                emptied.append(order)
                assert book.order_commission(order) == ZERO  # a fully returned order nets 0.00
        else:
            order, amount = f"S{position}", cents_between(rng, 1, 3_000_000)
            day = date(2026, 1, 1) + timedelta(days=rng.randint(0, 110))  # often before sales already booked
            call = ("sale", order, amount, day, position, recorded_in)
            lines = book.sale(order, amount, day, position, recorded_in)
            entries.append(Entry("sale", order, day, position, amount))
            left[order] = (amount, day)
            own = [line for line in lines if line.kind == "sale"]
            assert sum(line.amount for line in own) == amount and all(line.period == month_of(day) for line in own)
            assert all(line.kind == "adjustment" and line.period == recorded_in for line in lines[len(own):])
        told.append(call)
        ledger += lines
        # The ledger only ever grows, and every month's lines add up to what it should earn.
        assert by_month(ledger) == {m: v for m, v in book.booked.items()}
        assert all(book.booked[month] == total for month, total in book.ideal().items())

    # Afresh: a fresh book fed everything at once prices every month as the incremental one did …
    fresh = ContractCommissions(initial)
    fresh.restore([Entry(e.kind, e.order_id, e.day, e.position, e.amount) for e in entries], amendments, {})
    assert fresh.ideal() == book.ideal()
    assert all(fresh.order_commission(order) == ZERO for order in emptied)
    # … and one told the same story in the same order books the very same lines.
    replay = ContractCommissions(initial)
    replayed: list[Line] = []
    for name, *args in told:
        replayed += getattr(replay, name)(*args)
    assert replayed == ledger


@pytest.mark.parametrize("seed", range(40))
def test_random_stories_price_the_same_as_they_come_and_afresh(seed):
    play(seed)
