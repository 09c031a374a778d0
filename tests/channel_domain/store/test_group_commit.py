"""Group commit (issue 18, P1): the appends of commands that become ready while another group is
being written commit together, in one transaction, and each command still gets its own answer:
its own positions, its own outcome, its own refusal. A group the database refuses is written
again one append at a time, so nothing of a refused command commits and nothing of the others
is lost."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest
from eventsourcing.persistence import OperationalError, StoredEvent
from psycopg_pool import PoolTimeout

from channel_domain.application import ChannelDepartment
from channel_domain.store.group_commit import GroupCommit, Pending
from channel_domain.store.recorder import (
    SALE_RECORDED_TOPIC,
    Append,
    ConstraintViolation,
    EventFacts,
    PendingOutcome,
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
                pending.error = ValueError(f"{pending.request} refused")
            else:
                pending.positions = [f"{pending.request}.{n}" for n in range(pending.events)]


def _appending(queue: GroupCommit, name: str, events: int, answers: dict) -> threading.Thread:
    def run() -> None:
        try:
            answers[name] = queue.append(name, events)
        except Exception as error:  # noqa: BLE001 - the answer under test
            answers[name] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _queued(queue: GroupCommit, count: int) -> None:
    for _ in range(1000):
        with queue._lock:
            if len(queue._queue) >= count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} appends never queued")


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
            pending.positions = [1]

    queue = GroupCommit(write)
    with pytest.raises(RuntimeError, match="the writer broke"):
        queue.append("a", 1)
    assert queue.append("b", 1) == [1]


def test_an_append_its_writer_left_unanswered_is_an_error_never_a_success():
    queue = GroupCommit(lambda group: None)
    with pytest.raises(RuntimeError, match="without an answer"):
        queue.append("a", 1)


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
