"""How reads meet a database that went away: a dead pooled connection is tried once more;
no connection at all is refused at once, so the client hears `503` instead of waiting."""

from __future__ import annotations

import time

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from tests.channel_domain.test_application import partner


def _failing_first(monkeypatch, pool, error: Exception) -> list[int]:
    calls = []
    getconn = pool.getconn

    def getconn_or_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return getconn(*args, **kwargs)

    monkeypatch.setattr(pool, "getconn", getconn_or_fail)
    return calls


READS = {
    "select_events": lambda app, record: app.event_recorder.select_events(record),
    "select_snapshots": lambda app, record: app.snapshots.recorder.select_events(record),
    "select_notifications": lambda app, record: app.event_recorder.select_notifications(1, 10),
    "max_notification_id": lambda app, record: app.event_recorder.max_notification_id(),
}


@pytest.mark.parametrize("read", READS)
def test_a_read_on_a_dead_connection_is_tried_once_more(app, monkeypatch, read):
    record = partner(app)
    calls = _failing_first(monkeypatch, app.event_recorder.datastore.pool,
                           psycopg.OperationalError("server closed the connection unexpectedly"))
    READS[read](app, record)
    assert len(calls) == 2


@pytest.mark.parametrize("read", READS)
def test_no_connection_at_all_is_refused_at_once_not_retried(app, monkeypatch, read):
    record = partner(app)
    calls = _failing_first(monkeypatch, app.event_recorder.datastore.pool, PoolTimeout("no connection in 2 s"))
    started = time.monotonic()
    with pytest.raises(OperationalError):
        READS[read](app, record)
    assert len(calls) == 1 and time.monotonic() - started < 0.1  # the library would try ten times, 0.2 s apart
