"""Late tiered sales priced without summing the whole month (`_sold_before`) against whole-month
sums, where test_commission_late_sales.py's random cents never reach: sums landing exactly on
tier bounds, zero sales, one to four tiers, several amendments by day, returns, a rebuilt ledger,
and each sale's commission against a reference computed apart. (From a cold review.)"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from datetime import date
from decimal import Decimal as D

import pytest

from channel_domain.commission import ZERO, ContractCommissions, _earned, marginal_slices
from channel_domain.values import CommissionTerms


class Whole(ContractCommissions):
    """The ledger as it was: every late sale sums its whole month."""

    def _sold_before(self, month, start, settled_from):
        return sum((e.amount for e in month[:start]), ZERO)


def terms(rng):
    def r() -> str:
        return f"0.0{rng.randint(100, 999)}"

    if rng.random() < 0.2:
        return CommissionTerms.parse({"type": "flat", "rate": r()})
    n = rng.randint(1, 4)
    bounds = sorted(rng.sample(range(1, 12), n))
    return CommissionTerms.parse({"type": "tiered", "tiers": [
        *({"up_to": f"{b * 1000}.00", "rate": r()} for b in bounds), {"rate": r()}]})


def reference(book, sales):
    """Each sale's commission from its whole month (date then position), terms on its day."""
    months = defaultdict(list)
    for order, (amount, day, pos) in sales.items():
        months[(day.year, day.month)].append((day, pos, order, amount))
    out = {}
    for entries in months.values():
        cum = ZERO
        for day, pos, order, amount in sorted(entries):
            out[order] = _earned(marginal_slices(book.terms_on(day), cum, amount))
            cum += amount
    return out


@pytest.mark.parametrize("seed", range(300))
def test_late_sales_price_as_whole_month_sums_do_with_sums_on_tier_bounds(seed):
    rng = random.Random(seed)
    initial = terms(rng)
    books = ContractCommissions(initial), Whole(initial)
    sales = {}
    for position in range(1, rng.randint(20, 150)):
        roll = rng.random()
        rec = f"2026-{min(12, 1 + position // 30):02d}"
        if roll < 0.06:
            on, t = date(2026, rng.randint(1, 3), rng.randint(1, 28)), terms(rng)
            answers = [b.amendment(on, t, rec) for b in books]
        elif roll < 0.15 and sales:
            order = rng.choice(sorted(sales))
            part = D(rng.choice([250, 500, 1000])) + D(rng.choice(["0", "0.01", "0.5"]))
            on = date(2026, rng.randint(1, 4), 28)
            answers = [b.return_(order, min(part, sales[order][0]), on, position, rec) for b in books]
        else:
            day = date(2026, rng.randint(1, 2), rng.randint(1, 28))
            amount = D(rng.choice([0, 500, 1000, 1000, 2000, 3000, 250])) + (D("0.01") if rng.random() < 0.1 else 0)
            order = f"O-{position}"
            sales[order] = (amount, day, position)
            answers = [b.sale(order, amount, day, position, rec) for b in books]
        assert answers[0] == answers[1], position
        assert books[0].booked == books[1].booked
    ref = reference(books[0], sales)
    for order in sales:
        assert books[0]._sales[order].commission == ref[order], order
    assert books[0].ideal() == books[1].ideal()
    assert {m: v for m, v in books[0].booked.items()} == {m: v for m, v in books[0].ideal().items()} | {
        m: v for m, v in books[0].booked.items() if m not in books[0].ideal()}
    # the restored book prices the same
    fresh = ContractCommissions(initial)
    entries = [dataclasses.replace(e, slices=[]) for e in list(books[0]._sales.values()) + [e for rs in books[0]._returns.values() for e in rs]]
    fresh.restore(entries, list(books[0]._amendments), dict(books[0].booked))
    assert fresh.ideal() == books[0].ideal()
