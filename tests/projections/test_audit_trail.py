"""The audit trail read model, applied exactly once with its checkpoint."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from channel_domain.store.projecting import ProjectionRunner, run_in_processes
from projections import AuditTrail, PartnerActivity, all_projections
from projections.audit import event_id
from tests.channel_domain.helpers import as_


def audit_rows(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT position, event_id, stream_id, stream_type, version, type, actor, roles, correlation_id,"
            " effective_on, data FROM audit_events ORDER BY position"
        ).fetchall()


def test_one_row_per_event_with_who_what_when_why(app, database_url):
    with as_("hr-1", "hr", correlation_id="req-7"):
        hired = app.hire_employee(name="Sun Li", role="sales_rep", hired_on="2026-01-05")
    with as_("spec-1", "channel_specialist"):
        partner = app.register_partner(kind="retailer", name="Corner Shop")
    runner = ProjectionRunner(app, [AuditTrail()])
    assert runner.catch_up(runner.projections[0]) == 2
    first, second = audit_rows(database_url)
    assert first[:9] == (1, event_id(hired.id, 1), hired.id, "Employee", 1, "Employee.Hired", "hr-1", ["hr"], "req-7")
    assert str(first[9]) == "2026-01-05"
    assert first[10]["role"] == "sales_rep" and first[10]["name"].startswith("pii:v1:"), "personal data stays sealed"
    assert second[2:6] == (partner.id, "Partner", 1, "Partner.Applied")
    assert runner.checkpoint("audit_events") == 2


def test_applying_again_adds_nothing(app, database_url):
    with as_("spec-1", "channel_specialist"):
        app.register_partner(kind="retailer", name="Corner Shop")
    runner = ProjectionRunner(app, [AuditTrail()])
    runner.catch_up(runner.projections[0])
    fresh_runner = ProjectionRunner(app, [AuditTrail()])  # a restarted worker
    assert fresh_runner.catch_up(fresh_runner.projections[0]) == 0
    with as_("spec-1", "channel_specialist"):
        app.register_partner(kind="retailer", name="Second Shop")
    assert fresh_runner.catch_up(fresh_runner.projections[0]) == 1
    assert [row[0] for row in audit_rows(database_url)] == [1, 2]


def test_a_failing_batch_writes_neither_rows_nor_checkpoint(app, database_url):
    class Exploding(AuditTrail):
        def apply(self, cursor, events):
            super().apply(cursor, events)
            raise RuntimeError("crash after writing rows")

    with as_("spec-1", "channel_specialist"):
        app.register_partner(kind="retailer", name="Corner Shop")
    runner = ProjectionRunner(app, [Exploding()])
    try:
        runner.catch_up(runner.projections[0])
    except RuntimeError:
        pass
    assert audit_rows(database_url) == []
    assert runner.checkpoint("audit_events") == 0


def test_a_worker_waits_while_another_holds_the_projection_and_takes_over_when_it_dies(app, database_url):
    with as_("spec-1", "channel_specialist"):
        for n in range(5):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    other_worker = psycopg.connect(database_url, autocommit=True)
    other_worker.execute("SELECT pg_advisory_lock(hashtextextended('projection:audit_events', 0))")
    runner = ProjectionRunner(app, [AuditTrail()])
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), kwargs={"idle_wait": 0.01})
    thread.start()
    try:
        stop.wait(0.3)
        assert runner.checkpoint("audit_events") == 0, "must not run while another worker holds it"
        other_worker.close()  # the other worker dies: PostgreSQL releases its lock
        for _ in range(300):
            if runner.checkpoint("audit_events") == 5:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert [row[0] for row in audit_rows(database_url)] == [1, 2, 3, 4, 5]


def test_projections_at_one_checkpoint_share_each_batch_and_fail_alone(app, database_url):
    class Exploding:
        name, tables = "exploding", ()

        def apply(self, cursor, events):
            raise RuntimeError("this read model is broken")

    decoded = []
    decode = app.mapper.to_domain_event
    app.mapper.to_domain_event = lambda stored: decoded.append(stored) or decode(stored)
    with as_("spec-1", "channel_specialist"):
        for n in range(3):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    audit, activity = AuditTrail(), PartnerActivity()
    runner = ProjectionRunner(app, [audit, Exploding(), activity], batch_size=2)
    with pytest.raises(RuntimeError, match="broken"):
        runner.catch_up_all()
    assert len(decoded) == 3  # once per event, not once per read model
    assert [row[0] for row in audit_rows(database_url)] == [1, 2, 3]  # the others went on
    assert runner.checkpoint("partner_activity") == 3 and runner.checkpoint("exploding") == 0


def test_read_models_shared_out_among_processes_all_reach_the_head(app, database_url):
    with as_("spec-1", "channel_specialist"):
        for n in range(40):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    head = app.event_recorder.max_notification_id()
    stop = threading.Event()
    running = threading.Thread(target=run_in_processes, args=(app, all_projections(), 2, stop))
    running.start()
    try:
        deadline = time.monotonic() + 60
        while {row[1] for row in checkpoints(database_url)} != {head} or len(checkpoints(database_url)) < 6:
            assert time.monotonic() < deadline, checkpoints(database_url)
            time.sleep(0.1)
    finally:
        stop.set()
        running.join()
    assert [row[0] for row in audit_rows(database_url)] == list(range(1, head + 1))


def checkpoints(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT name, position FROM projection_checkpoints").fetchall()
