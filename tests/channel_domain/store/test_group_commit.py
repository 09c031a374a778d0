"""Group commit (issue 18, P1): the appends of commands that become ready while another group is
being written commit together, in one transaction, and each command still gets its own answer:
its own positions, its own outcome, its own refusal. A group the database refuses is written
again one append at a time, so nothing of a refused command commits and nothing of the others
is lost."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest
from psycopg import errors
from eventsourcing.persistence import OperationalError, StoredEvent
from psycopg_pool import PoolTimeout

from channel_domain.application import ChannelDepartment
from channel_domain.store.group_commit import GroupCommit, Pending
from channel_domain.errors import DomainError
from channel_domain.store.recorder import (
    SALE_RECORDED_TOPIC,
    Append,
    ConstraintViolation,
    EventFacts,
    PendingOutcome,
    SellingDaysClosed,
    _append_parameters,
)
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract

# Without a database: how groups form -----------------------------------------------------


class HeldWriter:
    """A `write` that holds its first `held` groups until told, so the next appends queue."""

    def __init__(self, held: int = 1) -> None:
        self.groups: list[list[str]] = []
        self.held = held
        self.first_in = threading.Event()
        self.release = threading.Event()
        self.refuse: set[str] = set()

    def __call__(self, group) -> None:
        self.groups.append([pending.request for pending in group])
        if len(self.groups) <= self.held:
            if len(self.groups) == self.held:
                self.first_in.set()
            assert self.release.wait(10)
        for pending in group:
            if pending.request in self.refuse:
                pending.answer(error=ValueError(f"{pending.request} refused"))
            else:
                pending.answer(positions=[f"{pending.request}.{n}" for n in range(pending.events)])


def _appending(queue: GroupCommit, name: str, events: int, answers: dict) -> threading.Thread:
    def run() -> None:
        try:
            answers[name] = queue.append(name, events)
        except Exception as error:  # noqa: BLE001 - the answer under test
            answers[name] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _until(condition, what: str) -> None:  # noqa: ANN001
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"{what} never happened")


def _queued(queue: GroupCommit, count: int) -> None:
    _until(lambda: len(queue._queue) >= count, f"{count} appends queued")


def test_appends_ready_while_a_group_is_written_go_together_next_each_with_its_own_answer():
    writer = HeldWriter()
    writer.refuse = {"c"}
    queue = GroupCommit(writer, patience_s=30, groups_in_flight=1)
    answers: dict = {}
    first = _appending(queue, "a", 1, answers)
    assert writer.first_in.wait(10)
    rest = [_appending(queue, name, 2, answers) for name in ("b", "c", "d")]
    _queued(queue, 3)
    writer.release.set()
    for thread in [first, *rest]:
        thread.join(10)
    assert writer.groups == [["a"], ["b", "c", "d"]]
    assert answers["a"] == ["a.0"]
    assert answers["b"] == ["b.0", "b.1"] and answers["d"] == ["d.0", "d.1"]
    assert isinstance(answers["c"], ValueError) and str(answers["c"]) == "c refused"
    assert (queue.stats.groups, queue.stats.commands, queue.stats.largest) == (2, 4, 3)


def test_an_append_behind_a_group_that_waits_too_long_begins_its_own_beside_it():
    writer = HeldWriter()
    queue = GroupCommit(writer, patience_s=0.05, groups_in_flight=1)
    answers: dict = {}
    first = _appending(queue, "a", 1, answers)
    assert writer.first_in.wait(10)
    _appending(queue, "b", 1, answers).join(10)
    assert answers == {"b": ["b.0"]}, "b waited for the held group"
    assert queue.stats.impatient == 1
    writer.release.set()
    first.join(10)
    assert answers["a"] == ["a.0"]
    assert queue.append("c", 1) == ["c.0"]


def test_two_groups_are_written_at_once_and_the_appends_behind_them_gather_into_the_next():
    writer = HeldWriter(held=2)
    queue = GroupCommit(writer, patience_s=30)  # two groups at a time, as a process runs
    answers: dict = {}
    threads = [_appending(queue, "a", 1, answers)]
    threads.append(_appending(queue, "b", 1, answers))
    assert writer.first_in.wait(10), "b waited for a's group instead of being written beside it"
    threads += [_appending(queue, name, 1, answers) for name in ("c", "d", "e")]
    _queued(queue, 3)
    writer.release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(map(sorted, writer.groups[:2])) == [["a"], ["b"]]
    assert sorted(writer.groups[2]) == ["c", "d", "e"] and len(writer.groups) == 3
    assert answers == {name: [f"{name}.0"] for name in "abcde"}


def test_a_lone_append_writes_at_once_and_the_queue_is_free_after_it():
    writer = HeldWriter()
    writer.release.set()
    queue = GroupCommit(writer)
    assert queue.append("a", 1) == ["a.0"]
    assert queue.append("b", 1) == ["b.0"]
    assert writer.groups == [["a"], ["b"]]
    assert queue._in_flight == 0


@pytest.mark.parametrize(("limits", "groups"), [
    ({"max_commands": 2}, [["a"], ["b", "c"], ["d"]]),
    ({"max_events": 5}, [["a"], ["b", "c"], ["d"]]),  # 2 + 2 events, and d's 2 would make 6
])
def test_a_group_stops_at_its_limits_and_the_rest_form_the_next(limits, groups):
    writer = HeldWriter()
    queue = GroupCommit(writer, patience_s=30, groups_in_flight=1, **limits)
    answers: dict = {}
    threads = [_appending(queue, "a", 1, answers)]
    assert writer.first_in.wait(10)
    for n, name in enumerate(("b", "c", "d")):
        threads.append(_appending(queue, name, 2, answers))
        _queued(queue, n + 1)  # in this order
    writer.release.set()
    for thread in threads:
        thread.join(10)
    assert writer.groups == groups
    assert answers == {name: [f"{name}.{n}" for n in range(1 if name == "a" else 2)] for name in "abcd"}


def test_a_writer_that_breaks_answers_every_append_of_its_group_and_hands_on_the_queue():
    calls = []

    def write(group) -> None:
        calls.append([pending.request for pending in group])
        if len(calls) == 1:
            raise RuntimeError("the writer broke")
        for pending in group:
            pending.answer(positions=[1])

    queue = GroupCommit(write)
    with pytest.raises(RuntimeError, match="the writer broke"):
        queue.append("a", 1)
    assert queue.append("b", 1) == [1]


def test_an_append_its_writer_left_unanswered_is_an_error_never_a_success():
    queue = GroupCommit(lambda group: None)
    with pytest.raises(RuntimeError, match="without an answer"):
        queue.append("a", 1)


def test_every_append_is_written_once_and_answered_once_with_its_own_answer_under_a_crowd():
    seen: list[int] = []
    seen_lock = threading.Lock()
    rng = random.Random(18)

    def write(group) -> None:
        with seen_lock:
            seen.extend(pending.request for pending in group)
            pause = rng.random() / 1000
        time.sleep(pause)
        for pending in group:
            if pending.request % 7 == 0:
                pending.answer(error=ValueError(pending.request))
            else:
                pending.answer(positions=[pending.request * 10 + n for n in range(pending.events)])

    queue = GroupCommit(write, max_commands=5, patience_s=0.001)  # small groups, impatient appends
    answers: dict[int, object] = {}
    numbers = iter(range(1, 16 * 60 + 1))
    numbers_lock = threading.Lock()

    def crowd() -> None:
        while True:
            with numbers_lock:
                number = next(numbers, None)
            if number is None:
                return
            try:
                answers[number] = queue.append(number, 1 + number % 3)
            except ValueError as refused:
                answers[number] = refused

    threads = [threading.Thread(target=crowd) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(seen) == list(range(1, 16 * 60 + 1)), "an append was written twice, or never"
    for number, answer in answers.items():
        if number % 7 == 0:
            assert isinstance(answer, ValueError) and answer.args == (number,)
        else:
            assert answer == [number * 10 + n for n in range(1 + number % 3)]
    assert len(answers) == 16 * 60 and queue._in_flight == 0 and not queue._queue
    assert queue.stats.largest > 1


# On the database: one transaction a group, one answer a command ---------------------------

SALE = "tests.group_commit:Probe"  # no schema of the feed: these events are bytes, not sales


def _append(record: uuid.UUID, version: int, key: str | None = None, events: int = 1) -> Append:
    stored = [StoredEvent(record, version + n, SALE, b'{"n":%d}' % (version + n)) for n in range(events)]
    facts = [EventFacts(datetime.now(UTC), date(2026, 3, 2))] * events
    outcome = PendingOutcome("erp", key, f"print-{key}", {"id": str(record)}) if key else None
    return Append(stored, facts, outcome, {})


def _rows(url: str, sql: str, *params):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.mark.foreign_events("bytes appended straight through the recorder, to test how it groups them")
def test_a_group_commits_in_one_transaction_and_each_outcome_keeps_its_own_positions(app, database_url):
    one, two, three = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    group = [Pending(_append(one, 1, "k1", events=2), 2), Pending(_append(two, 1), 1),
             Pending(_append(three, 1, "k3", events=3), 3)]
    app.event_recorder._write_group(group)

    assert [pending.error for pending in group] == [None, None, None]
    for pending, record in zip(group, (one, two, three), strict=True):
        stored = _rows(database_url, "SELECT position FROM events WHERE originator_id = %s"
                                     " ORDER BY originator_version", record)
        assert pending.positions == [row[0] for row in stored]
    assert len({row[0] for row in _rows(database_url, "SELECT tx_id FROM events")}) == 1
    outcomes = dict(_rows(database_url, "SELECT idempotency_key, outcome FROM command_outcomes"))
    assert outcomes["k1"]["positions"] == group[0].positions and outcomes["k1"]["position"] == group[0].positions[-1]
    assert outcomes["k3"]["positions"] == group[2].positions and outcomes["k3"]["position"] == group[2].positions[-1]
    assert outcomes["k1"]["id"] == str(one) and outcomes["k3"]["id"] == str(three)


@pytest.mark.foreign_events("bytes appended straight through the recorder, to test how it groups them")
def test_a_command_the_database_refuses_in_a_group_fails_alone(app, database_url):
    taken, free, keyed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    app.event_recorder._write([_append(taken, 1)])  # version 1 is written: a second one conflicts
    group = [Pending(_append(free, 1), 1), Pending(_append(taken, 1), 1), Pending(_append(keyed, 1, "k"), 1)]
    app.event_recorder._write_group(group)

    assert isinstance(group[1].error, ConstraintViolation) and group[1].error.constraint == "events_pkey"
    assert group[1].positions is None
    assert group[0].error is None and group[2].error is None
    written = dict(_rows(database_url, "SELECT originator_id, count(*) FROM events GROUP BY 1"))
    assert written == {taken: 1, free: 1, keyed: 1}
    assert _rows(database_url, "SELECT position FROM events WHERE originator_id = %s", free) == [(group[0].positions[0],)]
    (outcome,) = _rows(database_url, "SELECT outcome FROM command_outcomes WHERE idempotency_key = 'k'")
    assert outcome[0]["positions"] == group[2].positions


def test_without_a_connection_a_group_is_answered_at_once_not_written_again_one_by_one(app, monkeypatch):
    calls = []

    def no_connection(appends, *args):
        calls.append(len(appends))
        raise OperationalError("couldn't get a connection") from PoolTimeout("no connection in 5 s")

    monkeypatch.setattr(app.event_recorder, "_write", no_connection)
    group = [Pending(_append(uuid.uuid4(), 1), 1) for _ in range(3)]
    app.event_recorder._write_group(group)
    assert calls == [3]
    assert all(isinstance(pending.error, OperationalError) for pending in group)


# Through the application: commands racing in one process ---------------------------------

WRITERS = 8
SALES_EACH = 15


def test_sales_racing_in_one_process_share_transactions_and_each_answers_its_own_positions(database_url):
    app = ChannelDepartment(database_url, env={"POSTGRES_POOL_SIZE": str(WRITERS + 2)})
    contracts = [signed_contract(app, partner(app, "retailer")) for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    answers: dict[tuple[int, int], list[int]] = {}
    failures: list[BaseException] = []

    def sell(writer: int) -> None:
        start.wait()
        try:
            for n in range(SALES_EACH):
                with as_("erp", "integration", idempotency_key=f"sale-{writer}-{n}"):
                    answers[(writer, n)] = app.record_sale(
                        contracts[writer], f"SO-{writer}-{n}", "100.00", "2026-03-02").positions
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=sell, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[0]
    stats = app.event_recorder.group_commit.stats
    assert stats.largest > 1, "racing sales should have met in groups"
    assert stats.groups < stats.commands

    for writer, contract_id in enumerate(contracts):
        sales = _rows(database_url, "SELECT position, convert_from(state, 'UTF8')::jsonb ->> 'order_id' FROM events"
                                    " WHERE originator_id = %s AND topic = %s ORDER BY originator_version",
                      contract_id, SALE_RECORDED_TOPIC)
        assert [order for _, order in sales] == [f"SO-{writer}-{n}" for n in range(SALES_EACH)]
        assert [[position] for position, _ in sales] == [answers[(writer, n)] for n in range(SALES_EACH)]
    outcomes = dict(_rows(database_url, "SELECT idempotency_key, outcome -> 'positions' FROM command_outcomes"))
    assert all(outcomes[f"sale-{w}-{n}"] == answers[(w, n)] for w in range(WRITERS) for n in range(SALES_EACH))
    # A retry of a key answers from its outcome, the positions it first committed at.
    with as_("erp", "integration", idempotency_key="sale-3-7"):
        replay = app.record_sale(contracts[3], "SO-3-7", "100.00", "2026-03-02")
    assert replay.positions == answers[(3, 7)]
    app.close()


# What the review of the first version asked ----------------------------------------------


class Refused(Exception):
    """What the database says when it refuses a group for one of its commands."""


def test_a_refused_groups_appends_are_answered_one_by_one_as_each_is_written(app, monkeypatch):
    second_may_finish = threading.Event()
    calls: list[int] = []

    def write(appends, *args):
        calls.append(len(appends))
        if len(appends) > 1:
            raise Refused("one of them conflicts")
        if len(calls) == 3:  # the second alone
            assert second_may_finish.wait(10)
        return [len(calls)]

    monkeypatch.setattr(app.event_recorder, "_write", write)
    group = [Pending(_append(uuid.uuid4(), 1), 1) for _ in range(3)]
    writer = threading.Thread(target=app.event_recorder._write_group, args=(group,))
    writer.start()
    assert group[0]._wake.wait(10), "the first append waited for the rest of the fallback"
    assert group[0].result() == [2] and not group[1]._answered
    second_may_finish.set()
    writer.join(10)
    assert [pending.result() for pending in group] == [[2], [3], [4]] and calls == [3, 1, 1, 1]


def test_when_the_database_goes_away_during_a_fallback_the_rest_hear_so_at_once(app, monkeypatch):
    calls: list[int] = []

    def write(appends, *args):
        calls.append(len(appends))
        if len(appends) > 1:
            raise Refused("one of them conflicts")
        if len(calls) == 3:
            raise OperationalError("server closed the connection") from psycopg.OperationalError("gone")
        return [len(calls)]

    monkeypatch.setattr(app.event_recorder, "_write", write)
    group = [Pending(_append(uuid.uuid4(), 1), 1) for _ in range(4)]
    app.event_recorder._write_group(group)
    assert calls == [4, 1, 1], "went on writing after the database went away"
    assert group[0].result() == [2]
    errors = [pending.error for pending in group[1:]]
    assert all(isinstance(error, OperationalError) for error in errors)
    assert len({id(error) for error in errors}) == 3, "one exception shared by three threads"
    assert all(isinstance(error.__cause__, psycopg.OperationalError) for error in errors)


ALONE = {  # what each kind of append that must write alone carries
    "registry": {"contracts_in_force": [object()]},
    "personal-data key": {"new_personal_keys": {uuid.uuid4(): b"k"}},
    "erasure": {"erase_personal_keys": [uuid.uuid4()]},
    "login": {"new_logins": {"someone": uuid.uuid4()}},
    "closing": {"selling_days_closed": object()},
    "import lines": {"import_lines": object()},
    "work in the transaction": {"in_transaction": object()},
}


@pytest.mark.parametrize("kind", ALONE)
def test_appends_that_must_write_alone_never_reach_a_group(app, monkeypatch, kind):
    recorder = app.event_recorder
    monkeypatch.setattr(recorder.group_commit, "append", lambda *a: pytest.fail(f"a {kind} joined a group"))
    written: list[int] = []
    monkeypatch.setattr(recorder, "_write", lambda appends, *args: written.append(len(appends)) or [7])
    append = _append(uuid.uuid4(), 1)
    assert recorder.insert_events(append.events, facts=append.facts, **ALONE[kind]) == [7]
    assert written == [1]


def test_a_group_holding_an_append_that_must_write_alone_is_refused_before_anything_is_sent():
    sale, closing = _append(uuid.uuid4(), 1), _append(uuid.uuid4(), 1)
    closing = Append(closing.events, closing.facts, None, {}, selling_days_closed=SellingDaysClosed(uuid.uuid4(), 3))
    _append_parameters([closing])  # alone, it is written
    with pytest.raises(ValueError, match="must write alone"):
        _append_parameters([sale, closing])


def test_a_group_with_a_sale_on_a_stale_partner_refuses_that_sale_alone(app, database_url, monkeypatch):
    suspended = partner(app, "retailer")
    stale = signed_contract(app, suspended)
    fine = [signed_contract(app, partner(app, "retailer")) for _ in range(3)]
    plug = signed_contract(app, partner(app, "retailer"))
    with as_("erp", "integration"):
        app.record_sale(stale, "before", "100.00", "2026-03-01")  # caches the partner, as checked then
    with ChannelDepartment(database_url) as other, as_("mgr-1", "channel_manager"):
        other.suspend_partner(suspended, "audit", on="2026-03-05")  # another process closes its days

    recorder = app.event_recorder
    recorder.group_commit = GroupCommit(recorder._write_group, groups_in_flight=1, patience_s=30)
    held, write = threading.Event(), recorder._write
    monkeypatch.setattr(recorder, "_write", lambda appends, *args: (held.wait(10), write(appends, *args))[1])
    answers: dict[str, object] = {}

    def sell(contract_id, order: str) -> None:
        try:
            with as_("erp", "integration", idempotency_key=order):
                answers[order] = app.record_sale(contract_id, order, "100.00", "2026-03-10")
        except DomainError as refusal:
            answers[order] = refusal

    threads = [threading.Thread(target=sell, args=(plug, "plug"))]
    threads[0].start()
    _until(lambda: recorder.group_commit._in_flight >= 1, "the plug began writing")
    threads += [threading.Thread(target=sell, args=(contract, f"sale-{n}")) for n, contract in enumerate([stale, *fine])]
    for thread in threads[1:]:
        thread.start()
    _queued(recorder.group_commit, 4)
    held.set()
    for thread in threads:
        thread.join(30)

    assert recorder.group_commit.stats.largest == 4, "the four sales should have met in one group"
    assert isinstance(answers["sale-0"], DomainError) and answers["sale-0"].code == "partner_not_active"
    assert all(answers[f"sale-{n}"].positions for n in (1, 2, 3))
    orders = dict(_rows(database_url, "SELECT convert_from(state, 'UTF8')::jsonb ->> 'order_id', originator_id"
                                      " FROM events WHERE topic = %s", SALE_RECORDED_TOPIC))
    assert "sale-0" not in orders and {orders[f"sale-{n}"] for n in (1, 2, 3)} == set(fine)
    keys = {row[0] for row in _rows(database_url, "SELECT idempotency_key FROM command_outcomes")}
    assert "sale-0" not in keys and {"sale-1", "sale-2", "sale-3", "plug"} <= keys


@pytest.mark.foreign_events("bytes appended straight through the recorder, to test how groups lock rows")
def test_two_groups_writing_the_same_records_in_opposite_orders_wait_in_turn_never_deadlock(app, database_url):
    # Each row's insertion waits a moment first, so that both transactions hold their first row
    # before either reaches its second: in the order given, each would wait on the other's.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION slow_rows() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
            CREATE TRIGGER slow_rows BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION slow_rows();
        """)
    one, two = uuid.uuid4(), uuid.uuid4()
    orders = {"forwards": [_append(one, 1), _append(two, 1)], "backwards": [_append(two, 1), _append(one, 1)]}
    answers: dict[str, object] = {}

    def write(name: str) -> None:
        try:
            answers[name] = app.event_recorder._write(orders[name])
        except Exception as error:  # noqa: BLE001 - the answer under test
            answers[name] = error

    threads = [threading.Thread(target=write, args=(name,)) for name in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    refused_ones = [answer for answer in answers.values() if isinstance(answer, Exception)]
    assert len(refused_ones) == 1, answers
    assert isinstance(refused_ones[0], ConstraintViolation) and refused_ones[0].constraint == "events_pkey", \
        f"not the version conflict of the later group: {refused_ones[0]!r}"


def test_a_group_that_timed_out_is_answered_at_once_not_written_again_one_by_one(app, monkeypatch):
    calls = []

    def cancelled(appends, *args):
        calls.append(len(appends))
        raise OperationalError("canceling statement due to statement timeout") from errors.QueryCanceled("timeout")

    monkeypatch.setattr(app.event_recorder, "_write", cancelled)
    group = [Pending(_append(uuid.uuid4(), 1), 1) for _ in range(3)]
    app.event_recorder._write_group(group)
    assert calls == [3]
    assert all(isinstance(pending.error, OperationalError) for pending in group)


def test_a_bad_group_commit_bound_stops_the_application_at_start(database_url):
    for bad in ("0", "-1", "lots"):
        with pytest.raises(ValueError, match="GROUP_COMMIT_MAX_COMMANDS"):
            ChannelDepartment(database_url, env={"GROUP_COMMIT_MAX_COMMANDS": bad})
    with ChannelDepartment(database_url, env={"GROUP_COMMIT_MAX_COMMANDS": "1"}) as alone:
        assert alone.event_recorder.group_commit is None


def test_pooled_connections_give_up_a_silent_server_unless_the_connection_string_says_otherwise(database_url):
    with ChannelDepartment(f"{database_url} keepalives_idle=9") as app:
        settings = app.event_recorder.datastore.pool.kwargs
        assert settings["keepalives"] == 1 and settings["tcp_user_timeout"] == 30_000
        assert "keepalives_idle" not in settings, "the connection string's own value must win"
        with app.event_recorder.datastore.get_connection() as conn:
            assert conn.info.get_parameters()["keepalives_idle"] == "9"
            assert conn.info.get_parameters()["tcp_user_timeout"] == "30000"
