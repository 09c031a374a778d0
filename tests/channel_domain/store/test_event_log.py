"""One global order, read safely: a tailing reader sees every committed event exactly once
and in position order, although writers commit out of order and some roll back.

A trigger on the test database sleeps a random while *after* each event's position is
drawn and *before* its transaction commits, and aborts some writes outright — the two ways a
position stays invisible. A reader that simply follows `position > checkpoint` is run
alongside as a control: it skips events, which shows the hazard is real in this setup.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from eventsourcing.persistence import Notification

from channel_domain.application import ChannelDepartment
from channel_domain.errors import DomainError
from channel_domain.store.log import EventLog
from tests.channel_domain.helpers import as_

WRITERS = 8
EVENTS_PER_WRITER = 40
ROLLBACK_MARKER = "roll-me-back"


def write_partners(app: ChannelDepartment, writer: int, start: threading.Barrier) -> None:
    """One writer's share: EVENTS_PER_WRITER partners, every seventh rolled back by the trigger
    after it drew its position (the late-committing database's injected rollback)."""
    start.wait()
    for n in range(EVENTS_PER_WRITER):
        name = ROLLBACK_MARKER if n % 7 == 3 else f"writer {writer} #{n}"
        try:
            with as_(f"spec-{writer}", "channel_specialist"):
                app.register_partner(kind="retailer", name=name)
        except Exception as error:  # the injected rollbacks
            assert "injected rollback" in str(error)


@pytest.fixture
def late_committing_database(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE FUNCTION delay_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_sleep(random() * 0.03);
                IF position('{ROLLBACK_MARKER}' in convert_from(NEW.state, 'UTF8')) > 0 THEN
                    RAISE EXCEPTION 'injected rollback';
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER delay_commit AFTER INSERT ON events
                FOR EACH ROW EXECUTE FUNCTION delay_commit();
            """
        )
    return database_url


class NaiveReader:
    """What a reader without the transaction-id horizon does: trust the highest position."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.position = 0

    def read(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT position FROM events WHERE position > %s ORDER BY position", (self.position,)
        ).fetchall()
        if rows:
            self.position = rows[-1][0]
        return [row[0] for row in rows]


def read_until_settled(log: EventLog) -> list[Notification]:
    """Everything the reader can give once no transaction running now can fill its gap.

    A fence waits for every transaction that was running on the server when it was drawn —
    those of other databases too (transaction ids are server-wide), so on a shared server
    one read may come back empty at a gap a moment after its writer ended."""
    found: list[Notification] = []
    while True:
        batch = log.read()
        found.extend(batch)
        if not batch and not log.held_at_gap:
            return found
        if not batch:
            time.sleep(0.005)


# One process's writers share few transactions (store/group_commit.py: two groups at a time),
# so they commit out of order far less among themselves: "alone" writes each append in a
# transaction of its own, as the processes of a deployment do beside one another, and keeps
# the naive reader's control; "grouped" is one process's way, and puts the injected rollbacks
# inside groups, each of which must fail alone.
GROUPING = {"alone": "1", "grouped": "64"}


@pytest.mark.parametrize("grouping", GROUPING)
def test_tailing_reader_sees_every_event_once_in_order_despite_late_commits(late_committing_database, grouping):
    app = ChannelDepartment(late_committing_database, env={"POSTGRES_POOL_SIZE": str(WRITERS + 2),
                                                           "GROUP_COMMIT_MAX_COMMANDS": GROUPING[grouping]})
    log = EventLog(app.event_recorder)
    naive = NaiveReader(late_committing_database)
    seen: list[int] = []
    naively_seen: list[int] = []
    writers_done = threading.Event()
    start = threading.Barrier(WRITERS + 1)

    def read() -> None:
        start.wait()
        while True:
            finished = writers_done.is_set()
            batch = log.read(limit=50)
            seen.extend(n.id for n in batch)
            naively_seen.extend(naive.read())
            if finished and not batch and not log.held_at_gap:
                # Caught up after the last writer ended. (Held at a gap, it may be waiting
                # for any transaction on the server, another database's included.)
                break
            time.sleep(0.001)

    threads = [threading.Thread(target=write_partners, args=(app, w, start)) for w in range(WRITERS)]
    reader = threading.Thread(target=read)
    for thread in [*threads, reader]:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    reader.join(timeout=60)
    seen.extend(n.id for n in log.read(limit=10_000))
    naively_seen.extend(naive.read())

    with psycopg.connect(late_committing_database) as conn:
        committed = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
        highest_drawn = conn.execute("SELECT last_value FROM events_position_seq").fetchone()[0]
    app.close()

    rolled_back = WRITERS * len([n for n in range(EVENTS_PER_WRITER) if n % 7 == 3])
    assert len(committed) == WRITERS * EVENTS_PER_WRITER - rolled_back
    assert highest_drawn > len(committed), "aborted writes must have left gaps"
    missing, extra = sorted(set(committed) - set(seen)), len(seen) - len(set(seen))
    assert seen == committed, f"reader missed {missing[:10]}, duplicated {extra}"
    if grouping == "grouped":
        assert app.event_recorder.group_commit.stats.largest > 1, "the writers' appends should have met in groups"
        return
    missed = set(committed) - set(naively_seen)
    print(f"naive reader missed {len(missed)} of {len(committed)} events; EventLog missed 0")
    assert missed, "control: a reader without the horizon should have skipped late commits"


def test_reader_passes_a_permanent_gap_once_its_writer_has_rolled_back(app, database_url):
    with as_("hr-1", "hr"):
        app.hire_employee(name="first", role="sales_rep", hired_on="2026-01-05")
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT nextval('events_position_seq')")  # a position drawn, then abandoned
        conn.rollback()
    with as_("hr-1", "hr"):
        app.hire_employee(name="third", role="sales_rep", hired_on="2026-01-05")
    log = EventLog(app.event_recorder)
    assert [n.id for n in read_until_settled(log)] == [1, 3]


def test_reader_waits_at_a_gap_while_its_writer_is_still_running(app, database_url):
    with as_("hr-1", "hr"):
        app.hire_employee(name="first", role="sales_rep", hired_on="2026-01-05")
    slow = psycopg.connect(database_url)
    try:
        slow.execute("SELECT pg_current_xact_id()")
        slow.execute("SELECT nextval('events_position_seq')")  # position 2, not yet committed
        with as_("hr-1", "hr"):
            app.hire_employee(name="third", role="sales_rep", hired_on="2026-01-05")
        log = EventLog(app.event_recorder)
        assert [n.id for n in log.read()] == [1], "must not pass position 2 while its writer runs"
        assert log.read() == [] and log.held_at_gap
    finally:
        slow.rollback()
        slow.close()
    assert [n.id for n in read_until_settled(log)] == [3]


def test_failed_command_writes_nothing(app):
    with as_("hr-1", "hr"), pytest.raises(DomainError):
        app.hire_employee(name="x", role="astronaut", hired_on="2026-01-05")
    assert EventLog(app.event_recorder).read() == []
