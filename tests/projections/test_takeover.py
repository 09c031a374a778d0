"""One worker per read model at a time, even when a worker's lock session dies under it:
the checkpoint moves only from where its batch was read, and a worker whose lock session
is gone stops projecting, takes a new session and only the locks that are free."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from channel_domain.application import ChannelDepartment
from channel_domain.store.projecting import CheckpointMoved, ProjectionRunner
from projections import AuditTrail
from tests.channel_domain.helpers import as_
from tests.projections.read_model_rows import read_models

PROBE = "lock_probe"


class Probe:
    """Writes a row per event it is given, naming the worker: doubled rows show at once
    (the table has no key to refuse them). Slow enough for two workers to overlap."""

    name = PROBE
    tables = ("probe_rows",)

    def __init__(self, who: str, pause: float = 0.02, hook: Callable[[], None] | None = None) -> None:
        self.who, self.pause, self.hook, self.batches = who, pause, hook, 0

    def apply(self, cursor, events):
        self.batches += 1
        cursor.executemany("INSERT INTO probe_rows (position, who) VALUES (%s, %s)",
                           [(notification.id, self.who) for notification, _ in events])
        if self.hook is not None:
            self.hook()
        time.sleep(self.pause)


@pytest.fixture
def probe_table(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe_rows (position bigint NOT NULL, who text NOT NULL)")


def wait_for(condition: Callable[[], object], what: str, within: float = 30.0) -> object:
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.02)
    return found


def lock_holders(database_url: str, *names: str) -> set[int]:
    """The backends holding the workers' advisory lock on each of `names` (a set of pids)."""
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute(
            "SELECT l.pid FROM pg_locks l, unnest(%s::text[]) AS n(name),"
            " LATERAL (SELECT hashtextextended('projection:' || n.name, 0) AS k) AS key"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = ((key.k >> 32) & 4294967295)::oid AND l.objid = (key.k & 4294967295)::oid",
            (list(names),))}


def terminate(database_url: str, pid: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def checkpoints(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT name, position FROM projection_checkpoints").fetchall())


def probe_rows(database_url: str) -> tuple[int, int, list]:
    with psycopg.connect(database_url) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT position) FROM probe_rows").fetchone()
        doubled = conn.execute("SELECT position, array_agg(who ORDER BY who) FROM probe_rows"
                               " GROUP BY position HAVING count(*) > 1 ORDER BY position").fetchall()
    return total, distinct, doubled


class Worker:
    """A runner's `run` in a thread, with whatever it raised kept for the test."""

    def __init__(self, runner: ProjectionRunner) -> None:
        self.stop = threading.Event()
        self.raised: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(runner,), daemon=True)
        self.thread.start()

    def _run(self, runner: ProjectionRunner) -> None:
        try:
            runner.run(self.stop, idle_wait=0.05)
        except BaseException as error:  # noqa: BLE001 - the test asserts there is none
            self.raised.append(error)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def register(app, count: int) -> int:
    with as_("spec-1", "channel_specialist"):
        for n in range(count):
            app.register_partner(kind="retailer", name=f"P{n}")
    return app.event_recorder.max_notification_id()


def test_a_worker_whose_lock_session_dies_does_not_project_beside_the_one_taking_over(app, database_url,
                                                                                     probe_table):
    """The reviewer's scenario: A's lock session is terminated (A's process lives on), B starts
    and takes the locks, 60 events are written while both run."""
    names = (PROBE, AuditTrail.name)
    with ChannelDepartment(database_url) as a_app, ChannelDepartment(database_url) as b_app:
        a = Worker(ProjectionRunner(a_app, [Probe("A"), AuditTrail()], batch_size=3))
        b = None
        try:
            (first,) = wait_for(lambda: lock_holders(database_url, *names), "A holds its locks")
            terminate(database_url, first)
            b = Worker(ProjectionRunner(b_app, [Probe("B"), AuditTrail()], batch_size=5))
            head = register(app, 60)
            wait_for(lambda: all(checkpoints(database_url).get(name) == head for name in names),
                     "the read models reach the head")
            (holder,) = wait_for(lambda: lock_holders(database_url, *names), "one worker holds the locks")
            assert holder != first
        finally:
            a.halt()
            if b is not None:
                b.halt()
    total, distinct, doubled = probe_rows(database_url)
    assert doubled == [] and total == distinct == head, "every event applied once"
    assert a.raised == [] and b.raised == [], "neither worker ends with an error"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM projection_failures").fetchone()[0] == 0
    survived = read_models(database_url)["audit_events"]
    assert len(survived) == head
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE audit_events")
        conn.execute("DELETE FROM projection_checkpoints WHERE name = %s", (AuditTrail.name,))
    ProjectionRunner(app, [AuditTrail()]).catch_up_all()
    assert read_models(database_url)["audit_events"] == survived, "equal to a clean rebuild"


def test_a_worker_takes_its_locks_again_on_a_new_session_and_stops_cleanly_when_it_is_gone(
        app, database_url, probe_table):
    with ChannelDepartment(database_url) as worker_app:
        worker = Worker(ProjectionRunner(worker_app, [Probe("A", pause=0)], batch_size=10))
        try:
            (first,) = wait_for(lambda: lock_holders(database_url, PROBE), "the worker holds its lock")
            terminate(database_url, first)
            # Nobody else wants the lock: the worker takes it again, on a session of its own.
            (second,) = wait_for(lambda: lock_holders(database_url, PROBE) - {first},
                                 "the worker takes its lock again")
            head = register(app, 5)
            wait_for(lambda: checkpoints(database_url).get(PROBE) == head, "the worker goes on projecting")
            # Its session gone the moment it is told to stop: nothing left to unlock, no error.
            terminate(database_url, second)
        finally:
            worker.halt()
    assert worker.raised == []
    assert probe_rows(database_url)[:2] == (head, head)


class Enough(BaseException):
    """Stops a worker after its first batch (the test's hand, not an error a runner handles)."""


def one_batch_then_stop(runner: ProjectionRunner) -> list[BaseException]:
    """`runner` catches up but stops after committing its first batch; what it raised."""
    probe = runner.projections[0]
    probe.hook = lambda: probe.batches > 1 and (_ for _ in ()).throw(Enough())
    try:
        runner.catch_up_all()
    except BaseException as error:  # noqa: BLE001 - returned to the test
        return [error]
    return []


def test_the_checkpoint_moves_only_from_where_the_batch_was_read(app, database_url, probe_table):
    """Two workers read the same events from position 0 (as when one's lock session died
    unnoticed); while the first applies its batch of 10, the other commits a batch of 4. The
    first is refused whole — not only where it overlaps — and goes on from 4 next time."""
    head = register(app, 10)
    other = ProjectionRunner(app, [Probe("other", pause=0)], batch_size=4)
    stopped: list[BaseException] = []
    first = Probe("first", pause=0, hook=lambda: first.batches == 1 and stopped.extend(one_batch_then_stop(other)))
    runner = ProjectionRunner(app, [first], batch_size=100)
    with pytest.raises(CheckpointMoved):
        runner.catch_up_all()
    assert [type(error) for error in stopped] == [Enough]
    assert probe_rows(database_url) == (4, 4, []) and checkpoints(database_url)[PROBE] == 4
    first.hook = None
    assert runner.catch_up_all() == head - 4
    total, distinct, doubled = probe_rows(database_url)
    assert (total, distinct, doubled) == (head, head, []), "no event applied by both"
    assert runner._attempts == {}, "not counted against the events"


def test_a_batch_colliding_with_another_workers_rows_is_refused_not_counted(app, database_url, probe_table):
    """The same race on a read model with a key: the batch read from a checkpoint that has
    moved meets the other worker's rows before it reaches the checkpoint. That is the other
    worker's progress (CheckpointMoved), not a failure of the events."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE probe_rows ADD PRIMARY KEY (position)")
    head = register(app, 6)
    stale = ProjectionRunner(app, [Probe("stale", pause=0)], batch_size=100, attempts=1, retry_pause_s=0)
    stale_raised: list[BaseException] = []

    def catch_up_stale() -> None:
        try:
            stale.catch_up_all()
        except Exception as error:  # noqa: BLE001 - asserted below
            stale_raised.append(error)

    def waiting_on_a_lock() -> bool:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND wait_event_type = 'Lock'").fetchone()[0] > 0

    thread = threading.Thread(target=catch_up_stale)

    def start_the_stale_one() -> None:
        thread.start()  # it reads from 0 and waits on this batch's rows
        wait_for(waiting_on_a_lock, "the stale worker waits on the rows written here")

    winner = ProjectionRunner(app, [Probe("winner", pause=0, hook=start_the_stale_one)], batch_size=100)
    winner.catch_up_all()
    thread.join(30)
    assert [type(error) for error in stale_raised] == [CheckpointMoved]
    assert isinstance(stale_raised[0].__cause__.__cause__, psycopg.errors.UniqueViolation)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM projection_failures").fetchone()[0] == 0
    assert stale._attempts == {}
    assert probe_rows(database_url) == (head, head, [])
