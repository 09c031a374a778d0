"""Running projections exactly once: each batch of read-model writes commits in one
transaction with the projection's checkpoint.

A projection is any object with a `name` and `apply(cursor, events)`, where `events` is a
batch of `(notification, domain event)` in position order; it writes with the cursor and
never commits. The runner reads with `EventLog` (which never passes a late commit), so
positions arrive in order, each once. Two workers never run one projection at once: each
holds a session advisory lock on the projection's name, released by PostgreSQL if the
worker dies, so another takes over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import Notification

from channel_domain.store.log import EventLog

logger = logging.getLogger(__name__)


class Projection(Protocol):
    name: str
    tables: tuple[str, ...]  # the read-model tables it writes, and nothing else writes

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None: ...


def _forget_state(projection: Projection) -> None:
    """A projection may keep state in memory between batches; it offers `reset()` to drop it
    whenever the runner cannot vouch that its tables hold exactly what it wrote (a batch
    rolled back, another worker moved its checkpoint)."""
    reset = getattr(projection, "reset", None)
    if reset is not None:
        reset()


@dataclass(frozen=True)
class Progress:
    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class ProjectionRunner:
    def __init__(self, app: Any, projections: Sequence[Projection], batch_size: int = 2000) -> None:
        self.app = app  # the ChannelDepartment: its recorder, datastore and mapper
        self.projections = list(projections)
        self.batch_size = batch_size
        self._logs: dict[str, EventLog] = {}

    @property
    def datastore(self) -> Any:
        return self.app.event_recorder.datastore

    def checkpoint(self, name: str) -> int:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT position FROM projection_checkpoints WHERE name = %s", (name,))
            row = curs.fetchone()
        return row["position"] if row else 0

    def catch_up(self, projection: Projection) -> int:
        """Apply every event safely readable now; returns how many were applied."""
        start = self.checkpoint(projection.name)
        log = self._logs.get(projection.name)
        if log is None or log.position != start:
            _forget_state(projection)
            log = self._logs[projection.name] = EventLog(self.app.event_recorder, after=start)
        applied = 0
        for batch in log.follow(self.batch_size):
            self._apply(projection, batch)
            applied += len(batch)
        return applied

    def catch_up_all(self) -> int:
        """Bring every projection up to the head; returns how many events were applied."""
        return sum(self.catch_up(projection) for projection in self.projections)

    def _apply(self, projection: Projection, batch: Sequence[Notification]) -> None:
        events = [(n, self.app.mapper.to_domain_event(n)) for n in batch]
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            projection.apply(curs, events)
            curs.execute(
                "INSERT INTO projection_checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
                " WHERE projection_checkpoints.position < EXCLUDED.position",
                (projection.name, batch[-1].id),
            )
            if curs.rowcount != 1:
                # Someone else moved this checkpoint: roll the batch back rather than apply it twice.
                raise RuntimeError(f"projection {projection.name} was advanced by another worker")

    def progress(self) -> list[Progress]:
        head = self.app.event_recorder.max_notification_id() or 0
        return [Progress(p.name, self.checkpoint(p.name), head) for p in self.projections]

    def run(self, stop: threading.Event, idle_wait: float = 0.2) -> None:
        """Keep every projection this worker can lock up to date until `stop` is set."""
        with self.datastore.get_connection() as lock_conn, lock_conn.cursor() as lock:
            held: set[str] = set()
            try:
                while not stop.is_set():
                    busy = False
                    for projection in self.projections:
                        if projection.name not in held:
                            lock.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS got",
                                         (f"projection:{projection.name}",))
                            row = lock.fetchone()
                            if not (row and row["got"]):
                                continue
                            held.add(projection.name)
                        try:
                            busy = self.catch_up(projection) > 0 or busy
                        except Exception:
                            logger.exception("projection %s failed; retrying", projection.name)
                            self._logs.pop(projection.name, None)
                    if not busy:
                        stop.wait(idle_wait)
            finally:
                lock.execute("SELECT pg_advisory_unlock_all()")


def start_in_background(runner: ProjectionRunner) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), name="projections", daemon=True)
    thread.start()
    return thread, stop
