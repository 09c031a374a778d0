"""How a contract's sales and returns earn commission (domain.md §6), and how what they earn
is booked so that no statement is ever rewritten.

`ContractCommissions` holds what is known of one contract — its terms history, its sales and
returns — and prices it *ideally*: in date order then recording order, each sale's slice of
the month's cumulative net sales at its tier's rate, each return clawing back its sale's own
top slices first. Booking keeps, per month, what the statements already say. When something
new is learnt, the new sale or return is booked in the month of its business date at its
ideal price; if it also changes what other lines should have earned (an amendment with a
past effective date, a sale dated before sales already booked under tiered terms), each
month's difference (ideal − booked) is booked as one adjustment line in the month the news
was recorded, naming the month it corrects. So, after every event, the booked total of
every month equals its ideal total, and every line once booked stays as it was.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from channel_domain.values import CommissionTerms, month_of

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Slice:
    """Part of an amount earning one rate."""

    amount: Decimal
    rate: Decimal

    @property
    def commission(self) -> Decimal:
        return cents(self.amount * self.rate)


def marginal_slices(terms: CommissionTerms, cumulative: Decimal, amount: Decimal) -> list[Slice]:
    """The slices of `amount` sold when the month's net sales already stand at `cumulative`.

    Net sales below zero (returns before any sale of the month) count in the first tier.
    """
    if terms.type == "flat":
        return [Slice(amount, terms.tiers[0].rate)]
    slices, low, left = [], cumulative, amount
    for tier in terms.tiers:
        if tier.up_to is not None and low >= tier.up_to:
            continue
        taken = left if tier.up_to is None else min(left, tier.up_to - low)
        slices.append(Slice(taken, tier.rate))
        low, left = low + taken, left - taken
        if not left:
            break
    return slices


def claw_back(held: list[Slice], amount: Decimal) -> tuple[list[Slice], list[Slice]]:
    """Takes `amount` from the top of `held` (a sale's slices, lowest first): returns
    (the slices taken, top first; the slices still held)."""
    taken, kept, left = [], list(held), amount
    while left and kept:
        top = kept.pop()
        part = min(top.amount, left)
        taken.append(Slice(part, top.rate))
        if part < top.amount:
            kept.append(Slice(top.amount - part, top.rate))
        left -= part
    return taken, kept


@dataclass(frozen=True)
class Line:
    """One line of a statement. Amounts and commissions are signed: a return's are negative."""

    kind: str  # sale | return | deal | adjustment
    period: str  # the statement's month
    order_id: str | None
    business_date: date | None
    amount: Decimal
    rate: Decimal | None
    commission: Decimal
    corrects_period: str | None = None


@dataclass
class Entry:
    """A sale or a return as known, with what it earns (or claws back) under current knowledge."""

    kind: str  # sale | return
    order_id: str
    day: date
    position: int
    amount: Decimal
    slices: list[Slice] = field(default_factory=list)

    @property
    def key(self) -> tuple[date, int]:
        return self.day, self.position

    @property
    def month(self) -> str:
        return month_of(self.day)

    @property
    def commission(self) -> Decimal:
        earned = sum((s.commission for s in self.slices), ZERO)
        return earned if self.kind == "sale" else -earned

    def lines(self) -> list[Line]:
        sign = 1 if self.kind == "sale" else -1
        return [
            Line(self.kind, self.month, self.order_id, self.day, sign * s.amount, s.rate, sign * s.commission)
            for s in self.slices
        ]


class ContractCommissions:
    def __init__(self, terms: CommissionTerms) -> None:
        self._amendments: list[tuple[date, CommissionTerms]] = []
        self._initial = terms
        self._tiered = terms.type == "tiered"
        self._entries: list[Entry] = []  # in key order
        self._sales: dict[str, Entry] = {}
        self._held: dict[str, list[Slice]] = {}  # each sale's slices not yet returned
        self._net: dict[str, Decimal] = defaultdict(lambda: ZERO)  # month -> net sales so far
        self.booked: dict[str, Decimal] = defaultdict(lambda: ZERO)  # month -> what its statements say

    # What is known --------------------------------------------------------------------

    def terms_on(self, day: date) -> CommissionTerms:
        in_force = self._initial
        for effective_on, terms in self._amendments:
            if effective_on <= day:
                in_force = terms
        return in_force

    def restore(self, entries: Iterable[Entry], amendments: Iterable[tuple[date, CommissionTerms]],
                booked: dict[str, Decimal]) -> None:
        """Loads what was learnt before (in recording order), as stored with the lines."""
        for effective_on, terms in amendments:
            self._learn_terms(effective_on, terms)
        self._entries = sorted(entries, key=lambda e: e.key)
        self._sales = {e.order_id: e for e in self._entries if e.kind == "sale"}
        self._reprice()
        self.booked.update(booked)

    def _learn_terms(self, effective_on: date, terms: CommissionTerms) -> None:
        self._amendments.append((effective_on, terms))
        self._amendments.sort(key=lambda amendment: amendment[0])  # stable: recording order breaks ties
        self._tiered = self._tiered or terms.type == "tiered"

    # What is learnt, and what it books -------------------------------------------------

    def sale(self, order_id: str, amount: Decimal, sold_on: date, position: int, recorded_in: str) -> list[Line]:
        entry = Entry("sale", order_id, sold_on, position, amount)
        self._sales[order_id] = entry
        return self._learn(entry, recorded_in)

    def return_(self, order_id: str, amount: Decimal, returned_on: date, position: int,
                recorded_in: str) -> list[Line]:
        return self._learn(Entry("return", order_id, returned_on, position, amount), recorded_in)

    def amendment(self, effective_on: date, terms: CommissionTerms, recorded_in: str) -> list[Line]:
        self._learn_terms(effective_on, terms)
        self._reprice()
        return self._adjustments(recorded_in)

    def _learn(self, entry: Entry, recorded_in: str) -> list[Line]:
        in_order = not self._entries or entry.key >= self._entries[-1].key
        if in_order or not self._tiered:
            # Nothing booked before depends on it: price it alone.
            if in_order:
                self._entries.append(entry)
            else:
                self._insert(entry)
            self._price(entry)
            self.booked[entry.month] += entry.commission
            return entry.lines()
        # A late entry under tiered terms moves the slices of what follows it in its month.
        self._insert(entry)
        self._reprice()
        self.booked[entry.month] += entry.commission
        return entry.lines() + self._adjustments(recorded_in)

    def _insert(self, entry: Entry) -> None:
        index = len(self._entries)
        while index and self._entries[index - 1].key > entry.key:
            index -= 1
        self._entries.insert(index, entry)

    def _reprice(self) -> None:
        self._held.clear()
        self._net.clear()
        for entry in self._entries:
            self._price(entry)

    def _price(self, entry: Entry) -> None:
        month = entry.month
        if entry.kind == "sale":
            entry.slices = marginal_slices(self.terms_on(entry.day), self._net[month], entry.amount)
            self._held[entry.order_id] = list(entry.slices)
            self._net[month] += entry.amount
        else:
            entry.slices, self._held[entry.order_id] = claw_back(self._held[entry.order_id], entry.amount)
            self._net[month] -= entry.amount

    def ideal(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for entry in self._entries:
            totals[entry.month] += entry.commission
        return totals

    def _adjustments(self, recorded_in: str) -> list[Line]:
        ideal = self.ideal()
        lines = []
        for month in sorted(set(ideal) | set(self.booked)):
            difference = ideal[month] - self.booked[month]
            if difference:
                lines.append(Line("adjustment", recorded_in, None, None, ZERO, None, difference, month))
                self.booked[month] += difference
        return lines
