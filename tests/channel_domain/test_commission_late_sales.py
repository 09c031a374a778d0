"""A late sale under tiered terms sums its month's earlier sales only until they reach the top
tier (issue 18, P5): what it books is exactly what summing the whole month booked. Two ledgers
of random steps: random cents (long months, days out of order), and round amounts whose sums
land exactly on tier bounds (zero sales, one to four tiers, a rebuilt ledger, each sale's
commission against a reference computed apart; from a cold review)."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal as D

import pytest

from channel_domain.commission import ZERO, ContractCommissions, _earned, marginal_slices
from channel_domain.values import CommissionTerms

from .test_commission_randomised import random_terms


class SumsWholeMonths(ContractCommissions):
    """As before the change: every sale before the late one, summed."""

    def _sold_before(self, month, start, settled_from):
        return sum((entry.amount for entry in month[:start]), ZERO)


def _on_both(books: tuple[ContractCommissions, SumsWholeMonths], step: Callable[[ContractCommissions], object],
             position: int) -> None:
    answers = [step(book) for book in books]
    assert answers[0] == answers[1], f"position {position}"
    assert books[0].booked == books[1].booked


def _terms(rng: random.Random) -> CommissionTerms:
    terms = random_terms(rng)
    if terms.type == "flat":  # mostly tiered here: the flat ones never reach the changed code
        return random_terms(rng)
    return terms


@pytest.mark.parametrize("seed", range(40))
def test_late_sales_book_what_whole_sums_booked(seed):
    rng = random.Random(seed)
    initial = _terms(rng)
    books = ContractCommissions(initial), SumsWholeMonths(initial)
    sold: list[tuple[str, D]] = []
    for position in range(1, 400):
        roll = rng.random()
        recorded_in = f"2026-{min(12, 1 + position // 40):02d}"
        if roll < 0.03:
            effective_on = date(2026, rng.randint(1, 4), rng.randint(1, 28))
            terms = _terms(rng)
            _on_both(books, lambda book: book.amendment(effective_on, terms, recorded_in), position)
        elif roll < 0.12 and sold:
            order, amount = rng.choice(sold)
            part = min(amount, D(rng.randint(1, 200_000)) / 100)
            _on_both(books, lambda book: book.return_(order, part, date(2026, 4, 28), position, recorded_in), position)
        else:
            # A few months, days out of order: most sales land before sales already booked.
            day = date(2026, rng.randint(1, 3), rng.randint(1, 28))
            amount = D(rng.randint(100, 1_500_000)) / 100
            order = f"O-{position}"
            sold.append((order, amount))
            _on_both(books, lambda book: book.sale(order, amount, day, position, recorded_in), position)
    assert books[0].ideal() == books[1].ideal()
    assert all(books[0].order_commission(order) == books[1].order_commission(order) for order, _ in sold)


def _round_terms(rng: random.Random) -> CommissionTerms:
    """Flat, or one to four tiers on round thousands: round sales reach a bound exactly."""

    def r() -> str:
        return f"0.0{rng.randint(100, 999)}"

    if rng.random() < 0.2:
        return CommissionTerms.parse({"type": "flat", "rate": r()})
    n = rng.randint(1, 4)
    bounds = sorted(rng.sample(range(1, 12), n))
    return CommissionTerms.parse({"type": "tiered", "tiers": [
        *({"up_to": f"{b * 1000}.00", "rate": r()} for b in bounds), {"rate": r()}]})


def _reference(book: ContractCommissions, sales: dict) -> dict:
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
    initial = _round_terms(rng)
    books = ContractCommissions(initial), SumsWholeMonths(initial)
    sales = {}
    for position in range(1, rng.randint(20, 150)):
        roll = rng.random()
        rec = f"2026-{min(12, 1 + position // 30):02d}"
        if roll < 0.06:
            on, t = date(2026, rng.randint(1, 3), rng.randint(1, 28)), _round_terms(rng)
            _on_both(books, lambda book: book.amendment(on, t, rec), position)
        elif roll < 0.15 and sales:
            order = rng.choice(sorted(sales))
            part = min(D(rng.choice([250, 500, 1000])) + D(rng.choice(["0", "0.01", "0.5"])), sales[order][0])
            on = date(2026, rng.randint(1, 4), 28)
            _on_both(books, lambda book: book.return_(order, part, on, position, rec), position)
        else:
            day = date(2026, rng.randint(1, 2), rng.randint(1, 28))
            amount = D(rng.choice([0, 500, 1000, 1000, 2000, 3000, 250])) + (D("0.01") if rng.random() < 0.1 else 0)
            order = f"O-{position}"
            sales[order] = (amount, day, position)
            _on_both(books, lambda book: book.sale(order, amount, day, position, rec), position)
    ref = _reference(books[0], sales)
    for order in sales:
        assert books[0]._sales[order].commission == ref[order], order
    assert books[0].ideal() == books[1].ideal()
    assert {m: v for m, v in books[0].booked.items()} == {m: v for m, v in books[0].ideal().items()} | {
        m: v for m, v in books[0].booked.items() if m not in books[0].ideal()}
    # the restored book prices the same
    fresh = ContractCommissions(initial)
    entries = [dataclasses.replace(e, slices=[]) for e in
               [*books[0]._sales.values(), *(e for returns in books[0]._returns.values() for e in returns)]]
    fresh.restore(entries, list(books[0]._amendments), dict(books[0].booked))
    assert fresh.ideal() == books[0].ideal()
