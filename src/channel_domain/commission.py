"""How a contract's sales and returns earn commission (domain.md §6), and how what they earn
is booked so that no statement is ever rewritten.

`ContractCommissions` holds what is known of one contract — its terms history, its sales and
returns — and prices it *ideally*: each sale's slice of its month's cumulative **sales** (in
date order, then recording order; returns do not move this sum) at its tier's rate; each
return clawing back its own sale's top slices first, the returns of one order in the order
they were recorded. A return that empties a slice takes exactly what the slice still holds,
so a fully returned order nets to 0.00 whatever the rounding.

Booking keeps, per month, what the statements already say. When something new is learnt, the
new sale or return is booked in the month of its business date at its ideal price. A return
changes nothing else. What else a sale or an amendment changes (an amendment with a past
effective date; a sale dated before sales already booked under tiered terms) is booked, per
month, as one adjustment line (ideal − booked) in the month the news was recorded, naming the
month it corrects. So, after every event, the booked total of every month equals its ideal
total, and every line once booked stays as it was.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from operator import attrgetter

from channel_domain.company_time import recorded_month
from channel_domain.contract import Contract
from channel_domain.values import CommissionTerms, month_of

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Slice:
    """Part of an amount earning one rate, and the commission it earns (its amount × rate,
    rounded, unless given: what a return takes when it empties a slice)."""

    amount: Decimal
    rate: Decimal
    commission: Decimal = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.commission is None:
            object.__setattr__(self, "commission", cents(self.amount * self.rate))


def marginal_slices(terms: CommissionTerms, cumulative: Decimal, amount: Decimal) -> list[Slice]:
    """The slices of `amount` sold when the month's sales already stand at `cumulative`.

    A cumulative below zero counts in the first tier.
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
    """Takes `amount` from the top of `held` (what a sale still holds, lowest slice first):
    returns (the slices taken, top first; the slices still held).

    A slice taken whole takes exactly the commission it still holds; a part of a slice takes
    its amount × rate, never more than the slice still holds."""
    taken, kept, left = [], list(held), amount
    while left and kept:
        top = kept.pop()
        if left >= top.amount:
            taken.append(top)
            left -= top.amount
            continue
        part = Slice(left, top.rate, min(cents(left * top.rate), top.commission))
        taken.append(part)
        kept.append(Slice(top.amount - left, top.rate, top.commission - part.commission))
        left = ZERO
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

    def __post_init__(self) -> None:
        self.month = month_of(self.day)  # asked for at every step of pricing: worked out once

    @property
    def commission(self) -> Decimal:
        earned = _earned(self.slices)
        return earned if self.kind == "sale" else -earned

    def lines(self) -> list[Line]:
        sign = 1 if self.kind == "sale" else -1
        return [
            Line(self.kind, self.month, self.order_id, self.day, sign * s.amount, s.rate, sign * s.commission)
            for s in self.slices
        ]


class ContractCommissions:
    """Pricing splits along the rules' own lines: a sale's slices depend only on the sales of
    its month before it (their amounts, not their prices); a return's clawback only on its
    sale's slices and the returns of that sale recorded before it. So a return re-prices
    nothing but itself; a sale re-prices its month from itself onwards and the returns of the
    sales it moved; only an amendment re-prices the whole contract."""

    def __init__(self, terms: CommissionTerms) -> None:
        self._initial = terms
        self._amendments: list[tuple[date, CommissionTerms]] = []
        self._tiered = terms.type == "tiered"
        self._top_bound = _top_bound(terms)  # above it, every terms known pay one rate
        self._months: dict[str, list[Entry]] = defaultdict(list)  # month -> its sales, in key order
        self._sales: dict[str, Entry] = {}
        self._returns: dict[str, list[Entry]] = defaultdict(list)  # order -> its returns, in recording order
        self._gross: dict[str, Decimal] = defaultdict(lambda: ZERO)  # month -> its sales
        self._below_zero: set[str] = set()  # months with a sale of an amount below zero
        self._ideal: dict[str, Decimal] = defaultdict(lambda: ZERO)  # month -> what it should earn
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
        """Loads what was learnt before (amendments in recording order), as stored with the lines."""
        for effective_on, terms in amendments:
            self._learn_terms(effective_on, terms)
        for entry in sorted(entries, key=lambda e: e.key if e.kind == "sale" else (date.min, e.position)):
            if entry.kind == "sale":
                self._months[entry.month].append(entry)
                self._gross[entry.month] += entry.amount
                if entry.amount < 0:
                    self._below_zero.add(entry.month)
                self._sales[entry.order_id] = entry
            else:
                self._returns[entry.order_id].append(entry)
        self._reprice_all()
        self.booked.update(booked)

    def ideal(self) -> dict[str, Decimal]:
        months = set(self._months) | {entry.month for returns in self._returns.values() for entry in returns}
        return {month: self._ideal[month] for month in months}

    def order_commission(self, order_id: str) -> Decimal:
        """What an order earns as now priced: its sale less what its returns claw back (0.00
        once it is fully returned)."""
        sale = self._sales[order_id]
        return sale.commission + sum((entry.commission for entry in self._returns.get(order_id, ())), ZERO)

    def _learn_terms(self, effective_on: date, terms: CommissionTerms) -> None:
        self._amendments.append((effective_on, terms))
        self._amendments.sort(key=lambda amendment: amendment[0])  # stable: recording order breaks ties
        self._tiered = self._tiered or terms.type == "tiered"
        self._top_bound = max(self._top_bound, _top_bound(terms))

    # What is learnt, and what it books -------------------------------------------------

    def sale(self, order_id: str, amount: Decimal, sold_on: date, position: int, recorded_in: str) -> list[Line]:
        entry = Entry("sale", order_id, sold_on, position, amount)
        self._sales[order_id] = entry
        month = self._months[entry.month]
        sold_before = self._gross[entry.month]
        self._gross[entry.month] += amount
        if amount < 0:
            self._below_zero.add(entry.month)
        index = _insert(month, entry)
        touched = {entry.month}
        if index == len(month) - 1 or not self._tiered:
            # Nothing after it in its month, or rates that do not depend on order: it moves nothing.
            self._price_sale(entry, sold_before)
        else:
            # A late sale under tiered terms moves the slices of the sales after it in its month.
            for moved in self._price_sales(month, index, shift=amount):
                touched |= self._price_returns(moved.order_id)
        self.booked[entry.month] += entry.commission
        return entry.lines() + self._adjustments(touched, recorded_in)

    def return_(self, order_id: str, amount: Decimal, returned_on: date, position: int,
                recorded_in: str) -> list[Line]:
        """Claws back from what the order still holds; books the return's own lines, nothing else."""
        entry = Entry("return", order_id, returned_on, position, amount)
        held = self._held(order_id)
        self._returns[order_id].append(entry)
        entry.slices, _ = claw_back(held, amount)
        self._ideal[entry.month] += entry.commission
        self.booked[entry.month] += entry.commission
        return entry.lines()

    def amendment(self, effective_on: date, terms: CommissionTerms, recorded_in: str) -> list[Line]:
        self._learn_terms(effective_on, terms)
        self._reprice_all()
        return self._adjustments(self.ideal(), recorded_in)

    # Pricing --------------------------------------------------------------------------

    def _held(self, order_id: str) -> list[Slice]:
        """What the order's sale still holds after its returns so far."""
        sale = self._sales.get(order_id)
        held = list(sale.slices) if sale is not None else []
        for earlier in self._returns.get(order_id, ()):
            _, held = claw_back(held, earlier.amount)
        return held

    def _price_sale(self, entry: Entry, sold_before: Decimal) -> bool:
        """Prices a sale made when the month's sales stood at `sold_before`; True if it moved."""
        slices = marginal_slices(self.terms_on(entry.day), sold_before, entry.amount)
        if slices == entry.slices:
            return False
        self._ideal[entry.month] += _earned(slices) - entry.commission
        entry.slices = slices
        return True

    def _price_sales(self, month: list[Entry], start: int, shift: Decimal | None = None) -> list[Entry]:
        """Prices the month's sales from `start` on; returns those whose slices moved.

        With `shift` (the amount of a sale just inserted at `start`), it stops at the first
        later sale that lay in the top tier before the shift: it and every sale after it stay there.
        """
        settled_from = None if shift is None else self._top_bound + shift
        sold = self._sold_before(month, start, settled_from)
        moved = []
        for index, entry in enumerate(islice(month, start, None), start):
            if index > start and settled_from is not None and sold >= settled_from:
                break
            if self._price_sale(entry, sold):
                moved.append(entry)
            sold += entry.amount
        return moved

    def _sold_before(self, month: list[Entry], start: int, settled_from: Decimal | None) -> Decimal:
        """The month's sales before index `start` — or, with `settled_from`, as many of them as
        reach it: a late sale early in a long month would otherwise sum most of the month, for
        each late sale (a tiered contract's ledger in P5's log: 27 % of its instructions).

        Reaching it is all `_price_sales` can tell apart: from there the sale at `start` lies
        wholly above every tier bound known (`settled_from` is the top bound plus the sale), so it
        is priced at the top rate whatever the exact sum, and the loop stops at the next sale.
        The sum only grows as it goes (a sale's amount is above zero), so a part that reaches it
        means the whole does; a month holding a sale below zero (none can be recorded) is summed
        whole."""
        if settled_from is None or not month or month[0].month in self._below_zero:
            return sum(map(_amount, month[:start]), ZERO)
        sold = ZERO
        for amount in map(_amount, islice(month, start)):
            sold += amount
            if sold >= settled_from:
                break
        return sold

    def _price_returns(self, order_id: str) -> set[str]:
        """Claws back each return of the order, in recording order, from what the sale still
        holds; returns the months whose figures moved."""
        held, months = list(self._sales[order_id].slices), set()
        for entry in self._returns.get(order_id, ()):
            clawed, held = claw_back(held, entry.amount)
            if clawed != entry.slices:
                self._ideal[entry.month] += -_earned(clawed) - entry.commission
                entry.slices = clawed
                months.add(entry.month)
        return months

    def _reprice_all(self) -> None:
        for month in self._months.values():
            self._price_sales(month, 0)
        for order_id in list(self._returns):
            if order_id in self._sales:
                self._price_returns(order_id)

    def _adjustments(self, months: Iterable[str], recorded_in: str) -> list[Line]:
        lines = []
        for month in sorted(months):
            difference = self._ideal[month] - self.booked[month]
            if difference:
                lines.append(Line("adjustment", recorded_in, None, None, ZERO, None, difference, month))
                self.booked[month] += difference
        return lines


_amount = attrgetter("amount")
_commission = attrgetter("commission")


def _earned(slices: list[Slice]) -> Decimal:
    return sum(map(_commission, slices), ZERO)


def _top_bound(terms: CommissionTerms) -> Decimal:
    return max((tier.up_to for tier in terms.tiers if tier.up_to is not None), default=ZERO)


def _insert(entries: list[Entry], entry: Entry) -> int:
    """Puts `entry` in its key order (usually at the end); returns where."""
    index = bisect_right(entries, entry.key, key=_key)
    entries.insert(index, entry)
    return index


def _key(entry: Entry) -> tuple[date, int]:
    return entry.day, entry.position


def book_contract_event(book: ContractCommissions, event: object, position: int) -> list[Line]:
    """What a contract's sale, return or approved amendment books, in the month it was recorded
    (company time); nothing for its other events. The one place both the statements and an
    amendment's preview feed a contract's ledger from, so a preview prices as the statements will."""
    recorded_in = recorded_month(event.timestamp)  # type: ignore[attr-defined]
    if isinstance(event, Contract.SaleRecorded):  # type: ignore[attr-defined]
        return book.sale(event.order_id, event.amount, event.sold_on, position, recorded_in)
    if isinstance(event, Contract.ReturnRecorded):  # type: ignore[attr-defined]
        return book.return_(event.order_id, event.amount, event.returned_on, position, recorded_in)
    if isinstance(event, Contract.Amended):
        return book.amendment(event.effective_on, CommissionTerms.parse(event.commission), recorded_in)
    return []
