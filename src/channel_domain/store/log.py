"""Tailing the event log in position order without ever skipping a late commit.

Positions come from a sequence, and sequences are not transactional: a writer can draw
position 7, another draws 8 and commits first, and for a moment 8 is visible while 7 is not.
A reader that moved its checkpoint past 8 would never see 7 (the trap behind Marten #4964).
A gap can also be permanent: its writer rolled back.

How a reader tells the two apart, without any writer taking a lock:

1. Every writer assigns itself a transaction id (`pg_current_xact_id()`) *before* it draws a
   position (`append_events` in migrations/0002).
2. If position q is visible in snapshot S, q's writer committed before S was taken. Any lower
   position p was drawn before q (the sequence has CACHE 1, so values are handed out in time
   order), hence p's writer already had its transaction id when S was taken.
3. Such a writer, if still running at S, is either listed among S's in-progress ids or has an
   id at or above S.xmax (xmax is "latest completed + 1", not "next to assign", so a
   transaction that got its id just before S can sit above it unlisted). The reader closes
   that range by drawing one transaction id R of its own *after* S: every id handed out
   before S is below R.
4. So once every id in S's in-progress list and in [S.xmax, R) has ended, every position up
   to the highest one visible in S is final: visible now, or never.

The reader emits a contiguous run of positions at once. At a gap it records that set of ids
— its *fence* — with the highest position visible in S, and releases everything up to that
position as soon as a later snapshot shows all of them finished. The wait is as long as the
slowest transaction that was running, typically milliseconds; nothing is skipped on a timer.
A transaction id is drawn only when a gap is met, not on every read.

The library's own readers (`Application.notification_log`, `NotificationLogReader`, a
`Follower`'s pulls, `NotificationLogJSONService`) call `select_notifications(start, limit)`
and take the last id returned as their checkpoint: they keep no fence between calls.
`read_settled` gives them this reader's guarantee in one call (see its docstring).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Notification
from psycopg.rows import tuple_row

from channel_domain.store.recorder import EVENTS_TABLE, EventRecorder


@dataclass(frozen=True)
class _Fence:
    highest_seen: int  # every position up to this one was drawn before the snapshot
    writers: frozenset[int]  # transaction ids that could hold a position up to it


@dataclass(frozen=True)
class Snapshot:
    xmin: int
    xmax: int
    in_progress: frozenset[int]

    def all_finished(self, ids: frozenset[int]) -> bool:
        return all(xid < self.xmin or (xid < self.xmax and xid not in self.in_progress) for xid in ids)


class EventLog:
    """A reader's cursor over the global log. One instance per reader (it holds a fence)."""

    def __init__(self, recorder: EventRecorder, after: int = 0) -> None:
        self.recorder = recorder
        self.position = after  # everything up to here has been returned
        self._fence: _Fence | None = None

    def read(self, limit: int = 1000) -> list[Notification]:
        """The next events in position order that can never be preceded by a late commit."""
        snapshot, rows = self._snapshot_and_rows(limit)
        released_up_to = self.position
        if self._fence is not None and snapshot.all_finished(self._fence.writers):
            released_up_to = self._fence.highest_seen
            self._fence = None

        batch: list[Notification] = []
        for row in rows:
            position = row[0]
            if position != self.position + 1 and position > released_up_to:
                # A gap that may still fill: wait until its possible writers have ended.
                fence = self._fence or self._new_fence(snapshot, rows[-1][0])
                if fence.writers:
                    self._fence = fence
                    break
                released_up_to = fence.highest_seen  # nothing was running: the gap is final
            batch.append(Notification(id=position, originator_id=row[1], originator_version=row[2], topic=row[3],
                                      state=bytes(row[4])))
            self.position = position
        return batch

    @property
    def held_at_gap(self) -> bool:
        """True when the last read stopped at a gap that a running transaction may still fill."""
        return self._fence is not None

    def follow(self, limit: int = 1000) -> Iterator[list[Notification]]:
        """Batches until the reader has caught up with what is safely readable now."""
        while batch := self.read(limit):
            yield batch

    def _snapshot_and_rows(self, limit: int) -> tuple[Snapshot, list[tuple]]:
        with self.recorder.datastore.get_connection() as conn:
            with conn.transaction(), conn.cursor() as curs:
                # One REPEATABLE READ snapshot for both the snapshot facts and the rows.
                curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                curs.execute(SNAPSHOT_FACTS, prepare=True)
                facts = curs.fetchone()
                assert facts is not None
                # As tuples (position, originator_id, originator_version, topic, state): every
                # reader of the log reads every event; a dict for each cost it 1 µs of 10.
                curs.row_factory = tuple_row
                curs.execute(_ROWS_AFTER, (self.position, limit), prepare=True)
                rows = curs.fetchall()
        return Snapshot(facts["xmin"], facts["xmax"], frozenset(facts["xip"])), rows

    def _new_fence(self, snapshot: Snapshot, highest_seen: int) -> _Fence:
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            # Drawn after the snapshot, so above every id that existed when it was taken.
            curs.execute("SELECT pg_current_xact_id()::text::bigint AS xid")
            row = curs.fetchone()
            assert row is not None
        unlisted = range(snapshot.xmax, row["xid"])
        return _Fence(highest_seen, snapshot.in_progress | frozenset(unlisted))


def read_settled(
    recorder: EventRecorder,
    *,
    after: int,
    limit: int,
    stop: int | None = None,
    topics: Sequence[str] = (),
    wait_s: float = 5.0,
) -> list[Notification]:
    """Up to `limit` events after `after` (up to `stop`, of `topics` if any), in position
    order, none of which a late commit can ever precede: a caller that resumes after the last
    one returned misses nothing.

    A stateless caller cannot hold a fence from one call to the next, so this call holds one
    itself: when the very next position is a gap, it waits until every transaction that could
    fill it has ended (as long as the slowest transaction running at the time, usually
    milliseconds; transaction ids are server-wide, so other databases' transactions count
    too), then goes on. It returns at once with what it has whenever it has found something,
    so only a reader already at the head waits. After `wait_s` with the gap still open it
    returns nothing — "nothing yet" — and never passes the gap: the caller asks again.
    """
    log = EventLog(recorder, after=after)
    found: list[Notification] = []
    deadline = time.monotonic() + wait_s
    pause = 0.001
    # Filtering by topic happens after the fence, which must see every position; read wider.
    batch_size = max(limit, 500) if topics else limit
    while len(found) < limit:
        if stop is not None and log.position >= stop:
            break
        asked = batch_size if stop is None else min(batch_size, stop - log.position)
        batch = log.read(asked)
        for notification in batch:
            if stop is not None and notification.id > stop:
                return found
            if not topics or notification.topic in topics:
                found.append(notification)
                if len(found) == limit:
                    return found
        if not log.held_at_gap:
            if len(batch) == asked:
                continue
            break  # caught up with everything committed
        if found or time.monotonic() >= deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return found


class WritersStillOpen(Exception):
    """Transactions that could still fill a position were open when the wait ran out."""


def wait_for_writers(conn: Any, snapshot: Snapshot, wait_s: float, ignore: frozenset[int] = frozenset()) -> None:
    """Return once every transaction of this database that was running when `snapshot` was
    taken has ended — then every position up to the highest one visible in that snapshot is
    final: visible now, or never. Raises `WritersStillOpen` after `wait_s`. `ignore`: the
    waiter's own transaction, when it is one of them (it ends after this returns).

    The writers are the snapshot's in-progress ids and those in [xmax, an id drawn now) (the
    module's docstring says why), less those seen to belong to another database: transaction
    ids are server-wide, and an idle session elsewhere on the server (a DBA's psql) would
    otherwise hold every wait up. A transaction that cannot be placed (a view hides it) is
    waited for."""
    with conn.transaction(), conn.cursor() as curs:
        curs.execute("SELECT pg_current_xact_id()::text::bigint AS xid")
        drawn = curs.fetchone()["xid"]
    with conn.transaction(), conn.cursor() as curs:
        curs.execute(_ELSEWHERE)
        # 32-bit ids here: no two transactions open at once share their low 32 bits.
        elsewhere = {row["xid"] for row in curs.fetchall()}
    writers = frozenset(xid for xid in snapshot.in_progress | frozenset(range(snapshot.xmax, drawn))
                        if xid & 0xFFFFFFFF not in elsewhere and xid not in ignore)
    deadline = time.monotonic() + wait_s
    while writers:
        with conn.transaction(), conn.cursor() as curs:
            curs.execute(SNAPSHOT_FACTS)
            row = curs.fetchone()
            now = Snapshot(row["xmin"], row["xmax"], frozenset(row["xip"]))
        if now.all_finished(writers):
            return
        if time.monotonic() > deadline:
            open_ = sorted(xid for xid in writers if not now.all_finished(frozenset([xid])))
            shown = ", ".join(str(xid) for xid in open_[:5]) + (", …" if len(open_) > 5 else "")
            raise WritersStillOpen(
                f"{len(open_)} transaction(s) of this database open at the start could still write one "
                f"(pg_stat_activity.backend_xid {shown}); still open after {wait_s:g} s")
        time.sleep(0.01)


def settled_head(recorder: EventRecorder, wait_s: float = 5.0) -> int:
    """The log's head as a starting point for "new events only": the highest position
    visible now, once every position below it is final. A reader that starts after it misses
    no event that commits later at a lower position (a writer that drew its position before
    and commits after). Raises `WritersStillOpen` after `wait_s`."""
    with recorder.datastore.get_connection() as conn:
        with conn.transaction(), conn.cursor() as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            curs.execute(SNAPSHOT_FACTS)
            facts = curs.fetchone()
            curs.execute(f"SELECT coalesce(max(position), 0) AS head FROM {EVENTS_TABLE}")  # noqa: S608
            head = curs.fetchone()["head"]
        wait_for_writers(conn, Snapshot(facts["xmin"], facts["xmax"], frozenset(facts["xip"])), wait_s)
    return head


# Transactions known to be another database's: a session's database never changes, nor does
# a prepared transaction's. Sessions with no database (walsenders, launchers) are not counted.
_ELSEWHERE = """
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datid IS NOT NULL
      AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT transaction::text::bigint FROM pg_prepared_xacts WHERE database <> current_database()
"""

SNAPSHOT_FACTS = """
    SELECT pg_snapshot_xmin(s)::text::bigint AS xmin,
           pg_snapshot_xmax(s)::text::bigint AS xmax,
           ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x) AS xip
    FROM pg_current_snapshot() AS s
"""

_ROWS_AFTER = f"""
    SELECT position, originator_id, originator_version, topic, state
    FROM {EVENTS_TABLE} WHERE position > %s ORDER BY position LIMIT %s
"""  # noqa: S608
