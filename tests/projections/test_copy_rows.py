"""`copy_rows`: a binary COPY writes exactly the rows a text COPY wrote, and a batch holding a
value binary would send otherwise (another Python type than its column's) goes as text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.rows import dict_row

from channel_domain.store import copying
from channel_domain.store.copying import copy_rows

AUDIT = ("position", "event_id", "stream_id", "stream_type", "version", "type", "actor", "roles", "recorded_at",
         "effective_on", "correlation_id", "causation_id", "command_id", "data")
ORDERS = ("position", "event_id", "partner_id", "contract_id", "order_id", "sold_on", "amount", "employee_id")


def _audit(position: int, **changed) -> tuple:
    row = dict(zip(AUDIT, (position, uuid4(), uuid4(), "Contract", position, "Contract.SaleRecorded", "erp",
                           ["integration", "x\ty\\z"], datetime(2026, 3, 1, 23, 30, 0, 123456, tzinfo=UTC),
                           date(2026, 3, 2), "req-1", "cause-1", str(uuid4()),
                           '{"amount": "100.50", "note": "tab\\t, quote \\" and ü", "sold_on": "2026-03-02"}'),
                   strict=True))
    row.update(changed)
    return tuple(row.values())


def _order(position: int, **changed) -> tuple:
    row = dict(zip(ORDERS, (position, uuid4(), uuid4(), uuid4(), f"L-{position}\t\\N", date(2026, 1, 31),
                            Decimal("1234567.80"), None), strict=True))
    row.update(changed)
    return tuple(row.values())


def _written(database_url: str, rows: dict[str, list[tuple]], binary: bool) -> dict[str, list]:
    """The rows as stored, copied by `copy_rows` (binary where it can) or by a plain text COPY."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
        found = {}
        for table, written in rows.items():
            curs.execute(f"DELETE FROM {table}")  # noqa: S608
            columns = AUDIT if table == "audit_events" else ORDERS
            if binary:
                copy_rows(curs, table, columns, written)
            else:
                with curs.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in written:
                        copy.write_row(row)
            curs.execute(f"SELECT to_jsonb(r)::text AS row FROM {table} AS r ORDER BY position")  # noqa: S608
            found[table] = [row["row"] for row in curs.fetchall()]
        conn.rollback()
        return found


def test_binary_writes_what_text_wrote(database_url):
    beijing = timezone(timedelta(hours=8))
    rows = {
        "audit_events": [_audit(1), _audit(2, roles=[], effective_on=None, data="{}"),
                         _audit(3, recorded_at=datetime(2026, 4, 1, 7, 30, tzinfo=beijing), command_id=None)],
        "partner_orders": [_order(1), _order(2, amount=Decimal("0.00"), employee_id=uuid4()),
                           _order(3, amount=Decimal("-10.5"), order_id="ü")],
    }
    plan = copying._PLANS
    assert _written(database_url, rows, binary=True) == _written(database_url, rows, binary=False)
    assert all(plan[(table, AUDIT if table == "audit_events" else ORDERS)].binary for table in rows)
    assert all(copying._plan(None, table, AUDIT if table == "audit_events" else ORDERS).fits(written)
               for table, written in rows.items()), "these rows went as binary"


def test_a_value_of_another_type_sends_the_batch_as_text(database_url):
    # A str where a uuid goes, an int where a numeric goes, a naive timestamp, a datetime where a
    # date goes: a text COPY reads each its way; binary would refuse it or read it otherwise.
    odd = {
        "audit_events": [_audit(1), _audit(2, recorded_at=datetime(2026, 3, 1, 12, 0)),
                         _audit(3, stream_id=str(UUID(int=7)))],
        "partner_orders": [_order(1), _order(2, amount=5), _order(3, sold_on=datetime(2026, 1, 31, 12, 0))],
    }
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
        for table, written in odd.items():
            plan = copying._plan(curs, table, AUDIT if table == "audit_events" else ORDERS)
            assert plan.binary and plan.fits(written[:1]) and not plan.fits(written)
    assert _written(database_url, odd, binary=True) == _written(database_url, odd, binary=False)


def test_an_integer_out_of_its_columns_range_is_refused_as_text_refuses_it(database_url):
    # Binary would send the int's low bytes: 2**31 into an integer column read back as -2**31.
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as curs:
        curs.execute("CREATE TABLE copied_counts (small smallint, middle integer, large bigint)")
        columns = ("small", "middle", "large")
        for row in [(2 ** 15, 0, 0), (0, 2 ** 31, 0), (0, -(2 ** 31) - 1, 0), (0, 0, 2 ** 63)]:
            assert not copying._plan(curs, "copied_counts", columns).fits([row])
            with pytest.raises(psycopg.errors.NumericValueOutOfRange):
                copy_rows(curs, "copied_counts", columns, [row])
        copy_rows(curs, "copied_counts", columns, [(2 ** 15 - 1, -(2 ** 31), 2 ** 63 - 1)])
        assert curs.execute("SELECT small, middle, large FROM copied_counts").fetchall() == \
            [(2 ** 15 - 1, -(2 ** 31), 2 ** 63 - 1)]


def test_a_column_whose_type_changed_under_the_process_is_read_again_after_one_failed_batch(database_url):
    # A migration during a rolling upgrade: the types this process read are stale, the binary COPY
    # fails, and the batch's retry must read them again instead of failing until a restart.
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as curs:
        curs.execute("CREATE TABLE retyped (n integer)")
        copy_rows(curs, "retyped", ("n",), [(1,)])
        curs.execute("ALTER TABLE retyped ALTER COLUMN n TYPE numeric")
        with pytest.raises(psycopg.Error):  # "insufficient data left in message": 4 bytes, not a numeric
            copy_rows(curs, "retyped", ("n",), [(2,)])
        copy_rows(curs, "retyped", ("n",), [(3,)])  # the retry: as text, the types read again
        assert curs.execute("SELECT n FROM retyped ORDER BY n").fetchall() == [(Decimal(1),), (Decimal(3),)]
