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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from eventsourcing.persistence import Notification
from psycopg.rows import DictRow

from channel_domain.store.recorder import EVENTS_TABLE, EventRecorder, _notification


@dataclass(frozen=True)
class _Fence:
    highest_seen: int  # every position up to this one was drawn before the snapshot
    writers: frozenset[int]  # transaction ids that could hold a position up to it


@dataclass(frozen=True)
class _Snapshot:
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
            position = row["position"]
            if position != self.position + 1 and position > released_up_to:
                # A gap that may still fill: wait until its possible writers have ended.
                fence = self._fence or self._new_fence(snapshot, rows[-1]["position"])
                if fence.writers:
                    self._fence = fence
                    break
                released_up_to = fence.highest_seen  # nothing was running: the gap is final
            batch.append(_notification(row))
            self.position = position
        return batch

    def follow(self, limit: int = 1000) -> Iterator[list[Notification]]:
        """Batches until the reader has caught up with what is safely readable now."""
        while batch := self.read(limit):
            yield batch

    def _snapshot_and_rows(self, limit: int) -> tuple[_Snapshot, list[DictRow]]:
        with self.recorder.datastore.get_connection() as conn:
            with conn.transaction(), conn.cursor() as curs:
                # One REPEATABLE READ snapshot for both the snapshot facts and the rows.
                curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                curs.execute(_SNAPSHOT_FACTS, prepare=True)
                facts = curs.fetchone()
                assert facts is not None
                curs.execute(_ROWS_AFTER, (self.position, limit), prepare=True)
                rows = curs.fetchall()
        return _Snapshot(facts["xmin"], facts["xmax"], frozenset(facts["xip"])), rows

    def _new_fence(self, snapshot: _Snapshot, highest_seen: int) -> _Fence:
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            # Drawn after the snapshot, so above every id that existed when it was taken.
            curs.execute("SELECT pg_current_xact_id()::text::bigint AS xid")
            row = curs.fetchone()
            assert row is not None
        unlisted = range(snapshot.xmax, row["xid"])
        return _Fence(highest_seen, snapshot.in_progress | frozenset(unlisted))


_SNAPSHOT_FACTS = """
    SELECT pg_snapshot_xmin(s)::text::bigint AS xmin,
           pg_snapshot_xmax(s)::text::bigint AS xmax,
           ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x) AS xip
    FROM pg_current_snapshot() AS s
"""

_ROWS_AFTER = f"""
    SELECT position, originator_id, originator_version, topic, state
    FROM {EVENTS_TABLE} WHERE position > %s ORDER BY position LIMIT %s
"""  # noqa: S608
