"""CommissionPeriod: finance closes a commission month (domain.md §6, "Period close").

A closed month takes no new lines: whatever is recorded later that would change it (a late
sale, a return, a deal, a re-pricing adjustment) is booked as an adjustment in the first open
month, naming the month it corrects. For that to keep a closed statement fixed — its
`carried_in` is the balance of the months before it — the closed months are always every
month up to the latest one closed (the *books are closed through* it):

- months close in order: a month is refused while an earlier month that has a statement is
  still open (`earlier_period_open`); earlier months without any statement are closed with
  it (`closes_after` names the month closed before it; none for the first close, which closes
  everything before it too);
- a month closes once it has ended on the company calendar (`period_not_ended`: from its
  first day after), and once (`period_closed`, also for a month an earlier close covered);
- and only when every partner whose statement of the month has `total_due` > 0 has a payout
  prepared for it (`payouts_not_prepared`: the seeds' control, 「由财务部核准后」).

One record per month, its id derived from the month, so a month is closed once whichever
process takes the command. What the ledger says (open months, unprepared payouts) is read by
the application, caught up to the log, and handed to `require_closable`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.context import current_command
from channel_domain.errors import ValidationFailed, refusal
from channel_domain.values import Period

_NAMESPACE = uuid.UUID("3d2b9a70-5f4e-4c1a-8e6b-0c9d7f21a4e5")
PARTNERS_NAMED = 20  # a refusal names this many partners, then says how many more


def period_id(period: str) -> UUID:
    """The record of a month: the same month always gives the same id."""
    return uuid.uuid5(_NAMESPACE, f"commission-period:{period}")


def month(period: Any, field_name: str = "period") -> Period:
    parsed = Period.parse(period, field_name)
    if parsed.kind != "month":
        raise ValidationFailed(field_name, "a commission period is a month, YYYY-MM")
    return parsed


def next_month(period: str) -> str:
    ends_on = month(period).ends_on
    return (ends_on + timedelta(days=1)).strftime("%Y-%m")


@dataclass(frozen=True)
class LedgerFacts:
    """What the commissions ledger says about a month about to close, read with everything
    recorded before the close applied: the earlier months still open that have a statement,
    and the partners owed money that month (`total_due` > 0) with no payout prepared."""

    open_before: Sequence[str] = ()
    unprepared: Sequence[UUID] = field(default_factory=tuple)


class CommissionPeriod(ChannelAggregate):
    record_name = "commission period"

    @classmethod
    def close(cls, period: Any, closed_through: str | None) -> CommissionPeriod:
        """`closed_through`: the latest month closed so far (every month up to it is closed)."""
        closing = month(period)
        if closed_through is not None and closing.text <= closed_through:
            raise refusal("period_closed", f"{closing.text} is closed: the books are closed through {closed_through}",
                          period=closing.text, closed_through=closed_through)
        today = current_command().today
        if closing.ends_on >= today:
            first_day = closing.ends_on + timedelta(days=1)
            raise refusal("period_not_ended",
                          f"{closing.text} has not ended on the company calendar; it can be closed from {first_day}",
                          closable_from=first_day)
        return cls(period=closing.text, closes_after=closed_through, closed_by=current_command().actor)

    @staticmethod
    def create_id(period: str, **_: Any) -> UUID:
        return period_id(period)

    def require_closable(self, facts: LedgerFacts) -> None:
        """The ledger's part of the rules, on the facts read for this close."""
        if facts.open_before:
            months = sorted(facts.open_before)
            raise refusal(
                "earlier_period_open",
                f"close {months[0]} first: months close in order, and "
                f"{', '.join(months[:12])}{' …' if len(months) > 12 else ''} still open with statements",
                open_periods=months[:12],
            )
        if facts.unprepared:
            partners = sorted(str(partner) for partner in facts.unprepared)
            named, more = partners[:PARTNERS_NAMED], len(partners) - PARTNERS_NAMED
            raise refusal(
                "payouts_not_prepared",
                f"{self.period} cannot close: {len(partners)} partner(s) are owed a total due with no payout "
                f"prepared: {', '.join(named)}{f' and {more} more' if more > 0 else ''}",
                partners=named,
                partners_total=len(partners),
            )

    @event("Closed")
    def __init__(self, period: str, closes_after: str | None, closed_by: str) -> None:
        self.period = period
        self.closes_after = closes_after  # the month closed before this one; None: the first close
        self.closed_by = closed_by
        self.status = "closed"
