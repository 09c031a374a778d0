"""How reads meet a database that went away: a dead pooled connection is tried once more;
no connection at all is refused at once, so the client hears `503` instead of waiting. And how
appends share a pooled connection's one cursor."""

from __future__ import annotations

import gc
import time
import weakref

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from channel_domain.application import ChannelDepartment
from channel_domain.contract import Contract
from channel_domain.store.database import library_environment
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract


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


@pytest.fixture
def one_connection_app(database_url):
    """The application on a pool of one connection: every append goes through the same one."""
    app = ChannelDepartment(database_url, env=library_environment(database_url, pool_size=1, max_overflow=0))
    yield app
    app.close()


def test_appends_of_every_shape_through_one_pooled_connection_each_write_what_they_were_given(
        one_connection_app, database_url):
    """The recorder keeps one cursor per pooled connection for its appends (psycopg then keeps
    the parameters' adapters): a sale (its unused arrays NULL), a signing (the contract registry),
    a hire with a login (another statement on the cursor first) and an idempotent sale, in turn on
    the only connection, each write their own events, rows and outcome."""
    app = one_connection_app
    seller = partner(app, kind="retailer")
    contract = signed_contract(app, seller)
    with as_("erp", "integration"):
        first = app.record_sale(contract, "SO-1", "100.00", "2026-03-02")
    with as_("hr-1", "hr"):
        hired = app.hire_employee(name="Li Lei", role="sales_rep", hired_on="2026-01-05", login="li.lei")
    with as_("erp", "integration", idempotency_key="sale-2"):
        second = app.record_sale(contract, "SO-2", "50.00", "2026-03-03")
    with as_("erp", "integration", idempotency_key="sale-2"):
        repeated = app.record_sale(contract, "SO-2", "50.00", "2026-03-03")
    with as_("erp", "integration"):
        third = app.record_sale(contract, "SO-3", "25.00", "2026-03-04", employee_id=hired.id)

    sales = app.get(Contract, contract)
    assert {order: line.split("|")[0] for order, line in sales.orders.items()} == \
        {"SO-1": "100.00", "SO-2": "50.00", "SO-3": "25.00"}
    assert (second.position, repeated.replayed) == (repeated.position, True)
    assert first.position < hired.position < second.position < third.position
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT employee_id FROM employee_logins WHERE login = 'li.lei'").fetchone()[0] == hired.id
        assert conn.execute("SELECT partner_id FROM contracts_in_force WHERE contract_id = %s",
                            (contract,)).fetchone()[0] == seller
        assert conn.execute("SELECT count(*) FROM contract_terms_in_force WHERE contract_id = %s",
                            (contract,)).fetchone()[0] == 1


def test_a_connection_the_pool_drops_is_not_kept_alive_by_the_recorders_cursor(one_connection_app):
    app = one_connection_app
    contract = signed_contract(app, partner(app, kind="retailer"))
    with as_("erp", "integration"):
        app.record_sale(contract, "SO-1", "100.00", "2026-03-02")  # the append's cursor is made
    with app.event_recorder.datastore.pool.connection() as conn:
        dropped = weakref.ref(conn)
        conn.close()  # the pool drops a closed connection when it comes back
    del conn
    with as_("erp", "integration"):
        app.record_sale(contract, "SO-2", "100.00", "2026-03-02")  # on the pool's new connection
    gc.collect()
    assert dropped() is None
