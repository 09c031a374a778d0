"""A late sale under tiered terms sums its month's earlier sales only until they reach the top
tier (issue 18, P5): what it books is exactly what summing the whole month booked."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal as D

import pytest

from channel_domain.commission import ZERO, ContractCommissions
from channel_domain.values import CommissionTerms

from .test_commission_randomised import random_terms


class SumsWholeMonths(ContractCommissions):
    """As before the change: every sale before the late one, summed."""

    def _sold_before(self, month, start, settled_from):
        return sum((entry.amount for entry in month[:start]), ZERO)


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
            answers = [book.amendment(effective_on, terms, recorded_in) for book in books]
        elif roll < 0.12 and sold:
            order, amount = rng.choice(sold)
            part = min(amount, D(rng.randint(1, 200_000)) / 100)
            answers = [book.return_(order, part, date(2026, 4, 28), position, recorded_in) for book in books]
        else:
            # A few months, days out of order: most sales land before sales already booked.
            day = date(2026, rng.randint(1, 3), rng.randint(1, 28))
            amount = D(rng.randint(100, 1_500_000)) / 100
            order = f"O-{position}"
            sold.append((order, amount))
            answers = [book.sale(order, amount, day, position, recorded_in) for book in books]
        assert answers[0] == answers[1], f"position {position}"
        assert books[0].booked == books[1].booked
    assert books[0].ideal() == books[1].ideal()
    assert all(books[0].order_commission(order) == books[1].order_commission(order) for order, _ in sold)
