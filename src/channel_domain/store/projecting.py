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

import gc
import logging
import multiprocessing
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
        self._logs: dict[tuple[str, ...], EventLog] = {}
        self._applied: dict[str, int] = {}  # the checkpoint this runner last committed, by projection

    @property
    def datastore(self) -> Any:
        return self.app.event_recorder.datastore

    def checkpoint(self, name: str) -> int:
        return self._checkpoints([name]).get(name, 0)

    def _checkpoints(self, names: Sequence[str]) -> dict[str, int]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT name, position FROM projection_checkpoints WHERE name = ANY(%s)", (list(names),))
            return {row["name"]: row["position"] for row in curs.fetchall()}

    def catch_up(self, projection: Projection) -> int:
        """Apply every event safely readable now; returns how many were applied."""
        return self.catch_up_together([projection])

    def catch_up_all(self) -> int:
        """Bring every projection up to the head; returns how many events were read."""
        return self.catch_up_together(self.projections)

    def catch_up_together(self, projections: Sequence[Projection]) -> int:
        """Bring the projections up to the head. Those at the same checkpoint — all of them,
        once caught up — share one read and one decoding of each batch, the costliest part
        of projecting; each still commits its batch with its own checkpoint, so one failing
        does not hold back the others (its error is raised once they are done)."""
        checkpoints = self._checkpoints([p.name for p in projections])
        groups: dict[int, list[Projection]] = {}
        for projection in projections:
            start = checkpoints.get(projection.name, 0)
            if self._applied.get(projection.name) != start:
                # Not where this runner left it: a rollback, another worker or a rebuild.
                _forget_state(projection)
            groups.setdefault(start, []).append(projection)
        read, failure = 0, None
        for start, group in groups.items():
            key = tuple(sorted(p.name for p in group))
            log = self._logs.get(key)
            if log is None or log.position != start:
                log = self._logs[key] = EventLog(self.app.event_recorder, after=start)
            for batch in log.follow(self.batch_size):
                events = [(n, self.app.mapper.to_domain_event(n)) for n in batch]
                for projection in list(group):
                    try:
                        self._apply(projection, events)
                    except Exception as error:  # noqa: BLE001 - raised below, after the others
                        self._applied.pop(projection.name, None)
                        group.remove(projection)
                        failure = failure or error
                read += len(batch)
                if not group:
                    break
            if len(group) != len(key):
                self._logs.pop(key, None)
        if len(self._logs) > 4 * len(self.projections):
            self._logs.clear()  # groups come and go as projections fall behind and catch up
        if failure is not None:
            raise failure
        return read

    def _apply(self, projection: Projection, events: Sequence[tuple[Notification, Any]]) -> None:
        position = events[-1][0].id
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            projection.apply(curs, events)
            curs.execute(
                "INSERT INTO projection_checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
                " WHERE projection_checkpoints.position < EXCLUDED.position",
                (projection.name, position),
            )
            if curs.rowcount != 1:
                # Someone else moved this checkpoint: roll the batch back rather than apply it twice.
                raise RuntimeError(f"projection {projection.name} was advanced by another worker")
        self._applied[projection.name] = position

    def head(self) -> int:
        """The log's last position: what every projection is heading for."""
        return self.app.event_recorder.max_notification_id() or 0

    def progress(self) -> list[Progress]:
        head = self.head()
        return [Progress(p.name, self.checkpoint(p.name), head) for p in self.projections]

    def run(self, stop: threading.Event, idle_wait: float = 0.2, own_process: bool = False) -> None:
        """Keep every projection this worker can lock up to date until `stop` is set.

        `own_process`: this worker is alone in its process, which may then spare the cycle
        collector what the read models keep in memory: frozen after each busy pass (the
        collector walked all of it again each time it grew by a quarter — a fifth of a
        catch-up), thawed and collected once whenever the worker falls idle."""
        with self.datastore.get_connection() as lock_conn, lock_conn.cursor() as lock:
            held: set[str] = set()
            try:
                while not stop.is_set():
                    for projection in self.projections:
                        if projection.name not in held:
                            lock.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS got",
                                         (f"projection:{projection.name}",))
                            row = lock.fetchone()
                            if row and row["got"]:
                                held.add(projection.name)
                    busy = False
                    try:
                        busy = self.catch_up_together([p for p in self.projections if p.name in held]) > 0
                    except Exception:
                        logger.exception("a projection failed; retrying")
                        self._logs.clear()
                    if own_process:
                        _spare_the_collector(busy)
                    if not busy:
                        stop.wait(idle_wait)
            finally:
                lock.execute("SELECT pg_advisory_unlock_all()")


def _spare_the_collector(busy: bool) -> None:
    if busy:
        gc.freeze()
    elif gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()


def share_out(projections: list[Projection], processes: int) -> list[list[Projection]]:
    """At most `processes` groups of about equal work, by each read model's `weight` (its
    relative cost a event, 1 unless it says), heaviest placed first."""
    groups: list[list[Projection]] = [[] for _ in range(max(1, min(processes, len(projections))))]
    load = [0.0] * len(groups)
    for chosen in sorted(projections, key=lambda p: -getattr(p, "weight", 1)):
        lightest = load.index(min(load))
        groups[lightest].append(chosen)
        load[lightest] += getattr(chosen, "weight", 1)
    return groups


def run_in_processes(app: Any, projections: Sequence[Projection], processes: int, stop: threading.Event,
                     batch_size: int = 2000) -> None:
    """Share the projections out among `processes` worker processes (by `weight`) and keep
    them running — one restarted if it dies — until `stop` is set. Projecting is Python work,
    one core per process; read models do not depend on one another."""
    context = multiprocessing.get_context("spawn")
    halt = context.Event()
    shares = [[type(p) for p in group] for group in share_out(list(projections), processes)]

    def start(share: list[type]) -> Any:
        worker = context.Process(target=_project_share, args=(type(app), app.database_url, share, batch_size, halt),
                                 name=f"projections: {', '.join(kind.name for kind in share)}")
        worker.start()
        return worker

    workers = [start(share) for share in shares]
    try:
        while not stop.wait(0.5):
            for n, worker in enumerate(workers):
                if not worker.is_alive():
                    logger.error("%s exited with %s; starting it again", worker.name, worker.exitcode)
                    workers[n] = start(shares[n])
    finally:
        halt.set()
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()


def _project_share(app_type: type, url: str, projection_types: list[type], batch_size: int, halt: Any) -> None:
    app = app_type(url)
    try:
        stop = threading.Event()
        threading.Thread(target=lambda: (halt.wait(), stop.set()), daemon=True).start()
        ProjectionRunner(app, [kind() for kind in projection_types], batch_size=batch_size).run(stop, own_process=True)
    finally:
        app.close()


def start_in_background(runner: ProjectionRunner) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), name="projections", daemon=True)
    thread.start()
    return thread, stop
