"""Records kept in memory between commands, so a command need not replay them from the store.

A command *takes* its record out of the cache — no other command can touch that object while
it runs — and the record goes back only once its events have committed. A command that fails
puts nothing back, so a half-applied change never survives in memory.

The cache may be stale when another process wrote the record: that is safe for writes, because
an event appended at a version someone else already wrote is refused by the primary key and
the command runs again on the record loaded afresh. A refusal, though, could be the stale
state's doing, so the application re-checks a refusal on a fresh load before answering.

With several processes serving one record (uvicorn's workers take requests in turn), most
commands would lose on the version that way. A record a command lost on is marked contended
for a while: its cached copy is caught up with the events after its version (one indexed read)
before each command, and the loss is not repeated.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from channel_domain.store.recorder import exception_copy, means_database_busy


# How long a record stays marked as written by another process after a command lost to one.
CONTENDED_FOR_S = 300.0


class RecordCache:
    def __init__(self, capacity: int, stripes: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._records: OrderedDict[UUID, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._turns = [threading.Lock() for _ in range(stripes)]
        # Per turn: when its last command got no connection, and the error (see `turn`).
        self._no_connection: list[tuple[float, Exception] | None] = [None] * stripes
        self._clock = clock
        # Records another process has been seen writing (a command lost on the version), until
        # when: their cached copy is caught up before each command while this lasts.
        self._contended: OrderedDict[UUID, float] = OrderedDict()

    @contextmanager
    def turn(self, record_id: UUID) -> Iterator[None]:
        """Hold while commanding the record: commands of this process on one record take turns
        instead of racing, so the second finds the first's record in the cache rather than
        losing on the version, backing off and replaying the record from the store — which,
        on a hot record under load, fed on itself until the server fell over. (Striped: two
        records may share a turn; a command holds only one.)

        A command that got no database connection within the pool's wait (an outage, or every
        connection busy) fails the commands that waited behind it in the turn with the same
        error: each would otherwise wait the pool's wait again, and the last of N queued through
        an outage N times over. A command that succeeds in the turn ends that."""
        stripe = hash(record_id) % len(self._turns)
        arrived = self._clock()
        with self._turns[stripe]:
            failed = self._no_connection[stripe]
            if failed is not None and failed[0] > arrived:
                raise _not_tried(failed[1])
            try:
                yield
            except Exception as error:
                if means_database_busy(error) and (kept := _without_frames(error)) is not None:
                    self._no_connection[stripe] = (self._clock(), kept)
                raise
            self._no_connection[stripe] = None

    def take(self, record_id: UUID) -> Any | None:
        with self._lock:
            return self._records.pop(record_id, None)

    def peek(self, record_id: UUID) -> Any | None:
        """The record held, left in place: for reading only, never to command."""
        with self._lock:
            return self._records.get(record_id)

    def put_back(self, *records: Any) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            for record in records:
                held = self._records.get(record.id)
                if held is not None and held.version > record.version:
                    continue  # a later commit already put back a newer state
                self._records[record.id] = record
                self._records.move_to_end(record.id)
            while len(self._records) > self.capacity:
                self._records.popitem(last=False)

    def mark_contended(self, record_id: UUID) -> None:
        with self._lock:
            self._contended[record_id] = time.monotonic() + CONTENDED_FOR_S
            self._contended.move_to_end(record_id)
            while len(self._contended) > max(self.capacity, 1):
                self._contended.popitem(last=False)

    def is_contended(self, record_id: UUID) -> bool:
        """Whether another process wrote the record lately (then the cached copy is likely
        behind: catching it up costs one read, losing on the version a replay)."""
        with self._lock:
            until = self._contended.get(record_id)
            if until is None:
                return False
            if until < time.monotonic():
                del self._contended[record_id]
                return False
            return True

    def forget(self, record_id: UUID) -> None:
        with self._lock:
            self._records.pop(record_id, None)

    def __len__(self) -> int:
        return len(self._records)


def _without_frames(error: Exception) -> Exception | None:
    """The error and its cause, to keep after the request has gone, without its frames (a
    traceback holds every local of the request's stack: its record, an import's lines); None
    for an error that cannot be copied."""
    cause = error.__cause__
    kept, kept_cause = exception_copy(error), None if cause is None else exception_copy(cause)
    if kept is error or (cause is not None and kept_cause is cause):
        return None  # not copied: keeping it would keep the frames
    if kept_cause is not None:
        kept_cause.__context__ = None
    kept.__cause__, kept.__context__, kept.__suppress_context__ = kept_cause, None, True
    return kept


def _not_tried(failure: Exception) -> Exception:
    """A queued command's own copy of the failure before it, saying that it was not tried."""
    own = exception_copy(failure)
    if own is not failure:
        own.args = (f"not tried: the command before it in its record's turn got no connection ({failure})",)
    return own

