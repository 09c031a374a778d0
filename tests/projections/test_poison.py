"""A poison event stops one read model, loudly: attempts, then stopped at the event, the
failing state in PostgreSQL, the traceback logged once; retry after a fix; an operator's
skip recorded as an audit event (docs/reliability.md)."""

from __future__ import annotations

import getpass
import logging
import socket
import threading
import time

import psycopg
import pytest

from channel_domain.errors import ValidationFailed
from channel_domain.operations import ProjectionRetry, ProjectionSkip
from channel_domain.partner import Partner
from channel_domain.store import projecting
from channel_domain.store.projecting import ProjectionRunner, SkipRefused, is_transient
from projections import AuditTrail
from tests.channel_domain.helpers import as_
from tests.channel_domain.store.test_integrity import tamper

POISON = "Poison Shop"


class Fussy:
    """A read model that cannot handle a partner named POISON — until it is fixed."""

    name = "fussy"
    tables = ("fussy_rows",)

    def __init__(self) -> None:
        self.fixed = False

    def apply(self, cursor, events):
        for notification, event in events:
            if isinstance(event, Partner.Applied) and event.name == POISON and not self.fixed:
                raise ValueError(f"cannot handle {event.name!r}")
            cursor.execute("INSERT INTO fussy_rows (position) VALUES (%s)", (notification.id,))


@pytest.fixture
def fussy(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE fussy_rows (position bigint PRIMARY KEY)")
    return Fussy()


def partners(app, *names: str) -> list[int]:
    with as_("spec-1", "channel_specialist"):
        return [app.register_partner(kind="retailer", name=name).position for name in names]


def fussy_rows(database_url) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM fussy_rows ORDER BY position")]


def failure_row(database_url, name="fussy"):
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT position, event_type, error, attempts, traceback FROM projection_failures"
                            " WHERE name = %s", (name,)).fetchone()


def run_until_stopped(runner: ProjectionRunner) -> None:
    for _ in range(runner.attempts):
        with pytest.raises(ValueError, match="cannot handle"):
            runner.catch_up_all()


def test_a_poison_event_stops_its_read_model_at_that_event_and_the_others_go_on(app, database_url, fussy, caplog):
    positions = partners(app, "A", "B", POISON, "D", "E")
    runner = ProjectionRunner(app, [AuditTrail(), fussy], batch_size=100, attempts=3, retry_pause_s=0)
    with caplog.at_level(logging.WARNING, logger="channel_domain.store.projecting"):
        run_until_stopped(runner)
        # Stopped: no more attempts, no more errors; the other read model keeps going.
        assert runner.catch_up_all() == 0
        later = partners(app, "F")
        assert runner.catch_up_all() == 1
    assert runner.checkpoint("fussy") == positions[1], "what precedes the poison event is committed"
    assert fussy_rows(database_url) == positions[:2]
    assert runner.checkpoint("audit_events") == later[-1]
    position, event_type, error, attempts, traceback = failure_row(database_url)
    assert (position, event_type, attempts) == (positions[2], "Partner.Applied", 3)
    assert error == "ValueError: cannot handle 'Poison Shop'"
    assert "Traceback" in traceback and "in apply" in traceback and "During handling" not in traceback
    (progress,) = [p for p in runner.progress() if p.name == "fussy"]
    assert (progress.status, progress.failure.position, progress.lag) == ("failing", positions[2], 4)
    # The log: a line per failed attempt, and the traceback once, with the stop.
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and tracebacks[0].levelno == logging.ERROR
    assert f"fussy STOPPED at position {positions[2]}" in tracebacks[0].getMessage()
    assert len([r for r in caplog.records if "(attempt" in r.getMessage()]) == 2


def test_retry_after_the_fix_resumes_from_the_checkpoint_and_catches_up(app, database_url, fussy):
    positions = partners(app, "A", POISON, "C")
    runner = ProjectionRunner(app, [fussy], attempts=2, retry_pause_s=0)
    run_until_stopped(runner)
    fussy.fixed = True  # the fix is deployed
    assert runner.catch_up_all() == 0, "a fix alone does not resume: the operator says when"
    with as_("ops-1", "operator"):
        cleared, ordered = projecting.retry(app, "fussy")
    assert cleared.position == positions[1]
    assert runner.catch_up_all() == 3  # and the retry's own event
    assert fussy_rows(database_url) == [*positions, ordered.position]
    assert failure_row(database_url) is None
    with as_("ops-1", "operator"):
        assert projecting.retry(app, "fussy") is None


def test_retry_without_a_fix_stops_it_again_at_the_same_event(app, database_url, fussy):
    positions = partners(app, "A", POISON)
    runner = ProjectionRunner(app, [fussy], attempts=2, retry_pause_s=0)
    run_until_stopped(runner)
    with as_("ops-1", "operator"):
        projecting.retry(app, "fussy")
    run_until_stopped(runner)
    assert failure_row(database_url)[0] == positions[1]


def test_a_failed_attempt_waits_its_pause_before_the_next(app, fussy):
    partners(app, POISON)
    runner = ProjectionRunner(app, [fussy], attempts=3, retry_pause_s=3600)
    with pytest.raises(ValueError):
        runner.catch_up_all()
    assert runner.catch_up_all() == 0  # not tried again within the pause
    assert runner._attempts["fussy"].count == 1


def test_skip_is_an_audit_event_and_passes_over_exactly_that_position(app, database_url, fussy):
    positions = partners(app, "A", POISON, "C")
    runner = ProjectionRunner(app, [AuditTrail(), fussy], attempts=2, retry_pause_s=0)
    run_until_stopped(runner)
    with as_("ops-1", "operator"), pytest.raises(SkipRefused, match="stopped at position"):
        projecting.skip(app, "fussy", positions[2], "wrong position")
    with as_("ops-1", "operator"), pytest.raises(ValidationFailed):
        projecting.skip(app, "fussy", positions[1], "  ")
    with as_("ops-1", "operator"):
        decision = projecting.skip(app, "fussy", positions[1], "partner name breaks the fussy model; ticket 42")
    assert failure_row(database_url) is None
    more = partners(app, "D", POISON)  # a second poison event: never skipped without a decision
    run_until_stopped(runner)
    assert failure_row(database_url)[0] == more[1]
    assert fussy_rows(database_url) == [positions[0], positions[2], decision.position, more[0]]
    with psycopg.connect(database_url) as conn:
        audit = conn.execute("SELECT actor, roles, type, data FROM audit_events WHERE position = %s",
                             (decision.position,)).fetchone()
    actor, roles, event_type, data = audit
    assert (actor, roles, event_type) == ("ops-1", ["operator"], "ProjectionSkip.Decided")
    assert data["projection"] == "fussy" and data["position"] == positions[1]
    assert data["event_type"] == "Partner.Applied" and data["reason"].endswith("ticket 42")
    assert data["decided_by"] == "ops-1" and data["event_id"]


def skip_interrupted_after_its_event(app, monkeypatch, position):
    """The decision's event is appended, then the operator's process dies before the stop's
    transaction commits (here: an error where the index is written)."""
    class Died(Exception):
        pass

    def die(self, decision_id):
        raise Died

    with monkeypatch.context() as patch:
        patch.setattr(projecting.HeldStop, "pass_over", die)
        with as_("ops-1", "operator"), pytest.raises(Died):
            projecting.skip(app, "fussy", position, "bad data")
    return app.get(ProjectionSkip, ProjectionSkip.create_id("fussy", position))


def test_a_skip_interrupted_after_its_event_is_completed_by_running_it_again(app, database_url, fussy, monkeypatch):
    positions = partners(app, "A", POISON)
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    first = skip_interrupted_after_its_event(app, monkeypatch, positions[1])
    assert failure_row(database_url)[0] == positions[1], "the interruption rolled the stop's change back"
    with as_("ops-1", "operator"):
        again = projecting.skip(app, "fussy", positions[1], "bad data")
    assert again.replayed and again.id == first.id
    with psycopg.connect(database_url) as conn:
        decisions = conn.execute("SELECT count(*) FROM events WHERE topic LIKE %s",
                                 ("%ProjectionSkip.Decided",)).fetchone()[0]
    assert decisions == 1
    runner.catch_up_all()
    assert fussy_rows(database_url) == [positions[0], again.position]


def test_a_worker_finds_a_skip_whose_index_was_not_written(app, database_url, fussy, monkeypatch):
    """The operator's process died after recording the decision, and the index was lost (a
    restore): the worker, stopping at the event again, finds the decision in the log and
    honours it."""
    positions = partners(app, "A", POISON)
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    decided = skip_interrupted_after_its_event(app, monkeypatch, positions[1])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM projection_failures")
    with pytest.raises(ValueError):
        runner.catch_up_all()  # stops at the event, finds the decision
    assert failure_row(database_url) is None
    runner.catch_up_all()
    assert fussy_rows(database_url) == [positions[0], positions_of(database_url, decided.id)[0]]


def test_a_retry_after_an_interrupted_skip_completes_the_skip_rather_than_contradict_it(app, database_url, fussy,
                                                                                      monkeypatch):
    """The log says the event was skipped: a retry, even after a fix, must not then apply it."""
    positions = partners(app, "A", POISON)
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    decided = skip_interrupted_after_its_event(app, monkeypatch, positions[1])
    fussy.fixed = True
    with as_("ops-2", "operator"):
        _, ordered = projecting.retry(app, "fussy")
    assert ordered.extra["skip_decision"] == decided.id
    runner.catch_up_all()
    assert positions[1] not in fussy_rows(database_url)
    assert app.get(ProjectionRetry, ordered.id).skip_decision == decided.id


def test_a_decision_is_one_per_read_model_and_position(app):
    with as_("ops-1", "operator"):
        skip = ProjectionSkip.decide(projection="fussy", position=3, event_id=ProjectionSkip.create_id("x", 1),
                                     event_type="Partner.Applied", reason="r", session_user="postgres",
                                     os_user="ops", host="h")
    assert skip.id == ProjectionSkip.create_id("fussy", 3) != ProjectionSkip.create_id("fussy", 4)


def test_database_trouble_is_not_counted_against_the_events(database_url):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(psycopg.OperationalError) as unreachable:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres", connect_timeout=2)
    assert is_transient(unreachable.value)
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error) as duplicate:
        conn.execute("CREATE TEMP TABLE t (k int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1), (1)")
    assert not is_transient(duplicate.value)
    assert not is_transient(ValueError("a read model's bug"))


def test_a_read_model_rebuilt_past_its_poison_event_runs_again(app, database_url, fussy):
    from channel_domain.store.rebuilding import Rebuilder

    positions = partners(app, "A", POISON, "C")
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    fussy.fixed = True
    Rebuilder(app, fussy).rebuild()  # the fixed read model, rebuilt from position 0
    later = partners(app, "D")
    assert runner.catch_up_all() == 1
    assert failure_row(database_url) is None
    assert fussy_rows(database_url) == [*positions, *later]


# Operator decisions are checked where they are taken, and attributed (docs/audit.md) --------


def positions_of(database_url, record_id) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM events WHERE originator_id = %s"
                                               " ORDER BY position", (record_id,))]


def decisions_written(database_url) -> tuple[int, int]:
    """Operator events in the log, and rows of the skip index."""
    with psycopg.connect(database_url) as conn:
        events = conn.execute("SELECT count(*) FROM events WHERE topic LIKE %s OR topic LIKE %s",
                              ("%ProjectionSkip.Decided", "%ProjectionRetry.Ordered")).fetchone()[0]
        index = conn.execute("SELECT count(*) FROM projection_skips").fetchone()[0]
    return events, index


def who_runs(database_url) -> tuple[str, str, str]:
    with psycopg.connect(database_url) as conn:
        session_user = conn.execute("SELECT session_user").fetchone()[0]
    return session_user, getpass.getuser(), socket.gethostname()


def test_a_skip_is_refused_unless_stopped_at_that_event_and_then_writes_nothing(app, database_url, fussy):
    positions = partners(app, "A", POISON, "C")
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    with as_("ops-1", "operator"), pytest.raises(SkipRefused, match="not stopped"):
        projecting.skip(app, "fussy", positions[1], "not stopped yet")
    run_until_stopped(runner)
    with as_("ops-1", "operator"), pytest.raises(SkipRefused, match=f"stopped at position {positions[1]}"):
        projecting.skip(app, "fussy", positions[2], "the wrong event")
    assert decisions_written(database_url) == (0, 0)
    assert failure_row(database_url)[0] == positions[1], "the stop is left as it was"


def test_a_skip_of_an_event_applied_since_the_stop_is_refused(app, database_url, fussy):
    """A stale stop: a rebuild with the fix applied the event, the worker has not yet noticed."""
    from channel_domain.store.rebuilding import Rebuilder

    positions = partners(app, "A", POISON)
    run_until_stopped(ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0))
    fussy.fixed = True
    Rebuilder(app, fussy).rebuild()
    assert failure_row(database_url)[0] == positions[1]
    with as_("ops-1", "operator"), pytest.raises(SkipRefused, match="has applied position"):
        projecting.skip(app, "fussy", positions[1], "stale")
    assert decisions_written(database_url) == (0, 0)


def test_the_library_method_refuses_a_skip_of_a_read_model_that_is_not_stopped(app, database_url):
    """Reviewer: `skip_projection_event` alone recorded "audit_events skipped position 1" for a
    running read model."""
    (position,) = partners(app, "A")
    with as_("ops-1", "operator"), pytest.raises(SkipRefused, match="audit_events is not stopped"):
        app.skip_projection_event(projection="audit_events", position=position, reason="why not")
    assert decisions_written(database_url) == (0, 0)


def test_a_skip_records_who_really_ran_it_and_refuses_a_padded_actor(app, database_url, fussy):
    positions = partners(app, "A", POISON)
    run_until_stopped(ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0))
    with as_(" ops-1", "operator"), pytest.raises(ValidationFailed, match="actor"):
        projecting.skip(app, "fussy", positions[1], "bad data")
    assert decisions_written(database_url) == (0, 0)
    with as_("ops-1", "operator"):
        decision = projecting.skip(app, "fussy", positions[1], "bad data")
    recorded = app.history(decision.id)[-1]
    assert (recorded.actor, recorded.roles) == ("ops-1", ["operator"])
    session_user, os_user, host = who_runs(database_url)
    assert (recorded.data["decided_by"], recorded.data["session_user"], recorded.data["os_user"],
            recorded.data["host"]) == ("ops-1", session_user, os_user, host)


def test_a_retry_is_an_audit_event_naming_who_ran_it(app, database_url, fussy):
    positions = partners(app, "A", POISON)
    runner = ProjectionRunner(app, [AuditTrail(), fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    stopped, _ = projecting.failure_of(app.event_recorder.datastore, "fussy")
    fussy.fixed = True
    with as_("ops-2", "operator"):
        cleared, ordered = projecting.retry(app, "fussy", "fixed in 1.4.2")
    runner.catch_up_all()
    with psycopg.connect(database_url) as conn:
        actor, roles, data = conn.execute("SELECT actor, roles, data FROM audit_events WHERE position = %s"
                                          " AND type = 'ProjectionRetry.Ordered'", (ordered.position,)).fetchone()
    assert (actor, roles) == ("ops-2", ["operator"])
    session_user, os_user, host = who_runs(database_url)
    assert data["projection"] == "fussy" and data["position"] == positions[1] == cleared.position
    assert (data["event_type"], data["error"], data["reason"]) == (
        "Partner.Applied", "ValueError: cannot handle 'Poison Shop'", "fixed in 1.4.2")
    assert (data["ordered_by"], data["session_user"], data["os_user"], data["host"]) == (
        "ops-2", session_user, os_user, host)
    assert data["event_id"] and data["since"] and data["skip_decision"] is None
    assert app.get(ProjectionRetry, ordered.id).since == stopped.since
    assert fussy_rows(database_url) == [*positions, ordered.position]


def test_a_retry_without_a_reason_is_recorded_too(app, database_url, fussy):
    partners(app, POISON)
    run_until_stopped(ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0))
    with as_("ops-2", "operator"):
        _, ordered = projecting.retry(app, "fussy")
    assert app.get(ProjectionRetry, ordered.id).reason is None
    assert decisions_written(database_url) == (1, 0)


def wait_until_waiting_for_a_lock(database_url, thread) -> None:
    """Until another session waits on a row lock of `projection_failures` (a bound for a hung
    test, not a measured figure)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not conn.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                               " AND query LIKE '%%FROM projection_failures%%')").fetchone()[0]:
            assert thread.is_alive() and time.monotonic() < deadline, "the other command did not wait"
            time.sleep(0.02)


def during_the_append(app, monkeypatch, meanwhile) -> None:
    """Run `meanwhile()` once, when the next command has appended its event but not yet
    committed what it decided."""
    append = app._commit

    def appended(*args, **kwargs):
        outcome = append(*args, **kwargs)
        monkeypatch.setattr(app, "_commit", append)
        meanwhile()
        return outcome

    monkeypatch.setattr(app, "_commit", appended)


def test_a_retry_and_a_fixed_worker_during_a_skip_cannot_apply_the_event_being_skipped(app, database_url, fussy,
                                                                                      monkeypatch):
    """Reviewer: a concurrent `retry` and a fixed worker applied P while the skip was being
    recorded, so the log said P was skipped though it was applied."""
    positions = partners(app, "A", POISON, "C")
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    fussy.fixed = True
    retried: list = []

    def retry_meanwhile():
        with as_("ops-2", "operator"):
            retried.append(projecting.retry(app, "fussy"))

    racer = threading.Thread(target=retry_meanwhile)

    def meanwhile():
        racer.start()
        wait_until_waiting_for_a_lock(database_url, racer)
        assert runner.catch_up_all() == 0, "the worker leaves a stopped read model alone"

    during_the_append(app, monkeypatch, meanwhile)
    with as_("ops-1", "operator"):
        decision = projecting.skip(app, "fussy", positions[1], "bad data")
    racer.join()
    assert retried == [None], "the retry waited for the skip, then found no stop to clear"
    runner.catch_up_all()
    assert fussy_rows(database_url) == [positions[0], positions[2], decision.position]
    assert decisions_written(database_url) == (1, 1)


def test_a_skip_during_a_retry_waits_and_is_then_refused(app, database_url, fussy, monkeypatch):
    positions = partners(app, "A", POISON)
    runner = ProjectionRunner(app, [fussy], attempts=1, retry_pause_s=0)
    run_until_stopped(runner)
    fussy.fixed = True
    refused: list = []

    def skip_meanwhile():
        with as_("ops-1", "operator"):
            try:
                projecting.skip(app, "fussy", positions[1], "bad data")
            except SkipRefused as error:
                refused.append(str(error))

    racer = threading.Thread(target=skip_meanwhile)

    def meanwhile():
        racer.start()
        wait_until_waiting_for_a_lock(database_url, racer)

    during_the_append(app, monkeypatch, meanwhile)
    with as_("ops-2", "operator"):
        projecting.retry(app, "fussy")
    racer.join()
    assert refused == ["read model fussy is not stopped: only the event a read model is stopped at is skipped"]
    runner.catch_up_all()
    assert positions[1] in fussy_rows(database_url)
    assert decisions_written(database_url) == (1, 0), "the retry's event alone"
class NulWriter:
    """A read model whose bug psycopg itself refuses, before anything reaches the server
    (no SQLSTATE): a NUL in a text value for a partner named POISON."""

    name = "nul_writer"
    tables = ("nul_rows",)

    def apply(self, cursor, events):
        for notification, event in events:
            name = event.name + "\x00" if isinstance(event, Partner.Applied) and event.name == POISON else "ok"
            cursor.execute("INSERT INTO nul_rows (position, name) VALUES (%s, %s)", (notification.id, name))


def test_an_error_psycopg_raises_itself_stops_the_read_model_rather_than_retrying_for_ever(app, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE nul_rows (position bigint PRIMARY KEY, name text)")
    positions = partners(app, "A", POISON, "C")
    runner = ProjectionRunner(app, [NulWriter()], attempts=2, retry_pause_s=0)
    for _ in range(runner.attempts):
        with pytest.raises(Exception, match="NUL"):
            runner.catch_up_all()
    position, event_type, error, attempts, _ = failure_row(database_url, "nul_writer")
    assert (position, event_type, attempts) == (positions[1], "Partner.Applied", 2)
    assert "NUL" in error
    assert runner.checkpoint("nul_writer") == positions[0]


def test_client_side_psycopg_errors_are_not_database_trouble(database_url):
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.DataError) as nul:
            conn.execute("SELECT %s::text", ("a\x00b",))
        assert nul.value.sqlstate is None and not is_transient(nul.value)
        conn.rollback()
        with pytest.raises(psycopg.ProgrammingError) as placeholders:
            conn.execute("SELECT %s, %s", (1,))
        assert placeholders.value.sqlstate is None and not is_transient(placeholders.value)
    closed = psycopg.connect(database_url)
    closed.close()
    with pytest.raises(psycopg.OperationalError) as gone:
        closed.execute("SELECT 1")
    assert is_transient(gone.value)


@pytest.mark.foreign_events("an event whose topic names no class, on purpose")
def test_an_event_that_cannot_be_decoded_stops_every_read_model_at_it(app, database_url, fussy):
    positions = partners(app, "A", "B", "C")
    tamper(database_url, ("UPDATE events SET topic = %s WHERE position = %s",
                          ("channel_domain.nowhere:Gone.Applied", positions[1])))
    runner = ProjectionRunner(app, [AuditTrail(), fussy], attempts=2, retry_pause_s=0)
    for _ in range(runner.attempts):
        with pytest.raises(Exception, match="channel_domain.nowhere"):
            runner.catch_up_all()
    assert runner.catch_up_all() == 0, "stopped: no more attempts"
    for name in ("audit_events", "fussy"):
        position, event_type, error, attempts, traceback = failure_row(database_url, name)
        assert (position, event_type, attempts) == (positions[1], "Gone.Applied", 2)
        assert "cannot be decoded" in error and "channel_domain.nowhere" in error
        assert "to_domain_event" in traceback
        assert runner.checkpoint(name) == positions[0], "what precedes it is committed"
    assert fussy_rows(database_url) == positions[:1]
