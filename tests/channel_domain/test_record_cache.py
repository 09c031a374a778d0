"""The record cache: commands skip the replay, yet never decide on a stale or half-changed record."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from channel_domain.application import ChannelDepartment, answering_with
from channel_domain.contract import Contract
from channel_domain.record_cache import RecordCache
from channel_domain.store.recorder import means_database_busy
from tests.channel_domain.helpers import as_, refused
from tests.channel_domain.test_application import partner, signed_contract


@pytest.fixture
def other_process(database_url: str) -> Iterator[ChannelDepartment]:
    """A second application on the same database, as another server process would be."""
    with ChannelDepartment(database_url) as application:
        yield application


def sale(app: ChannelDepartment, contract, order: str, sold_on: str = "2026-02-01"):
    with as_("erp", "integration"):
        return app.record_sale(contract, order, "100.00", sold_on)


def test_a_command_takes_its_record_from_the_cache_and_puts_it_back_after_commit(app):
    contract = signed_contract(app, partner(app))
    sale(app, contract, "O-1")
    cached = app.records.take(contract)
    assert cached is not None and cached.version == app.get(Contract, contract).version
    app.records.put_back(cached)
    sale(app, contract, "O-2")
    assert app.records.take(contract) is cached  # changed in place: no replay, no copy
    assert sorted(cached.orders) == ["O-1", "O-2"]


def test_a_write_on_a_stale_record_is_retried_on_the_fresh_one(app, other_process):
    contract = signed_contract(app, partner(app))
    sale(app, contract, "O-1")  # app now holds the contract in memory
    with as_("mgr", "channel_manager"):
        other_process.terminate_contract(contract, "2026-03-01", "partner closed")
    # Stale in memory the contract is in force; the conflict makes the command look again.
    with refused("contract_not_in_force"):
        sale(app, contract, "O-2", sold_on="2026-03-10")
    assert "O-2" not in app.get(Contract, contract).orders


def test_a_refusal_decided_on_a_stale_record_is_checked_on_a_fresh_load(app, other_process):
    contract = signed_contract(app, partner(app))
    sale(app, contract, "O-1")
    sale(other_process, contract, "O-9")  # unknown to app's cached copy
    with as_("erp", "integration"):
        outcome = app.record_return(contract, "O-9", "10.00", "2026-02-02")
    assert app.get(Contract, contract).order_line("O-9")[1] == Decimal("10.00")
    assert outcome.version == app.get(Contract, contract).version


def test_if_match_that_loses_the_race_to_another_process_is_a_version_mismatch(app, other_process, monkeypatch):
    contract = signed_contract(app, partner(app))
    version = sale(app, contract, "O-1").version
    commit = app._commit

    def overtaken(record, *others, **options):  # another process writes between our check and our write
        monkeypatch.setattr(app, "_commit", commit)
        sale(other_process, contract, "O-9")
        return commit(record, *others, **options)

    monkeypatch.setattr(app, "_commit", overtaken)
    app.records.forget(contract)  # decided on a fresh load, as after a restart
    with as_("erp", "integration", expected_version=version), refused("version_mismatch"):
        app.record_sale(contract, "O-2", "100.00", "2026-02-01")
    assert "O-2" not in app.get(Contract, contract).orders


def test_a_refused_command_leaves_nothing_of_itself_in_memory(app):
    contract = signed_contract(app, partner(app))
    sale(app, contract, "O-1")
    with refused("return_exceeds_order"):
        with as_("erp", "integration"):
            app.record_return(contract, "O-1", "500.00", "2026-02-02")
    sale(app, contract, "O-2")
    held = app.records.take(contract)
    fresh = ChannelDepartment.get(app, Contract, contract)
    assert (held.orders, held.returns_total, held.version) == (fresh.orders, fresh.returns_total, fresh.version)


def test_the_answer_is_rendered_before_the_record_goes_back(app):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"), answering_with(lambda c: (c.version, len(c.orders))):
        first = app.record_sale(contract, "O-1", "100.00", "2026-02-01")
        second = app.record_sale(contract, "O-2", "100.00", "2026-02-01")
    assert first.answer == (first.version, 1)
    assert second.answer == (first.version + 1, 2)


def test_keyed_commands_beyond_the_pool_size_do_not_starve_each_other(database_url):
    """Each keyed command holds its key's lock on a session from a pool of its own while it
    takes connections from the main pool: with more such commands than the main pool holds
    connections, none may end up waiting for a connection that only it could release."""
    app = ChannelDepartment(database_url, env={"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "0"})
    try:
        contracts = [signed_contract(app, partner(app, kind="retailer")) for n in range(6)]
        start, failures = threading.Barrier(6), []

        def send(number: int) -> None:
            start.wait()
            try:
                for order in range(5):
                    with as_("erp", "integration", idempotency_key=f"k-{number}-{order}"):
                        app.record_sale(contracts[number], f"O-{order}", "100.00", "2026-02-01")
            except Exception as error:  # noqa: BLE001 - a pool timeout is the failure looked for
                failures.append(error)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert all(len(app.get(Contract, c).orders) == 5 for c in contracts)
    finally:
        app.close()


def test_commands_on_one_record_take_turns_instead_of_colliding(app, monkeypatch):
    contract = signed_contract(app, partner(app))
    collisions = []
    monkeypatch.setattr("channel_domain.application._back_off", collisions.append)
    start = threading.Barrier(4)

    def sell(writer: int) -> None:
        start.wait()
        for n in range(40):
            sale(app, contract, f"W{writer}-{n}")

    threads = [threading.Thread(target=sell, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(app.get(Contract, contract).orders) == 160
    assert collisions == []  # none lost on the version and went back to the store


def _counting_replays(app: ChannelDepartment, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    replays: list[int] = []
    reconstruct = app.repository._reconstruct_aggregate

    def counted(*args, **kwargs):
        replays.append(1)
        return reconstruct(*args, **kwargs)

    monkeypatch.setattr(app.repository, "_reconstruct_aggregate", counted)
    return replays


def test_a_record_two_processes_write_in_turn_is_caught_up_not_replayed(app, other_process, monkeypatch):
    """Server workers take a record's commands in turn: after the first loss on the version, each
    process catches its copy up with the other's events (before: every command lost on the
    version, backed off and replayed the record from its snapshot)."""
    contract = signed_contract(app, partner(app))
    sale(app, contract, "O-0")
    sale(other_process, contract, "O-1")
    replays = {"app": _counting_replays(app, monkeypatch), "other": _counting_replays(other_process, monkeypatch)}
    for n in range(2, 22):
        sale(app if n % 2 == 0 else other_process, contract, f"O-{n}")
    counts = {name: len(counted) for name, counted in replays.items()}
    assert max(counts.values()) <= 1, counts  # the first loss each, at most
    assert sorted(app.get(Contract, contract).orders) == sorted(f"O-{n}" for n in range(22))


def test_a_caught_up_copy_decides_on_what_the_other_process_wrote(app, other_process, monkeypatch):
    contract = signed_contract(app, partner(app))
    sale(app, contract, "O-1")
    sale(other_process, contract, "O-2")
    sale(app, contract, "O-3")  # lost on the version once: app now catches its copy up
    assert app.records.is_contended(contract)
    replays = _counting_replays(app, monkeypatch)
    sale(other_process, contract, "O-9")
    with as_("erp", "integration"):
        outcome = app.record_return(contract, "O-9", "10.00", "2026-02-02")  # O-9 known only by catching up
    assert replays == []
    assert outcome.version == app.get(Contract, contract).version
    assert app.get(Contract, contract).order_line("O-9")[1] == Decimal("10.00")


class _CountingTurn:
    """A record's turn that counts the commands at it, holding or waiting."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock, self.at_it, self._counting = lock, 0, threading.Lock()

    def __enter__(self) -> None:
        with self._counting:
            self.at_it += 1
        self.lock.acquire()

    def __exit__(self, *_: object) -> None:
        self.lock.release()


def _queued_behind_a_failing_append(app, monkeypatch, failure: Exception) -> tuple[list, dict[str, object]]:
    """Three sales on one contract: the first's append fails with `failure` once the other two
    wait for their turn behind it. Returns the appends tried and each sale's answer."""
    contract = signed_contract(app, partner(app))
    sale(app, contract, "warm")
    stripe = hash(contract) % len(app.records._turns)
    turn = app.records._turns[stripe] = _CountingTurn(app.records._turns[stripe])
    tried, holding, fail = [], threading.Event(), threading.Event()
    insert = app.event_recorder.insert_events

    def failing_once(*args, **kwargs):
        tried.append(1)
        if len(tried) == 1:
            holding.set()
            fail.wait(10)
            raise failure
        return insert(*args, **kwargs)

    monkeypatch.setattr(app.event_recorder, "insert_events", failing_once)
    answers: dict[str, object] = {}

    def sell(order: str) -> None:
        try:
            answers[order] = sale(app, contract, order)
        except Exception as error:  # noqa: BLE001 - the answer under test
            answers[order] = error

    first = threading.Thread(target=sell, args=("first",))
    first.start()
    assert holding.wait(10)
    queued = [threading.Thread(target=sell, args=(order,)) for order in ("second", "third")]
    for thread in queued:
        thread.start()
    deadline = time.monotonic() + 10
    while turn.at_it < 3:
        assert time.monotonic() < deadline, "the queued sales never reached the contract's turn"
        time.sleep(0.005)
    fail.set()
    for thread in (first, *queued):
        thread.join(10)
    answers["after"] = sale(app, contract, "after")  # one that came after the failure: tried as ever
    return tried, answers


def test_sales_queued_behind_one_that_got_no_connection_fail_with_it_not_a_pool_wait_each(app, monkeypatch):
    tried, answers = _queued_behind_a_failing_append(app, monkeypatch, _no_connection())

    assert all(means_database_busy(answers[order]) for order in ("first", "second", "third")), answers
    assert answers["second"] is not answers["third"], "each thread raises an exception of its own"
    assert len(tried) == 2, "the queued sales must not each wait for a connection in turn"
    assert not isinstance(answers["after"], Exception)


def test_one_dead_connection_fails_only_the_sale_on_it_not_those_queued_behind(app, monkeypatch):
    dead = OperationalError("server closed the connection unexpectedly")
    dead.__cause__ = psycopg.OperationalError("server closed the connection unexpectedly")
    tried, answers = _queued_behind_a_failing_append(app, monkeypatch, dead)

    assert answers["first"] is dead
    assert not any(isinstance(answers[order], Exception) for order in ("second", "third", "after")), answers
    assert len(tried) == 4


def _no_connection() -> OperationalError:
    error = OperationalError("couldn't get a connection after 5.00 sec")
    error.__cause__ = PoolTimeout("couldn't get a connection after 5.00 sec")
    return error


class _Clock:
    now = 10.0

    def __call__(self) -> float:
        return self.now


def _command(cache: RecordCache, record, failure: Exception | None = None) -> Exception | None:
    """One command in the record's turn, failing with `failure`; what it raised, if anything."""
    try:
        with cache.turn(record):
            if failure is not None:
                raise failure
    except Exception as raised:  # noqa: BLE001 - the answer under test
        return raised
    return None


def test_a_failure_in_the_turn_refuses_only_the_commands_that_arrived_before_it():
    clock, record = _Clock(), uuid.uuid4()
    cache = RecordCache(8, stripes=1, clock=clock)
    _command(cache, record, _no_connection())  # failed at 10.0

    clock.now = 9.0  # one that was waiting for the turn when it failed
    refused = _command(cache, record)
    assert means_database_busy(refused) and "not tried" in str(refused)
    clock.now = 11.0  # one that came after the failure: tried
    assert _command(cache, record) is None


def test_a_success_in_the_turn_ends_the_refusals():
    clock, record = _Clock(), uuid.uuid4()
    cache = RecordCache(8, stripes=1, clock=clock)
    _command(cache, record, _no_connection())
    clock.now = 12.0
    assert _command(cache, record) is None  # the database answered this one
    clock.now = 9.0  # one that arrived before the failure but took its turn after the success
    assert _command(cache, record) is None


def test_a_refusal_of_a_record_reaches_the_records_sharing_its_turn_but_not_other_turns():
    clock = _Clock()
    cache = RecordCache(8, stripes=2, clock=clock)
    records = [uuid.uuid4() for _ in range(40)]
    failing = records[0]
    sharing = next(r for r in records[1:] if hash(r) % 2 == hash(failing) % 2)
    apart = next(r for r in records[1:] if hash(r) % 2 != hash(failing) % 2)
    _command(cache, failing, _no_connection())
    clock.now = 9.0
    assert means_database_busy(_command(cache, sharing))  # it waited behind the failure too
    assert _command(cache, apart) is None


def test_the_kept_failure_holds_none_of_the_requests_frames():
    cache, record = RecordCache(8, stripes=1, clock=_Clock()), uuid.uuid4()
    try:
        raise OperationalError("couldn't get a connection after 5.00 sec") from PoolTimeout("timeout")
    except OperationalError as raised:
        error = raised
    _command(cache, record, error)
    _, kept = cache._no_connection[0]
    assert kept is not error and kept.__traceback__ is None
    assert kept.__cause__ is not error.__cause__ and kept.__cause__.__traceback__ is None
    assert kept.__context__ is None
