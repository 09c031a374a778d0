"""The commission books on the command side: which months are closed, and the steps a close
and a payout preparation take in the transaction of their events (`InTransaction`).

A month closes only when the commissions ledger (the read model statements are read from)
shows every partner owed money that month with a payout prepared. That reading must not miss
anything recorded before the close:

1. The close takes the advisory lock `channel_domain.commission_books` exclusively, before it
   writes anything (so no reader of the log waits for its transaction meanwhile), and checks
   the registry still says what the close was decided on (else the command runs again).
2. It fixes the log's settled head H — every position up to it final — and waits, up to a few
   seconds, until the `commissions` read model has applied H; then reads the ledger through H
   and applies the rules (`payouts_not_prepared`, `earlier_period_open`).
3. It appends its event at position P > H, waits until every position below P is final, and
   looks at what landed between H and P: a sale, return or deal dated in a month up to the one
   closing, or anything that re-prices (a sale, a return, an amendment, a resolved dispute)
   recorded in such a month, would have changed what was read — the command then runs again
   on a fresh reading. Anything later than P the read model books after the close, in the
   month it is recorded (open, or the first open one after it).
4. Its registry row commits with its event.

A payout or housing subsidy prepared for a month takes the same lock shared before writing,
and is refused `period_closed` when the registry shows the month closed: it commits either
before the close takes the lock (and the close's reading sees it) or after the close commits
(and is refused).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.utils import get_topic

from channel_domain.commission_dispute import CommissionDispute
from channel_domain.commission_period import CommissionPeriod, LedgerFacts, month
from channel_domain.contract import Contract
from channel_domain.errors import ConcurrentModification, LedgerLagging, refusal
from channel_domain.partner import Partner
from channel_domain.store.log import SNAPSHOT_FACTS, Snapshot, WritersStillOpen, settled_head, wait_for_writers
from channel_domain.store.recorder import EventRecorder

BOOKS_LOCK = "channel_domain.commission_books"
LEDGER = "commissions"  # the read model a close reads
WAIT_VARIABLE = "CHANNEL_DOMAIN_PERIOD_CLOSE_WAIT_S"
DEFAULT_WAIT_S = 10.0

# What lands lines by its business date (`effective_on`), and what re-prices in the month it
# is recorded in: events between the reading and the close that could change a month closing.
_DATED = [get_topic(cls) for cls in (Contract.SaleRecorded, Contract.ReturnRecorded,  # type: ignore[attr-defined]
                                     Partner.DealClosed)]  # type: ignore[attr-defined]
_RECORDED = _DATED + [get_topic(cls) for cls in (Contract.Amended,  # type: ignore[attr-defined]
                                                 CommissionDispute.Resolved)]  # type: ignore[attr-defined]


def wait_s() -> float:
    return float(os.environ.get(WAIT_VARIABLE, DEFAULT_WAIT_S))


def lock(cursor: Any, *, exclusive: bool) -> None:
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    cursor.execute(f"SELECT {function}(hashtextextended(%s, 0))", (BOOKS_LOCK,))


def closed_through(cursor: Any) -> str | None:
    """The latest month closed: every month up to it is closed."""
    cursor.execute("SELECT max(period) AS period FROM commission_closed_periods")
    row = cursor.fetchone()
    return None if row is None else row["period"]


@dataclass(frozen=True)
class Close:
    period: str
    closes_after: str | None
    position: int
    closed_at: datetime
    closed_by: str


def covering_close(recorder: EventRecorder, period: str, as_of: datetime | None = None) -> Close | None:
    """The close that closed `period` (by `as_of`, if given): its own, or the first later one
    (a close closes the months before it that had nothing to close); None while it is open."""
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT period, closes_after, position, closed_at, closed_by FROM commission_closed_periods"
            " WHERE period >= %(period)s AND (%(as_of)s::timestamptz IS NULL OR closed_at <= %(as_of)s)"
            " ORDER BY period LIMIT 1",
            {"period": period, "as_of": as_of},
        )
        row = curs.fetchone()
        return None if row is None else Close(**row)


def latest_closed(recorder: EventRecorder) -> str | None:
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        return closed_through(curs)


# A close's reading of the ledger: (cursor, month, closed through) → facts.
LedgerReading = Callable[[Any, str, str | None], LedgerFacts]


@dataclass
class ClosingPeriod:
    """The close's steps in the transaction of its event (module docstring)."""

    recorder: EventRecorder
    record: CommissionPeriod
    ledger: LedgerReading
    wait_s: float = field(default_factory=wait_s)
    head: int = 0

    def before(self, cursor: Any) -> None:
        lock(cursor, exclusive=True)
        if closed_through(cursor) != self.record.closes_after:
            raise ConcurrentModification("another month closed meanwhile")
        self.head = self._ledger_at_head(cursor)
        self.record.require_closable(self.ledger(cursor, self.record.period, self.record.closes_after))

    def after(self, cursor: Any, positions: list[int]) -> None:
        position = positions[-1]
        self._settle_below(cursor)
        last_day = month(self.record.period).ends_on
        cursor.execute(
            "SELECT position FROM events WHERE position > %(head)s AND position < %(position)s AND ("
            " (topic = ANY(%(dated)s) AND effective_on <= %(last_day)s)"
            " OR (topic = ANY(%(recorded)s) AND company_date(recorded_at) <= %(last_day)s)) LIMIT 1",
            {"head": self.head, "position": position, "dated": _DATED, "recorded": _RECORDED, "last_day": last_day},
        )
        if cursor.fetchone() is not None:
            raise ConcurrentModification(f"the ledger of {self.record.period} moved while the close read it")
        cursor.execute(
            "INSERT INTO commission_closed_periods (period, closes_after, position, closed_at, closed_by)"
            " VALUES (%s, %s, %s, %s, %s)",
            (self.record.period, self.record.closes_after, position, self.record.created_on, self.record.closed_by),
        )

    def _ledger_at_head(self, cursor: Any) -> int:
        """The settled head, once the ledger has applied it."""
        try:
            head = settled_head(self.recorder, self.wait_s)
        except WritersStillOpen as still_open:
            raise LedgerLagging(f"the log's head did not settle: {still_open}") from None
        deadline = time.monotonic() + self.wait_s
        while True:
            cursor.execute("SELECT position FROM projection_checkpoints WHERE name = %s", (LEDGER,))
            row = cursor.fetchone()
            applied = 0 if row is None else row["position"]
            if applied >= head:
                return head
            if time.monotonic() >= deadline:
                raise LedgerLagging(
                    f"the commissions ledger has applied position {applied}, not yet {head}: retry shortly",
                    applied=applied, head=head)
            time.sleep(0.02)

    def _settle_below(self, cursor: Any) -> None:
        """Wait until every position below this transaction's own is final."""
        cursor.execute("SELECT pg_current_xact_id()::text::bigint AS xid")
        own = cursor.fetchone()["xid"]
        with self.recorder.datastore.get_connection() as conn:
            with conn.transaction(), conn.cursor() as curs:
                curs.execute(SNAPSHOT_FACTS)
                facts = curs.fetchone()
            try:
                wait_for_writers(conn, Snapshot(facts["xmin"], facts["xmax"], frozenset(facts["xip"])), self.wait_s,
                                 ignore=frozenset({own}))
            except WritersStillOpen as still_open:
                raise LedgerLagging(f"positions below the close did not settle: {still_open}") from None


@dataclass(frozen=True)
class MonthOpen:
    """A payout or housing subsidy prepared for a month: refused once the month is closed."""

    period: str
    what: str

    def before(self, cursor: Any) -> None:
        lock(cursor, exclusive=False)
        through = closed_through(cursor)
        if through is not None and self.period <= through:
            raise refusal("period_closed",
                          f"{self.period} is closed (the books are closed through {through}): no new {self.what} "
                          "is prepared for it", period=self.period, closed_through=through)

    def after(self, cursor: Any, positions: list[int]) -> None:
        pass

