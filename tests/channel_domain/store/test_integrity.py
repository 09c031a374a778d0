"""Tamper evidence: each kind of tampering done directly in PostgreSQL — as someone with the
database's owner rights would — is caught at the position where it was done."""

from __future__ import annotations

import threading

import psycopg
import pytest

from channel_domain.store.integrity import GENESIS, event_hash, utc_text, verify
from channel_domain.store.projecting import ProjectionRunner
from projections import AuditSeals
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract


@pytest.fixture
def history(app):
    """Two contracts with ten sales each, interleaved, everything sealed."""
    contracts = [signed_contract(app, partner(app, "retailer")) for _ in range(2)]
    with as_("erp", "integration"):
        for n in range(10):
            for contract in contracts:
                app.record_sale(contract, order_id=f"O-{n}", amount="100.00", sold_on="2026-03-01")
    seal(app)
    return contracts


def seal(app) -> None:
    runner = ProjectionRunner(app, [AuditSeals()], batch_size=7)
    runner.catch_up(runner.projections[0])


def tamper(database_url: str, *statements: tuple) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        try:
            for statement in statements:
                conn.execute(*statement)
        finally:
            conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


def positions_of(database_url: str, stream) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute(
            "SELECT position FROM events WHERE originator_id = %s ORDER BY originator_version", (stream,))]


def test_an_untouched_log_verifies_and_names_its_head(app, database_url, history):
    result = verify(app.event_recorder.datastore)
    head = app.event_recorder.max_notification_id()
    assert (result.ok, result.verified_through, result.events, result.unsealed) == (True, head, head, 0)
    with psycopg.connect(database_url) as conn:
        assert result.head_hash == conn.execute(
            "SELECT encode(chain, 'hex') FROM event_seals WHERE position = %s", (head,)).fetchone()[0]
    with as_("erp", "integration"):  # written after the last seal: checked by its stream chain only
        app.record_sale(history[0], order_id="late", amount="1.00", sold_on="2026-03-02")
    assert verify(app.event_recorder.datastore).unsealed == 1


def test_hashes_are_chained_per_stream_by_the_writing_transaction(app, database_url, history):
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT position, originator_id, originator_version, topic, recorded_at, effective_on, state, hash,"
            " prev_hash FROM events WHERE originator_id = %s ORDER BY originator_version", (history[0],)).fetchall()
    previous = GENESIS
    for position, stream, version, topic, recorded_at, effective_on, state, hash_, prev_hash in rows:
        assert prev_hash == previous
        assert hash_ == event_hash(previous, position, stream, version, topic, utc_text(recorded_at),
                                   effective_on.isoformat() if effective_on else "", state)
        previous = hash_


@pytest.mark.foreign_events("a tampered event: the schema check finds it too, verify is under test here")
def test_a_flipped_byte_is_caught_at_its_position(app, database_url, history):
    target = positions_of(database_url, history[1])[6]
    tamper(database_url, ("UPDATE events SET state = set_byte(state, 20, get_byte(state, 20) # 1) WHERE position = %s",
                          (target,)))
    result = verify(app.event_recorder.datastore)
    assert (result.ok, result.first_bad_position, result.verified_through) == (False, target, target - 1)
    assert "altered" in result.problem


def test_a_deleted_event_is_caught_at_its_position(app, database_url, history):
    target = positions_of(database_url, history[0])[5]
    tamper(database_url, ("DELETE FROM events WHERE position = %s", (target,)))
    result = verify(app.event_recorder.datastore)
    assert (result.ok, result.first_bad_position) == (False, target)
    assert "missing" in result.problem


def test_two_swapped_events_are_caught_at_the_first_of_them(app, database_url, history):
    first, second = positions_of(database_url, history[0])[4], positions_of(database_url, history[1])[7]
    columns = "originator_id, originator_version, topic, state, recorded_at, effective_on, tx_id, hash, prev_hash"
    tamper(
        database_url,
        (f"CREATE TEMP TABLE swapped AS SELECT position, {columns} FROM events WHERE position IN (%s, %s)",
         (first, second)),
        ("DELETE FROM events WHERE position IN (%s, %s)", (first, second)),
        (f"INSERT INTO events (position, {columns}) OVERRIDING SYSTEM VALUE"
         f" SELECT %s + %s - position, {columns} FROM swapped", (first, second)),
    )
    result = verify(app.event_recorder.datastore)
    assert (result.ok, result.first_bad_position) == (False, first)


def test_a_truncated_stream_tail_is_caught_where_the_tail_began(app, database_url, history):
    tail = positions_of(database_url, history[0])[-3:]
    tamper(database_url, ("DELETE FROM events WHERE position = ANY(%s)", (tail,)))
    result = verify(app.event_recorder.datastore)
    assert (result.ok, result.first_bad_position) == (False, tail[0])


def test_an_altered_event_with_its_hashes_recomputed_is_caught_by_the_seals(app, database_url, history):
    """The attacker knows the hash function: they change an amount and re-chain the stream."""
    stream = history[1]
    target = positions_of(database_url, stream)[6]  # its third sale
    rechain = ("UPDATE events e SET prev_hash = p.hash, hash = event_hash(p.hash, e.position, e.originator_id,"
               " e.originator_version, e.topic, e.recorded_at, e.effective_on, e.state)"
               " FROM events p WHERE p.originator_id = e.originator_id AND p.originator_version = e.originator_version - 1"
               " AND e.originator_id = %s AND e.originator_version = %s")
    with psycopg.connect(database_url) as conn:
        versions = conn.execute("SELECT originator_version FROM events WHERE originator_id = %s"
                                " AND position >= %s ORDER BY 1", (stream, target)).fetchall()
    with psycopg.connect(database_url) as conn:
        assert b'"100.00"' in conn.execute("SELECT state FROM events WHERE position = %s", (target,)).fetchone()[0]
    tamper(database_url,
           ("UPDATE events SET state = convert_to(replace(convert_from(state, 'UTF8'), '100.00', '900.00'), 'UTF8')"
            " WHERE position = %s", (target,)),
           *((rechain, (stream, version)) for (version,) in versions))
    result = verify(app.event_recorder.datastore)
    assert (result.ok, result.first_bad_position) == (False, target)
    assert "sealed" in result.problem


def test_an_unsealed_deletion_inside_a_stream_breaks_the_stream_chain(app, database_url, history):
    with as_("erp", "integration"):
        for n in range(3):
            app.record_sale(history[0], order_id=f"new-{n}", amount="5.00", sold_on="2026-03-03")
    middle, after = positions_of(database_url, history[0])[-2:]
    tamper(database_url, ("DELETE FROM events WHERE position = %s", (middle,)))
    result = verify(app.event_recorder.datastore)
    assert (result.ok, result.first_bad_position) == (False, after)
    assert "missing" in result.problem


def test_seals_cover_every_event_once_in_order_while_writers_race(app, database_url):
    contracts = [signed_contract(app, partner(app, "retailer")) for _ in range(4)]
    stop = threading.Event()
    sealer = ProjectionRunner(app, [AuditSeals()], batch_size=5)
    worker = threading.Thread(target=sealer.run, args=(stop,), kwargs={"idle_wait": 0.001})
    worker.start()

    def write(contract) -> None:
        with as_("erp", "integration"):
            for n in range(60):
                app.record_sale(contract, order_id=f"R-{n}", amount="10.00", sold_on="2026-03-01")

    writers = [threading.Thread(target=write, args=(contract,)) for contract in contracts]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    worker.join()
    seal(app)  # what the last writers added after the worker's last look
    with psycopg.connect(database_url) as conn:
        sealed = [row[0] for row in conn.execute("SELECT position FROM event_seals ORDER BY position")]
        logged = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
    assert sealed == logged
    result = verify(app.event_recorder.datastore)
    print(f"{len(sealed)} events sealed while 4 writers raced; verified through {result.verified_through}")
    assert result.ok and result.unsealed == 0
