"""Where an export ends, and what it waits for before it starts.

The end must be final (no late commit below it), but only a missing position can still be
filled, and only by a transaction of this database: an idle transaction anywhere else on the
server, or one here when nothing is missing, must not hold an export up. A writer that holds a
missing position still does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from channel_domain.store import integrity
from channel_domain.store.log import WritersStillOpen, settled_head
from channel_domain.store.projecting import ProjectionRunner
from projections.seals import AuditSeals
from tests.channel_domain.helpers import as_

HOLD = 7_042_001  # the advisory lock a held writer waits on
HELD_MARKER = "held-writer"


@contextmanager
def idle_transaction(url: str) -> Iterator[int]:
    """An open transaction that has a transaction id and does nothing more, as a DBA's psql
    session left after `SELECT pg_current_xact_id()`."""
    with psycopg.connect(url) as conn:
        xid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
        try:
            yield xid
        finally:
            conn.rollback()


def another_database(database_url: str) -> str:
    return make_conninfo(database_url, dbname="postgres")


def write(app, name: str) -> None:
    with as_("spec-1", "channel_specialist"):
        app.register_partner(kind="retailer", name=name)


def leave_a_gap(database_url: str) -> None:
    """A position drawn by a writer that then rolled back: missing for ever."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT pg_current_xact_id(), nextval('events_position_seq')")
        conn.rollback()


def seal(app, database_url: str) -> None:
    """Seals every event; at a gap the seals' reader waits for every transaction running on
    the server (other databases' too), so it may take a few rounds."""
    runner = ProjectionRunner(app, [AuditSeals()])
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute("SELECT coalesce(max(position), 0) FROM event_seals").fetchone()[0] < head_of(app):
            runner.catch_up(runner.projections[0])
            time.sleep(0.01)


def positions(pages: list[str]) -> list[int]:
    return [json.loads(line)["position"] for line in "".join(pages).splitlines()[:-1]]


def head_of(app) -> int:
    return app.event_recorder.max_notification_id()


def test_an_idle_transaction_in_another_database_does_not_hold_up_an_export(app, database_url):
    write(app, "Shop")
    with idle_transaction(another_database(database_url)):
        pages = list(integrity.export(app.event_recorder.datastore, settle_s=5))
    assert positions(pages) == list(range(1, head_of(app) + 1))
    assert "checkpoint" in pages[-1]


def test_a_missing_position_is_not_waited_for_on_account_of_another_database(app, database_url):
    write(app, "Shop")
    leave_a_gap(database_url)
    write(app, "Kiosk")
    with idle_transaction(another_database(database_url)):
        bounds = integrity.export_bounds(app.event_recorder.datastore, settle_s=5)
    assert bounds.head == head_of(app)


def test_an_idle_transaction_in_this_database_is_not_waited_for_when_nothing_is_missing(app, database_url):
    write(app, "Shop")
    with idle_transaction(database_url):
        bounds = integrity.export_bounds(app.event_recorder.datastore, settle_s=5)
    assert bounds.head == head_of(app)


def test_a_missing_position_below_the_last_seal_is_final(app, database_url):
    write(app, "Shop")
    leave_a_gap(database_url)
    write(app, "Kiosk")
    with idle_transaction(database_url) as xid:
        # Above the seals, a transaction of this database could be the gap's writer: waited for.
        with pytest.raises(integrity.ExportUnsettled) as unsettled:
            integrity.export_bounds(app.event_recorder.datastore, settle_s=0.2)
    assert str(xid) in str(unsettled.value) and "could still write" in str(unsettled.value)
    seal(app, database_url)
    with idle_transaction(database_url):
        bounds = integrity.export_bounds(app.event_recorder.datastore, settle_s=5)
    assert (bounds.head, bounds.sealed_through) == (head_of(app), head_of(app))


@pytest.fixture
def held_writer(app, database_url):
    """A writer of this database stopped after drawing its position, before committing, until
    the test lets it go; yields (release, its transaction id)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION hold_writer() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF position('{HELD_MARKER}' in convert_from(NEW.state, 'UTF8')) > 0 THEN
                    PERFORM pg_advisory_xact_lock_shared({HOLD});
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER hold_writer AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION hold_writer();
        """)
    gate = psycopg.connect(database_url, autocommit=True)
    gate.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            write(app, HELD_MARKER)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    writer = threading.Thread(target=run)
    writer.start()
    xid = None
    while xid is None:
        row = gate.execute("SELECT backend_xid::text::bigint FROM pg_stat_activity"
                           " WHERE datname = current_database() AND wait_event = 'advisory'").fetchone()
        xid = row[0] if row else None
        time.sleep(0.01)

    def release() -> None:
        gate.execute("SELECT pg_advisory_unlock(%s)", (HOLD,))
        writer.join(timeout=60)
        assert not failures, failures

    try:
        yield release, xid
    finally:
        gate.close()
        writer.join(timeout=60)


def test_a_writer_holding_a_missing_position_holds_the_export_until_it_ends(app, database_url, held_writer):
    release, xid = held_writer
    write(app, "Shop")  # commits above the held position: a gap only that writer can fill
    with idle_transaction(another_database(database_url)):
        with pytest.raises(integrity.ExportUnsettled) as unsettled:
            integrity.export_bounds(app.event_recorder.datastore, settle_s=0.2)
    message = str(unsettled.value)
    assert f"backend_xid {xid}" in message and "1 position(s)" in message and "0.2 s" in message

    exported: list[str] = []
    exporter = threading.Thread(target=lambda: exported.extend(integrity.export(app.event_recorder.datastore)))
    exporter.start()
    release()
    exporter.join(timeout=60)
    with psycopg.connect(database_url) as conn:
        held = conn.execute("SELECT position FROM events WHERE convert_from(state, 'UTF8') LIKE %s",
                            (f"%{HELD_MARKER}%",)).fetchone()[0]
    assert held in positions(exported) and positions(exported) == list(range(1, head_of(app) + 1))


def test_the_settled_head_waits_for_a_writer_that_could_still_commit_below_it(app, database_url, held_writer):
    # "From the head" (a stream without `after`, a webhook's default start) must not start
    # past a position whose writer has not committed yet: that event would never be sent.
    release, xid = held_writer
    write(app, "Shop")  # visible above the held writer's position
    with pytest.raises(WritersStillOpen) as still:
        settled_head(app.event_recorder, wait_s=0.2)
    assert f"backend_xid {xid}" in str(still.value)

    heads: list[int] = []
    waiter = threading.Thread(target=lambda: heads.append(settled_head(app.event_recorder, wait_s=30)))
    waiter.start()
    time.sleep(0.2)
    assert not heads, "answered while the held writer could still commit below the head"
    release()
    waiter.join(timeout=60)
    with psycopg.connect(database_url) as conn:
        present = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
    assert heads and heads[0] >= max(present[:-1]) and set(range(1, heads[0] + 1)) <= set(present)


def test_the_settled_head_answers_at_once_when_no_writer_is_running(app, database_url):
    write(app, "Shop")
    with idle_transaction(another_database(database_url)):
        assert settled_head(app.event_recorder, wait_s=5) == head_of(app)
