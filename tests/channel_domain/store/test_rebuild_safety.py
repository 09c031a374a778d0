"""A rebuild beside other sessions: one rebuild at a time, a switch that never leaves readers
queued behind it for long, and any trigger a DBA wrote carried through the switch."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.store.projecting import ProjectionRunner
from channel_domain.store.rebuilding import Rebuilder, RebuildInProgress, SwitchBlocked
from projections import AuditTrail
from tests.channel_domain.helpers import as_

WAIT_S = 120  # for a thread to finish: far beyond what it needs, short of hanging the suite


def record_and_project(app, partners: int = 30) -> None:
    with as_("spec-1", "channel_specialist"):
        for n in range(partners):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    runner = ProjectionRunner(app, [AuditTrail()])
    runner.catch_up(runner.projections[0])


def audit_positions(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM audit_events ORDER BY position")]


def shadow_left(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT to_regnamespace('rebuild_shadow') IS NOT NULL").fetchone()[0]


class Rebuilding(threading.Thread):
    """A rebuild in a thread; `paused` holds it at its first step of progress until released."""

    def __init__(self, rebuilder: Rebuilder, *, pause: bool = False) -> None:
        super().__init__(daemon=True)
        self.rebuilder, self.pause = rebuilder, pause
        self.started_building, self.release = threading.Event(), threading.Event()
        self.report, self.error = None, None

    def progress(self, _position: int) -> None:
        self.started_building.set()
        if self.pause:
            self.release.wait(WAIT_S)

    def run(self) -> None:
        try:
            self.report = self.rebuilder.rebuild(self.progress)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            self.error = error

    def outcome(self):
        self.join(WAIT_S)
        assert not self.is_alive(), "the rebuild never finished"
        if self.error is not None:
            raise self.error
        return self.report


def test_a_second_rebuild_is_refused_at_once_and_the_first_switches(app, database_url, monkeypatch):
    record_and_project(app)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_events WHERE position % 3 = 0")  # gone wrong: the rebuild mends it
    first = Rebuilding(Rebuilder(app, AuditTrail(), batch_size=5), pause=True)
    first.start()
    try:
        assert first.started_building.wait(WAIT_S)
        # Before the lock, this second rebuild dropped the first one's shadow tables.
        with pytest.raises(RebuildInProgress, match="another rebuild is running"):
            Rebuilder(app, AuditTrail()).rebuild()
        monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
        refused = CliRunner().invoke(cli, ["rebuild", "audit_events", "--processes", "1"])
        assert refused.exit_code == 2, refused.output
        assert "another rebuild is running" in refused.output
        assert shadow_left(database_url)  # the first one's, untouched
    finally:
        first.release.set()
    report = first.outcome()
    head = app.event_recorder.max_notification_id()
    assert report.position == head and audit_positions(database_url) == list(range(1, head + 1))
    assert not shadow_left(database_url)
    Rebuilder(app, AuditTrail()).rebuild()  # the lock was let go


def hold_a_long_read(database_url: str) -> psycopg.Connection:
    """A BI query's transaction, left open on a read-model table."""
    reader = psycopg.connect(database_url, application_name="bi-dashboard")
    reader.execute("SELECT count(*) FROM audit_events").fetchone()
    return reader


def test_a_switch_behind_a_long_read_gives_up_clearly_and_changes_nothing(app, database_url):
    record_and_project(app)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_events WHERE position % 3 = 0")
    before = audit_positions(database_url)
    reader = hold_a_long_read(database_url)
    try:
        rebuilding = Rebuilding(Rebuilder(app, AuditTrail(), switch_lock_timeout_s=0.2, switch_attempts=2))
        rebuilding.start()
        with pytest.raises(SwitchBlocked, match=rf"pid {reader.info.backend_pid} \(\w+, bi-dashboard"):
            rebuilding.outcome()
    finally:
        reader.close()
    assert audit_positions(database_url) == before
    assert not shadow_left(database_url)


def test_a_switch_behind_a_long_read_tries_again_and_switches_once_it_ends(app, database_url, caplog):
    record_and_project(app)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_events WHERE position % 3 = 0")
    reader = hold_a_long_read(database_url)
    try:
        with caplog.at_level(logging.WARNING, logger="channel_domain.store.rebuilding"):
            rebuilding = Rebuilding(Rebuilder(app, AuditTrail(), switch_lock_timeout_s=0.2, switch_attempts=1000))
            rebuilding.start()
            waited = threading.Event()
            for _ in range(WAIT_S * 10):
                if any("trying again" in record.getMessage() for record in caplog.records):
                    waited.set()
                    break
                if not rebuilding.is_alive():
                    break
                rebuilding.join(0.1)
            assert waited.is_set(), "the switch never gave way to the reader"
            # While the switch tries again, readers get through between its attempts.
            with psycopg.connect(database_url) as other:
                assert other.execute("SELECT count(*) FROM audit_events").fetchone()[0] > 0
    finally:
        reader.close()
    report = rebuilding.outcome()
    head = app.event_recorder.max_notification_id()
    assert report.position == head and audit_positions(database_url) == list(range(1, head + 1))


def test_a_trigger_with_braces_in_its_definition_is_carried(app, database_url):
    record_and_project(app)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION dba_pass() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
        conn.execute("CREATE TRIGGER dba_not_only_a BEFORE INSERT ON audit_events FOR EACH ROW"
                     " WHEN (NEW.roles <> '{a}') EXECUTE FUNCTION dba_pass()")
        definition = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'dba_not_only_a'"
                                  ).fetchone()[0]
        live = conn.execute("SELECT 'audit_events'::regclass::oid").fetchone()[0]

    Rebuilder(app, AuditTrail()).rebuild()

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 'audit_events'::regclass::oid").fetchone()[0] != live  # switched
        assert conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'dba_not_only_a'"
                            ).fetchone()[0] == definition
