"""Running projections exactly once: each batch of read-model writes commits in one
transaction with the projection's checkpoint.

A projection is any object with a `name` and `apply(cursor, events)`, where `events` is a
batch of `(notification, domain event)` in position order; it writes with the cursor and
never commits. The runner reads with `EventLog` (which never passes a late commit), so
positions arrive in order, each once. Two workers never run one projection at once: each
holds a session advisory lock on the projection's name, released by PostgreSQL if the
worker dies, so another takes over.

A poison event — one a read model cannot apply — stops that read model alone, loudly: its
batch is tried again a few times (`attempts`, with a growing pause), then narrowed down to
the event that fails; what precedes the event commits, and the read model is marked failing
at it in `projection_failures`, which every process reads (the traceback is logged once).
It stays there until an operator retries it (after a fix) or records a decision to skip that
event (`channel_domain.operations.ProjectionSkip`); never skipped automatically.
"""

from __future__ import annotations

import contextlib
import gc
import getpass
import logging
import multiprocessing
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from eventsourcing.persistence import InterfaceError, Notification
from eventsourcing.persistence import OperationalError as LibraryOperationalError
from psycopg_pool import PoolTimeout

from channel_domain.aggregate import event_id
from channel_domain.operations import skip_decision_id
from channel_domain.store.log import EventLog
from channel_domain.store.recorder import EVENTS_TABLE

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


ATTEMPTS_VARIABLE = "CHANNEL_DOMAIN_PROJECTION_ATTEMPTS"
RETRY_PAUSE_VARIABLE = "CHANNEL_DOMAIN_PROJECTION_RETRY_S"
DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_PAUSE_S = 1.0  # then twice as long before each further attempt


@dataclass(frozen=True)
class Failure:
    """A read model stopped at an event it cannot apply (a row of `projection_failures`)."""

    position: int
    event_id: Any
    event_type: str
    error: str
    attempts: int
    since: datetime


@dataclass(frozen=True)
class Progress:
    name: str
    position: int
    head: int
    failure: Failure | None = None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    @property
    def status(self) -> str:
        return "running" if self.failure is None else "failing"


class CheckpointMoved(RuntimeError):
    """Another worker advanced the checkpoint under this one: not the events' fault."""


class UndecodableEvent(Exception):
    """An event in the log cannot be decoded (unknown topic, unreadable state): a poison
    event for every read model that reaches it."""


@dataclass(frozen=True)
class Undecodable:
    """Stands in a batch for an event that could not be decoded: the batch is decoded once
    for all the read models at one checkpoint, and each read model meets the error as its
    own poison event at that position (attempts, then stopped there)."""

    error: Exception


TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")  # connection, resources, operator intervention, rollback


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the database could not be used (gone, restarting, saturated, a
    deadlock) rather than that the events cannot be applied: retried for as long as it lasts,
    never counted against the events. psycopg's OperationalError is too wide for this (an
    index row too large is one), so server errors are told by SQLSTATE class. An error with
    no SQLSTATE was raised by psycopg itself: transient only when about the connection
    (OperationalError, InterfaceError) — a NUL in a text value (DataError) or a query that
    does not fit its parameters (ProgrammingError) fails the same way every time."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PoolTimeout | InterfaceError | psycopg.InterfaceError | CheckpointMoved):
            return True
        if isinstance(seen, psycopg.Error):
            state = seen.sqlstate
            if state is None:
                return isinstance(seen, psycopg.OperationalError)
            return state[:2] in TRANSIENT_SQLSTATE_CLASSES
        seen = seen.__cause__
    return isinstance(error, LibraryOperationalError)


@dataclass
class _Attempts:
    position: int  # the checkpoint the failing attempts started from
    count: int = 0
    next_at: float = 0.0  # time.monotonic() before which the read model is not tried again


def _event_type(notification: Notification) -> str:
    return notification.topic.partition(":")[2]


def _event_id(notification: Notification) -> uuid.UUID:
    return event_id(notification.originator_id, notification.originator_version)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


class ProjectionRunner:
    def __init__(self, app: Any, projections: Sequence[Projection], batch_size: int = 2000, *,
                 attempts: int | None = None, retry_pause_s: float | None = None) -> None:
        self.app = app  # the ChannelDepartment: its recorder, datastore and mapper
        self.projections = list(projections)
        self.batch_size = batch_size
        # How many times a batch that fails is tried before its read model stops at the event.
        self.attempts = max(1, attempts if attempts is not None
                            else int(os.environ.get(ATTEMPTS_VARIABLE, DEFAULT_ATTEMPTS)))
        self.retry_pause_s = max(0.0, retry_pause_s if retry_pause_s is not None
                                 else float(os.environ.get(RETRY_PAUSE_VARIABLE, DEFAULT_RETRY_PAUSE_S)))
        self._logs: dict[tuple[str, ...], EventLog] = {}
        self._applied: dict[str, int] = {}  # the checkpoint this runner last committed, by projection
        self._attempts: dict[str, _Attempts] = {}  # read models whose batch failed and will be tried again

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
        does not hold back the others (its error is raised once they are done).

        A read model marked failing is left where it stopped; one whose last attempt failed
        waits out its pause before it is tried again."""
        states = self._states([p.name for p in projections])
        now = time.monotonic()
        groups: dict[int, list[Projection]] = {}
        for projection in projections:
            start, failure = states.get(projection.name, (0, None))
            tries = self._attempts.get(projection.name)
            if failure is not None and failure.position <= start:
                # Moved past the event since it stopped (a rebuild applied it): nothing to wait for.
                self._clear_stale_failure(projection.name, failure.position)
            elif failure is not None:
                self._attempts.pop(projection.name, None)  # an operator's turn now
                continue
            if tries is not None and tries.position != start:
                del self._attempts[projection.name]  # it moved on since (another worker, a skip)
            elif tries is not None and tries.next_at > now:
                continue
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
            at = start
            decodes = any(getattr(p, "decodes", True) for p in group)
            for batch in log.follow(self.batch_size):
                events = [(n, self._decode(n) if decodes else None) for n in batch]
                skips = self._skips([p.name for p in group if _skippable(p)], batch[0].id, batch[-1].id)
                failed: list[tuple[Projection, Exception]] = []
                for projection in list(group):
                    try:
                        self._apply(projection, at, events, skips.get(projection.name, ()))
                        self._attempts.pop(projection.name, None)
                    except Exception as error:  # noqa: BLE001 - raised below, after the others
                        self._applied.pop(projection.name, None)
                        _forget_state(projection)
                        group.remove(projection)
                        failure = failure or error
                        if not is_transient(error):
                            failed.append((projection, error))
                for projection, error in failed:  # out of the handler: its traceback is the event's alone
                    self._failed(projection, at, events, skips.get(projection.name, ()), error)
                at = batch[-1].id
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

    def _decode(self, notification: Notification) -> Any:
        try:
            return self.app.mapper.to_domain_event(notification)
        except Exception as error:  # noqa: BLE001 - met by each read model as its poison event
            return Undecodable(error)

    def _failed(self, projection: Projection, at: int, events: Sequence[tuple[Notification, Any]],
                skip: Collection[int], error: Exception) -> None:
        """A batch after position `at` failed for `projection`: try again later, or — the
        attempts spent — stop the read model at the event that fails."""
        tries = self._attempts.get(projection.name)
        if tries is None or tries.position != at:
            tries = self._attempts[projection.name] = _Attempts(at)
        tries.count += 1
        with contextlib.suppress(AttributeError):  # logged here: run() does not log it again
            error._channel_domain_reported = True  # type: ignore[attr-defined]
        if tries.count < self.attempts:
            pause = self.retry_pause_s * 2 ** (tries.count - 1)
            tries.next_at = time.monotonic() + pause
            logger.warning("read model %s failed on the events after position %d (attempt %d of %d): %s;"
                           " trying again in %.1f s", projection.name, at, tries.count, self.attempts,
                           _error_text(error), pause)
            return
        del self._attempts[projection.name]
        found = self._narrow(projection, at, events, skip)
        if found is None:
            logger.warning("read model %s: the events after position %d went through when applied in"
                           " smaller batches", projection.name, at)
            return
        poison, poison_error = found
        if _skippable(projection) and self._heal_skip(projection.name, poison.id):
            return
        self._mark_failing(projection.name, poison, poison_error, tries.count)

    def _narrow(self, projection: Projection, at: int, events: Sequence[tuple[Notification, Any]],
                skip: Collection[int]) -> tuple[Notification, Exception] | None:
        """Apply `events` (read from checkpoint `at`) in ever smaller batches, committing each
        that goes through, down to the first event that fails alone: returned with its error
        (None if none fails)."""
        pending = list(events)
        size = max(1, len(pending) // 2)  # the whole batch has just failed
        while pending:
            while True:
                try:
                    self._apply(projection, at, pending[:size], skip)
                    break
                except Exception as error:  # noqa: BLE001 - the poison, or raised if transient
                    if is_transient(error):
                        raise
                    _forget_state(projection)
                    if size == 1:
                        return pending[0][0], error
                    size //= 2
            at = pending[size - 1][0].id
            pending = pending[size:]
            size = len(pending)
        return None

    def _heal_skip(self, name: str, position: int) -> bool:
        """The skip is decided by its event in the log, and `projection_skips` indexes it; an
        operator interrupted between the two leaves the event alone: found here, indexed."""
        decision_id = skip_decision_id(name, position)
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(f"SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = %s LIMIT 1",  # noqa: S608
                         (decision_id,))
            if curs.fetchone() is None:
                return False
            curs.execute("INSERT INTO projection_skips (name, position, decision_id) VALUES (%s, %s, %s)"
                         " ON CONFLICT DO NOTHING", (name, position, decision_id))
        logger.warning("read model %s: position %d is skipped by an operator's decision (%s)", name, position,
                       decision_id)
        return True

    def _clear_stale_failure(self, name: str, position: int) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("DELETE FROM projection_failures WHERE name = %s AND position = %s", (name, position))
        logger.warning("read model %s has applied position %d since it stopped there: running again", name, position)

    def _mark_failing(self, name: str, poison: Notification, error: Exception, attempts: int) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(
                "INSERT INTO projection_failures (name, position, event_id, event_type, error, traceback, attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, event_id = EXCLUDED.event_id,"
                " event_type = EXCLUDED.event_type, error = EXCLUDED.error, traceback = EXCLUDED.traceback,"
                " attempts = EXCLUDED.attempts, since = now()",
                (name, poison.id, _event_id(poison), _event_type(poison), _error_text(error),
                 "".join(traceback.format_exception(error)), attempts),
            )
        # The one log line with the traceback: the attempts before it logged a line each.
        logger.error("read model %s STOPPED at position %d (%s, event %s) after %d attempts: %s. The other read"
                     " models go on. Once fixed: `channel-domain projections retry %s`; to pass over this one"
                     " event instead: `channel-domain projections retry %s --skip %d --reason ... --actor ...`",
                     name, poison.id, _event_type(poison), _event_id(poison), attempts, _error_text(error),
                     name, name, poison.id, exc_info=error)

    def _skips(self, names: Sequence[str], first: int, last: int) -> dict[str, set[int]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT name, position FROM projection_skips"
                         " WHERE name = ANY(%s) AND position BETWEEN %s AND %s", (list(names), first, last))
            skips: dict[str, set[int]] = {}
            for row in curs.fetchall():
                skips.setdefault(row["name"], set()).add(row["position"])
            return skips

    def _states(self, names: Sequence[str]) -> dict[str, tuple[int, Failure | None]]:
        """Each read model's checkpoint and, when it is stopped, its failure: one query."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return {name: (position, failure) for name, position, _, failure in self._read_states(curs, names)}

    @staticmethod
    def _read_states(curs: Any, names: Sequence[str], *, head: bool = False) -> list[tuple[str, int, int, Failure | None]]:
        curs.execute(
            "SELECT n.name, coalesce(c.position, 0) AS position, f.position AS failing_position, f.event_id,"
            " f.event_type, f.error, f.attempts, f.since,"
            + (f" (SELECT coalesce(max(position), 0) FROM {EVENTS_TABLE}) AS head" if head else " 0 AS head")
            + " FROM unnest(%s::text[]) WITH ORDINALITY AS n(name, ord)"
            " LEFT JOIN projection_checkpoints c ON c.name = n.name"
            " LEFT JOIN projection_failures f ON f.name = n.name ORDER BY n.ord",
            (list(names),),
        )
        return [
            (row["name"], row["position"], row["head"],
             None if row["failing_position"] is None else Failure(
                 row["failing_position"], row["event_id"], row["event_type"], row["error"], row["attempts"],
                 row["since"]))
            for row in curs.fetchall()
        ]

    def _apply(self, projection: Projection, after: int, events: Sequence[tuple[Notification, Any]],
               skip: Collection[int] = ()) -> None:
        """Apply `events`, read from checkpoint `after`, and move the checkpoint past them, in
        one transaction; the positions in `skip` (an operator's decisions) move the checkpoint
        but are not applied.

        The checkpoint moves only from `after` (absent counts as 0): a batch read before another
        worker moved it — one whose lock session died unnoticed, say — is refused whole, however
        far it reaches. The checkpoint is written last, as a rebuild's switch does (tables, then
        checkpoints): the other order deadlocks with it."""
        position = events[-1][0].id
        chosen = [pair for pair in events if pair[0].id not in skip] if skip else events
        for notification, event in chosen:
            if isinstance(event, Undecodable):
                raise UndecodableEvent(f"the event at position {notification.id} ({notification.topic}) cannot"
                                       f" be decoded: {_error_text(event.error)}") from event.error
        try:
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
                if chosen:
                    projection.apply(curs, chosen)
                if after == 0:
                    curs.execute(
                        "INSERT INTO projection_checkpoints (name, position) VALUES (%s, %s)"
                        " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
                        " WHERE projection_checkpoints.position = 0",
                        (projection.name, position),
                    )
                else:
                    curs.execute("UPDATE projection_checkpoints SET position = %s, updated_at = now()"
                                 " WHERE name = %s AND position = %s", (position, projection.name, after))
                if curs.rowcount != 1:
                    raise CheckpointMoved(f"projection {projection.name} is no longer at position {after}:"
                                          " another worker moved it; its batch is rolled back")
        except Exception as error:
            # A batch overlapping another worker's collides with its rows (a key) before it
            # reaches the checkpoint: that is the other worker's progress, not the events' fault.
            if not is_transient(error) and self.checkpoint(projection.name) != after:
                raise CheckpointMoved(f"projection {projection.name} is no longer at position {after}:"
                                      " another worker moved it; its batch is rolled back") from error
            raise
        self._applied[projection.name] = position

    def head(self) -> int:
        """The log's last position: what every projection is heading for."""
        return self.app.event_recorder.max_notification_id() or 0

    def progress(self, conn: Any = None) -> list[Progress]:
        """Every read model's position, state and the log's head, read in one query (on
        `conn` when given, else on a pooled connection)."""
        names = [p.name for p in self.projections]
        if conn is None:
            with self.datastore.get_connection() as pooled, pooled.cursor() as curs:
                rows = self._read_states(curs, names, head=True)
        else:
            with conn.cursor() as curs:
                rows = self._read_states(curs, names, head=True)
        return [Progress(name, position, head, failure) for name, position, head, failure in rows]

    def run(self, stop: threading.Event, idle_wait: float = 0.2, own_process: bool = False) -> None:
        """Keep every projection this worker can lock up to date until `stop` is set.

        The locks live on one session of their own, asked each pass whether it is still there:
        once it is gone (the backend terminated, the connection broken) PostgreSQL has released
        the locks and another worker may have taken them, so this one stops projecting, opens
        a new session and takes again only what is free.

        `own_process`: this worker is alone in its process, which may then spare the cycle
        collector what the read models keep in memory: frozen after each busy pass (the
        collector walked all of it again each time it grew by a quarter — a fifth of a
        catch-up), thawed and collected once whenever the worker falls idle."""
        trouble = _Trouble()
        while not stop.is_set():
            try:
                with self.datastore.get_connection() as lock_conn:
                    self._run_locked(lock_conn, stop, idle_wait, own_process, trouble)
            except Exception as error:  # noqa: BLE001 - the lock session lost: a new one after a pause
                self._logs.clear()
                trouble.report(error, "the projection locks' session is lost; taking them again")
                stop.wait(idle_wait)

    def _run_locked(self, lock_conn: Any, stop: threading.Event, idle_wait: float, own_process: bool,
                    trouble: _Trouble) -> None:
        held: set[str] = set()
        try:
            with lock_conn.cursor() as lock:
                while not stop.is_set():
                    # Also the check that the session, and with it every lock in `held`, is still
                    # there: raises when it is not.
                    lock.execute("SELECT 1")
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
                        trouble.clear()
                    except Exception as error:  # noqa: BLE001 - logged; tried again on the next pass
                        self._logs.clear()
                        trouble.report(error, "projecting failed; trying again")
                    if own_process:
                        _spare_the_collector(busy)
                    if not busy:
                        stop.wait(idle_wait)
        finally:
            # A dead session holds nothing: PostgreSQL released its locks with it.
            if not lock_conn.broken and not lock_conn.closed:
                with contextlib.suppress(psycopg.Error):
                    lock_conn.execute("SELECT pg_advisory_unlock_all()")


class _Trouble:
    """What went wrong last, so that a lasting trouble logs its traceback once, then a line
    when it changes."""

    def __init__(self) -> None:
        self.last = ""

    def clear(self) -> None:
        self.last = ""

    def report(self, error: BaseException, message: str) -> None:
        if getattr(error, "_channel_domain_reported", False):
            return  # a read model's failure, logged where it was counted
        if isinstance(error, CheckpointMoved):
            logger.warning("%s", error)  # another worker's progress, not trouble
            return
        text = _error_text(error)
        if not self.last:
            logger.error(message, exc_info=error)
        elif text != self.last:
            logger.warning("%s: %s", message, text)
        self.last = text


def _spare_the_collector(busy: bool) -> None:
    if busy:
        gc.freeze()
    elif gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()


def share_out(projections: list[Projection], processes: int) -> list[list[Projection]]:
    """At most `processes` groups of about equal work, by each read model's `weight` (its
    relative cost a event, 1 unless it says), heaviest placed first.

    The read models of a lane of their own (`lanes`: the evidence) stay together, as one unit
    of their summed weight: their runner reads the log once for all of them. Split between two
    processes, each process ran a lane of one model and the log was read four times, not three
    (P4)."""
    units: list[list[Projection]] = []
    by_lane: dict[str, list[Projection]] = {}
    for projection in projections:
        lane = getattr(projection, "lane", "")
        if lane in by_lane:
            by_lane[lane].append(projection)
            continue
        unit = [projection]
        units.append(unit)
        if lane:
            by_lane[lane] = unit
    groups: list[list[Projection]] = [[] for _ in range(max(1, min(processes, len(units))))]
    load = [0.0] * len(groups)
    for unit in sorted(units, key=lambda u: -_weight(u)):
        lightest = load.index(min(load))
        groups[lightest].extend(unit)
        load[lightest] += _weight(unit)
    return groups


def _weight(unit: list[Projection]) -> float:
    return sum(getattr(projection, "weight", 1) for projection in unit)


EVIDENCE_LANE = "evidence"


def lanes(projections: Sequence[Projection]) -> list[list[Projection]]:
    """The projections split by `lane`: the read models, then each lane of its own (the
    evidence: seals and the Merkle tree). A lane is worked by a runner — a thread — of its own,
    so that the tree checkpoints are signed from keeps up with an import the read models as a
    whole cannot (P11) instead of waiting on each of their batches."""
    by_lane: dict[str, list[Projection]] = {}
    for projection in projections:
        by_lane.setdefault(getattr(projection, "lane", ""), []).append(projection)
    return [by_lane[name] for name in sorted(by_lane)]


def run_lanes(app: Any, projections: Sequence[Projection], stop: threading.Event, batch_size: int = 2000,
              own_process: bool = False) -> None:
    """Run each lane of `projections` in a runner of its own until `stop`: the first in this
    thread (sparing the collector when `own_process`), the others in threads."""
    runners = [ProjectionRunner(app, lane, batch_size=batch_size) for lane in lanes(projections)]
    others = [threading.Thread(target=runner.run, args=(stop,), daemon=True,
                               name=f"projections: {', '.join(p.name for p in runner.projections)}")
              for runner in runners[1:]]
    for thread in others:
        thread.start()
    try:
        if runners:
            runners[0].run(stop, own_process=own_process)
    finally:  # run() returns once `stop` is set, which the other lanes see too
        for thread in others:
            thread.join(timeout=10)


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
        run_lanes(app, [kind() for kind in projection_types], stop, batch_size, own_process=True)
    finally:
        app.close()


def start_in_background(runner: ProjectionRunner) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), name="projections", daemon=True)
    thread.start()
    return thread, stop


# Operator commands (`channel-domain projections ...`) ---------------------------------------


def _skippable(projection: Projection) -> bool:
    """Evidence (`rebuildable = False`: the seals, the Merkle tree) never passes over an event,
    whatever decision a caller of the library recorded: the event would be missing from the
    proofs. `channel-domain projections skip` refuses it before recording anything."""
    return getattr(projection, "rebuildable", True)


class SkipRefused(Exception):
    """The skip was not recorded: the read model is not stopped at that position."""


def failure_of(datastore: Any, name: str) -> tuple[Failure, str] | None:
    """A stopped read model's failure and the traceback logged with it."""
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT position, event_id, event_type, error, attempts, since, traceback"
                     " FROM projection_failures WHERE name = %s", (name,))
        row = curs.fetchone()
    if row is None:
        return None
    return Failure(row["position"], row["event_id"], row["event_type"], row["error"], row["attempts"],
                   row["since"]), row["traceback"]


def retry(app: Any, name: str, reason: str | None = None) -> tuple[Failure, Any] | None:
    """Clear a read model's failing state: the workers try it again from its checkpoint (with
    their attempts afresh). Run inside the operator's `acting_as(...)`: the retry is an event
    (ProjectionRetry.Ordered) naming them. Returns the failure cleared and the command's
    outcome, None if it was not failing."""
    try:
        outcome = app.retry_projection(projection=name, reason=reason)
    except NotFailing:
        return None
    failure = outcome.extra["failure"]
    logger.warning("read model %s: failing state at position %d cleared by an operator (event at position %d)",
                   name, failure.position, outcome.position)
    return failure, outcome


def skip(app: Any, name: str, position: int, reason: str) -> Any:
    """Record the operator's decision that read model `name` passes over the event at
    `position`, where it is stopped, and let the workers go on past it. Run inside the
    operator's `acting_as(...)`. Refused (SkipRefused, nothing written) unless the read model
    is stopped at exactly that event. Returns the command's outcome (its position is the
    decision's); see `ChannelDepartment.skip_projection_event`."""
    outcome = app.skip_projection_event(projection=name, position=position, reason=reason)
    logger.warning("read model %s: position %d skipped by an operator's decision, event at position %d",
                   name, position, outcome.position)
    return outcome


class NotFailing(Exception):
    """A retry found nothing to retry: the read model is not stopped."""


def os_user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container with no passwd entry): the uid says who
        return f"uid {os.getuid()}"


@dataclass
class HeldStop:
    """A read model's stopped state, locked for an operator's decision. Until the transaction
    holding it ends, the state cannot change under the decision: a `retry` or `skip` from
    another operator waits on the row lock (and then finds the stop gone), a worker does not
    apply a stopped read model at all, and the checkpoint cannot move (a rebuild's switch
    waits)."""

    name: str
    failure: Failure
    checkpoint: int
    session_user: str  # who really runs the command, whatever actor they name
    os_user: str
    host: str
    _curs: Any

    @property
    def ran_by(self) -> dict[str, str]:
        return {"session_user": self.session_user, "os_user": self.os_user, "host": self.host}

    def decision_in_log(self) -> uuid.UUID | None:
        """A skip of this event already decided (an interrupted `skip` left it unindexed)."""
        decision_id = skip_decision_id(self.name, self.failure.position)
        self._curs.execute(f"SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = %s LIMIT 1",  # noqa: S608
                           (decision_id,))
        return decision_id if self._curs.fetchone() is not None else None

    def pass_over(self, decision_id: uuid.UUID) -> None:
        """Index the skip decision and end the stop: the workers go on past the event."""
        self._curs.execute("INSERT INTO projection_skips (name, position, decision_id) VALUES (%s, %s, %s)"
                           " ON CONFLICT DO NOTHING", (self.name, self.failure.position, decision_id))
        self.clear()

    def clear(self) -> None:
        self._curs.execute("DELETE FROM projection_failures WHERE name = %s", (self.name,))


@contextlib.contextmanager
def held_stop(datastore: Any, name: str) -> Iterator[HeldStop | None]:
    """Lock read model `name`'s stopped state (None when it is not stopped) in a transaction
    held while the operator's event is appended — in a transaction of its own, the
    application's — and committed with what the decision changes (`pass_over`, `clear`).

    An interruption between the append and the commit leaves the event without its effect:
    the stop is still there, so running the command again finds its event and completes it;
    a worker that stops at the event again finds a skip decision in the log (`_heal_skip`),
    and so does a `retry` (`decision_in_log`)."""
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute("SELECT position, event_id, event_type, error, attempts, since, session_user AS session_user"
                     " FROM projection_failures WHERE name = %s FOR UPDATE", (name,))
        row = curs.fetchone()
        if row is None:
            yield None
            return
        failure = Failure(row["position"], row["event_id"], row["event_type"], row["error"], row["attempts"],
                          row["since"])
        curs.execute("SELECT position FROM projection_checkpoints WHERE name = %s FOR SHARE", (name,))
        checkpoint = curs.fetchone()
        yield HeldStop(name, failure, checkpoint["position"] if checkpoint else 0, row["session_user"], os_user_name(),
                       socket.gethostname(), curs)


def check_stopped_at(stop: HeldStop | None, name: str, position: int) -> HeldStop:
    """Refuse a skip unless read model `name` is stopped at `position` and has applied
    everything before it: a stale stop (a rebuild applied the event since) is not enough."""
    if stop is None or stop.failure.position != position:
        at = f"stopped at position {stop.failure.position}" if stop else "not stopped"
        raise SkipRefused(f"read model {name} is {at}: only the event a read model is stopped at is skipped")
    if stop.checkpoint >= position:
        raise SkipRefused(f"read model {name} has applied position {position} since it stopped there (its"
                          f" checkpoint is {stop.checkpoint}): nothing to skip")
    # Positions have gaps (a rolled-back append draws one and leaves it), so "just before" is
    # the last event before it, not position - 1.
    stop._curs.execute(f"SELECT coalesce(max(position), 0) AS before FROM {EVENTS_TABLE}"  # noqa: S608
                       " WHERE position < %s", (position,))
    before = stop._curs.fetchone()["before"]
    if stop.checkpoint != before:
        raise SkipRefused(f"read model {name} is at position {stop.checkpoint}, not just before {position}"
                          f" (position {before}): only the event a read model is stopped at is skipped")
    return stop
