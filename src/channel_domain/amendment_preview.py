"""What approving an amendment would book, priced by the code the statements are priced by.

The contract's own stored events are replayed, in recording order, into a fresh
`ContractCommissions` — as the commissions projection feeds it — and the pending amendment
is then applied as if recorded now: the adjustment lines it returns are the preview. Per
corrected month, `booked` is what the ledger holds for that month now, `would_book` what it
would hold after, `adjustment` the difference.

The approver approves the figures they saw, named by a digest: a SHA-256 of the canonical
text of the preview (`canonical_text`), so any change of any figure changes the digest.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from channel_domain.commission import ContractCommissions, Line, book_contract_event
from channel_domain.company_time import recorded_month
from channel_domain.contract import Contract
from channel_domain.values import CommissionTerms

CANONICAL_HEADER = "channel-domain/amendment-preview/v1"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class PreviewLine:
    corrects_period: str
    booked: Decimal
    would_book: Decimal

    @property
    def adjustment(self) -> Decimal:
        return self.would_book - self.booked


@dataclass(frozen=True)
class AmendmentPreview:
    amendment_id: UUID
    books_in: str  # the month whose statement the adjustment lines land on, if approved now
    lines: tuple[PreviewLine, ...]
    contract_version: int | None = None  # what it was priced at: shown, not digested

    @property
    def total(self) -> Decimal:
        return sum((line.adjustment for line in self.lines), Decimal("0.00"))

    def canonical_text(self) -> str:
        """UTF-8 text, each line ending in a newline: the header, the amendment id,
        `books_in YYYY-MM` (the statement month the lines land on: an approval that crosses
        into the next month books elsewhere than the approver saw, so it is a new preview), one
        line per corrected month in month order — `period booked would_book adjustment`, single
        spaces, amounts with two decimals and a leading `-` when negative — then `total T`."""
        rows = [CANONICAL_HEADER, str(self.amendment_id), f"books_in {self.books_in}"]
        rows += [
            f"{line.corrects_period} {_figure(line.booked)} {_figure(line.would_book)} {_figure(line.adjustment)}"
            for line in self.lines
        ]
        rows.append(f"total {_figure(self.total)}")
        return "".join(f"{row}\n" for row in rows)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical_text().encode()).hexdigest()


def price_amendment(
    history: Iterable[tuple[int, object]],
    amendment_id: UUID,
    effective_on: date,
    terms: CommissionTerms,
    now: datetime,
) -> AmendmentPreview:
    """`history`: the contract's stored events with their global positions, in recording order."""
    book: ContractCommissions | None = None
    ledger: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    for position, event in history:
        if isinstance(event, Contract.Drafted):  # type: ignore[attr-defined]
            book = ContractCommissions(CommissionTerms.parse(event.commission))
            continue
        if book is None:
            break
        for line in book_contract_event(book, event, position):
            ledger[_corrected(line)] += line.commission
    if book is None:
        raise ValueError("a contract's history starts with its draft")
    books_in = recorded_month(now)
    adjustments = book.amendment(effective_on, terms, books_in)
    would_book = dict(ledger)
    for line in adjustments:
        would_book[_corrected(line)] = would_book.get(_corrected(line), Decimal("0.00")) + line.commission
    lines = tuple(
        PreviewLine(month, ledger[month], would_book[month])
        for month in sorted({_corrected(line) for line in adjustments})
    )
    return AmendmentPreview(amendment_id, books_in, lines)


def _corrected(line: Line) -> str:
    """The month a line counts in: an adjustment's corrected month, else its own."""
    return line.corrects_period or line.period


def _figure(amount: Decimal) -> str:
    return f"{(amount if amount else Decimal(0)).quantize(CENT):f}"  # never "-0.00"
