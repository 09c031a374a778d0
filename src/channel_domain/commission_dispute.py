"""CommissionDispute: a partner's statement line questioned, and finance's answer.

Raised against one line of a partner's statement of a month (named by the line's position in
the log, as the statement shows it) by a channel specialist, a channel manager or finance,
with a reason. Resolved by finance — never by whoever raised it, named as an actor or
through their employee record (domain.md §5) — as `upheld` or `rejected`, with a note. An
upheld dispute carries a signed, non-zero `amount` (negative reduces what is due): the
commissions ledger books it as one adjustment line in the month the resolution is recorded
in (or the first open one after it), naming the dispute and correcting the
disputed month. A rejected dispute books nothing, so it carries no amount. A dispute is
resolved once.

So an auditor follows line → dispute (`line_position`, `line_event_id`) → resolution (this
record's history) → adjustment line (`dispute_id` on the line, at the resolution's position).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.commission_period import month
from channel_domain.context import current_command
from channel_domain.errors import SegregationOfDuties, ValidationFailed
from channel_domain.values import money, require_text

OUTCOMES = ("upheld", "rejected")


@dataclass(frozen=True)
class DisputedLine:
    """A statement line as the ledger holds it: the event it came from (its lines at that
    position on the statement, all of them or the one numbered `line_no`), their kind and
    commission, and the contract (none for a broker's deal)."""

    position: int
    line_no: int | None
    event_id: UUID
    kind: str
    commission: Decimal
    contract_id: UUID | None


def signed_money(value: Any, field: str = "amount") -> Decimal:
    """A signed CNY amount, not zero: what an upheld dispute adds to (or, negative, takes from)
    what is due."""
    amount = money(value, field, allow_zero=True, signed=True)
    if amount == 0:
        raise ValidationFailed(field, "an upheld dispute corrects by a non-zero amount")
    return amount


class CommissionDispute(ChannelAggregate):
    record_name = "commission dispute"

    @classmethod
    def raise_(cls, *, partner_id: UUID, period: Any, line: DisputedLine, reason: Any,
               raised_by_employee: UUID | None = None) -> CommissionDispute:
        return cls(
            partner_id=partner_id,
            period=month(period).text,
            line_position=line.position,
            line_no=line.line_no,
            line_event_id=line.event_id,
            line_kind=line.kind,
            line_commission=line.commission,
            contract_id=line.contract_id,
            reason=require_text(reason, "reason"),
            raised_by=current_command().actor,
            raised_by_employee=raised_by_employee,
        )

    def resolve(self, outcome: Any, note: Any, amount: Any = None, resolver_employee: UUID | None = None) -> None:
        """`resolver_employee`: the acting person's employee record, if any."""
        # Who may resolve is settled first (403), whatever the dispute's state (422).
        self._require_role("finance", "resolving a commission dispute")
        resolver = self._require_other_actor("resolve", raised=self.raised_by)
        if resolver_employee is not None and resolver_employee == self.raised_by_employee:
            raise SegregationOfDuties(f"{resolver} raised this dispute and cannot also resolve it",
                                      actor=resolver, step="raised")
        self._require_status("resolve", "open")
        if outcome not in OUTCOMES:
            raise ValidationFailed("outcome", "upheld or rejected")
        text = require_text(note, "note")
        if outcome == "upheld":
            if amount is None:
                raise ValidationFailed("amount", "an upheld dispute names the amount to book (signed)")
            corrected: Decimal | None = signed_money(amount)
        else:
            if amount is not None:
                raise ValidationFailed("amount", "a rejected dispute books nothing: leave amount out")
            corrected = None
        self._resolved(outcome=outcome, note=text, amount=corrected, resolved_by=resolver,
                       resolved_by_employee=resolver_employee)

    @event("Raised")
    def __init__(self, partner_id: UUID, period: str, line_position: int, line_no: int | None, line_event_id: UUID,
                 line_kind: str, line_commission: Decimal, contract_id: UUID | None, reason: str, raised_by: str,
                 raised_by_employee: UUID | None) -> None:
        self.partner_id = partner_id
        self.period = period
        self.line_position = line_position
        self.line_no = line_no
        self.line_event_id = line_event_id
        self.line_kind = line_kind
        self.line_commission = line_commission
        self.contract_id = contract_id
        self.reason = reason
        self.raised_by = raised_by
        self.raised_by_employee = raised_by_employee
        self.status = "open"
        self.outcome: str | None = None
        self.note: str | None = None
        self.amount: Decimal | None = None
        self.resolved_by: str | None = None

    @event("Resolved")
    def _resolved(self, outcome: str, note: str, amount: Decimal | None, resolved_by: str,
                  resolved_by_employee: UUID | None) -> None:
        self.status = outcome
        self.outcome = outcome
        self.note = note
        self.amount = amount
        self.resolved_by = resolved_by
