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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from channel_domain.store.recorder import exception_copy, means_database_busy


# How long a record stays marked as written by another process after a command lost to one.
CONTENDED_FOR_S = 300.0


class RecordCache:
    def __init__(self, capacity: int, stripes: int = 256) -> None:
        self.capacity = capacity
        self._records: OrderedDict[UUID, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._turns = [threading.Lock() for _ in range(stripes)]
        # Per turn: when its last command got no connection, and the error (see `turn`).
        self._no_connection: list[tuple[float, Exception] | None] = [None] * stripes
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

        A command that got no database connection within the pool's wait fails the commands
        that waited behind it with the same error: each would otherwise wait the pool's wait
        again in its turn, and the last of N queued through an outage N times over."""
        stripe = hash(record_id) % len(self._turns)
        arrived = time.monotonic()
        with self._turns[stripe]:
            failed = self._no_connection[stripe]
            if failed is not None and failed[0] > arrived:
                raise exception_copy(failed[1])
            try:
                yield
            except Exception as error:
                if means_database_busy(error):
                    self._no_connection[stripe] = (time.monotonic(), error)
                raise

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
