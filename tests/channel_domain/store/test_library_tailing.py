"""The `eventsourcing` library's own ways of tailing the log, through our recorder.

Positions commit out of order (the recorder takes no table lock), so "everything after the
last id I saw" skips late commits. Every library reader that goes through
`select_notifications` — the application's notification log, its sections,
`NotificationLogReader` (what a `Follower` pulls with), the JSON service and client — is
routed through `EventLog`'s fence and must see every committed event once, in order, under
the same late-committing, rolling-back writers as `test_event_log.py`. The paths that cannot
be made safe (`subscribe`, a `Leader`'s push) refuse, naming `EventLog`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import psycopg
import pytest
from eventsourcing.interface import NotificationLogJSONClient, NotificationLogJSONService
from eventsourcing.persistence import Notification
from eventsourcing.projection import ApplicationSubscription
from eventsourcing.system import Leader, NotificationLogReader

from channel_domain.application import ChannelDepartment
from channel_domain.store.recorder import UnsafeTailingError
from tests.channel_domain.helpers import as_
from tests.channel_domain.store.test_event_log import (  # noqa: F401  (a fixture, used by name)
    GROUPING,
    WRITERS,
    NaiveReader,
    late_committing_database,
    write_partners,
)

Reader = Callable[[ChannelDepartment, int], Sequence[Notification]]

# Each takes the app and the last position its caller has, and returns what comes next.
LIBRARY_READERS: dict[str, Reader] = {
    "recorder.select_notifications": lambda app, last: app.event_recorder.select_notifications(
        last, 50, inclusive_of_start=False),
    "notification_log.select via NotificationLogReader (a Follower's pull)": lambda app, last: [
        n for batch in NotificationLogReader(app.notification_log).select(start=last, inclusive_of_start=False)
        for n in batch],
    "notification_log sections via NotificationLogReader.read": lambda app, last: list(
        NotificationLogReader(app.notification_log).read(start=last + 1)),
    "NotificationLogJSONService sections, read by its client": lambda app, last: list(
        NotificationLogReader(NotificationLogJSONClient(NotificationLogJSONService(app))).read(start=last + 1)),
}


@pytest.mark.parametrize("grouping", GROUPING)
def test_library_readers_see_every_event_once_in_order_despite_late_commits(late_committing_database, grouping):
    app = ChannelDepartment(late_committing_database,
                            env={"POSTGRES_POOL_SIZE": str(WRITERS + len(LIBRARY_READERS) + 2),
                                 "GROUP_COMMIT_MAX_COMMANDS": GROUPING[grouping]})
    naive = NaiveReader(late_committing_database)
    seen: dict[str, list[int]] = {name: [] for name in LIBRARY_READERS}
    naively_seen: list[int] = []
    last_committed: list[int] = []  # set once the writers are done
    give_up = time.monotonic() + 300  # only so that a broken reader fails instead of hanging

    def tail(name: str) -> None:
        read = LIBRARY_READERS[name]
        start.wait()
        last = 0
        # The library's contract, as its callers use it: resume after the last id returned.
        while not (last_committed and last >= last_committed[0]) and time.monotonic() < give_up:
            batch = read(app, last)
            seen[name].extend(n.id for n in batch)
            if batch:
                last = batch[-1].id
            else:
                time.sleep(0.002)

    def tail_naively() -> None:
        start.wait()
        while not last_committed:
            naively_seen.extend(naive.read())
            time.sleep(0.001)

    start = threading.Barrier(WRITERS + len(LIBRARY_READERS) + 2)  # and the control, and this thread
    writers = [threading.Thread(target=write_partners, args=(app, w, start)) for w in range(WRITERS)]
    readers = [threading.Thread(target=tail, args=(name,)) for name in LIBRARY_READERS]
    control = threading.Thread(target=tail_naively)
    for thread in [*writers, *readers, control]:
        thread.start()
    start.wait()
    for thread in writers:
        thread.join()
    with psycopg.connect(late_committing_database) as conn:
        committed = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
        highest_drawn = conn.execute("SELECT last_value FROM events_position_seq").fetchone()[0]
    last_committed.append(committed[-1])
    for thread in [*readers, control]:
        thread.join()
    app.close()

    assert highest_drawn > len(committed), "aborted writes must have left gaps"
    for name, ids in seen.items():
        missing, extra = sorted(set(committed) - set(ids)), len(ids) - len(set(ids))
        assert ids == committed, f"{name} missed {missing[:10]}, duplicated {extra}"
    if grouping == "grouped":  # few commits out of order: the control has little to miss
        assert app.event_recorder.group_commit.stats.largest > 1, "the writers' appends should have met in groups"
        return
    missed = set(committed) - set(naively_seen)
    print(f"a plain 'position > last' reader missed {len(missed)} of {len(committed)};"
          f" each of {len(LIBRARY_READERS)} library readers missed 0")
    assert missed, "control: the unfenced read, run alongside, should have skipped late commits"


def _hire(app: ChannelDepartment, name: str) -> None:
    with as_("hr-1", "hr"):
        app.hire_employee(name=name, role="sales_rep", hired_on="2026-01-05")


def test_a_library_read_never_passes_a_gap_that_a_running_writer_may_fill(app, database_url):
    _hire(app, "first")
    slow = psycopg.connect(database_url)
    try:
        slow.execute("SELECT pg_current_xact_id()")
        slow.execute("SELECT nextval('events_position_seq')")  # position 2, not yet committed
        _hire(app, "third")
        app.event_recorder.gap_wait_s = 0  # answer "nothing yet" at once instead of waiting
        assert [n.id for n in app.notification_log.select(1, 10)] == [1]
        assert app.notification_log.select(1, 10, inclusive_of_start=False) == []
        assert app.event_recorder.select_notifications(None, 10, inclusive_of_start=False)[-1].id == 1
        assert [n.id for n in NotificationLogReader(app.notification_log).read(start=1)] == [1]
    finally:
        slow.rollback()
        slow.close()
    app.event_recorder.gap_wait_s = 60  # a shared server's other transactions may hold the fence a while
    assert [n.id for n in app.notification_log.select(1, 10, inclusive_of_start=False)] == [3]


def test_a_library_read_keeps_the_librarys_limit_stop_and_topics(app):
    for n in range(3):
        _hire(app, f"employee {n}")
        with as_("spec-1", "channel_specialist"):
            app.register_partner(kind="retailer", name=f"partner {n}")
    everything = app.event_recorder.select_notifications(1, 100)
    assert [n.id for n in everything] == list(range(1, 7))
    registered = everything[1].topic  # a partner's first event; an employee's differs
    assert registered != everything[0].topic
    partners = [n.id for n in everything if n.topic == registered]
    assert partners == [2, 4, 6]

    recorder = app.event_recorder
    assert [n.id for n in recorder.select_notifications(1, 100, topics=[registered])] == partners
    assert [n.id for n in recorder.select_notifications(1, 2, topics=[registered])] == partners[:2]
    assert [n.id for n in recorder.select_notifications(2, 100, stop=4)] == [2, 3, 4]
    assert [n.id for n in recorder.select_notifications(2, 100, stop=4, inclusive_of_start=False)] == [3, 4]
    assert [n.id for n in recorder.select_notifications(3, 2)] == [3, 4]
    assert recorder.select_notifications(6, 10, inclusive_of_start=False) == []
    with pytest.raises(ValueError, match="section size"):
        app.notification_log.select(1, 11)  # the library's own check still stands
    section = app.notification_log["1,4"]
    assert (section.id, section.next_id) == ("1,4", "5,8")


def test_subscribing_is_refused_naming_the_safe_reader(app):
    with pytest.raises(UnsafeTailingError, match=r"channel_domain\.store\.log\.EventLog"):
        app.recorder.subscribe(gt=0)
    # What the library's ProjectionRunner and EventSourcedProjectionRunner subscribe with.
    with pytest.raises(UnsafeTailingError, match="EventLog"):
        ApplicationSubscription(app, gt=0)


class LeadingDepartment(ChannelDepartment, Leader):
    """What a `System` or `ProcessApplication` pipe needs of a leader."""


def test_the_department_cannot_lead_a_system(database_url):
    with pytest.raises(UnsafeTailingError, match="LeadingDepartment as an eventsourcing Leader.*EventLog"):
        LeadingDepartment(database_url)
