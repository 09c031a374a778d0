"""Rows written by `COPY … (FORMAT BINARY)`: the read models' bulk writes.

A text COPY has psycopg turn every value into text in Python (a UUID's `hex`, a Decimal's
`str`) and PostgreSQL parse it back; binary sends each value as the server stores it. Over a
catch-up of ~100 000 events the read models copy about 800 000 rows; for a row of
`partner_orders` binary costs about half the client CPU and half the wall time of text
(bench/read_model_costs.py, issue 18).

Binary leaves nothing to the server to interpret, so a value of another Python type than the
column's (a `str` where a `uuid` goes, a naive timestamp) would be refused or, worse, read
otherwise than text would read it. Each row is checked first; a batch holding any row that
does not match its columns' types is copied as text, exactly as before, so the rows written are
the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

_NONE = type(None)


def _aware(value: Any) -> bool:
    return value is None or value.tzinfo is not None


def _in_range(bits: int) -> Callable[[Any], bool]:
    # A binary field is the value's own bytes: psycopg would wrap an int too large for the
    # column (2**31 into an integer as -2**31), where text COPY refuses it.
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return lambda value: value is None or low <= value <= high


def _texts(value: Any) -> bool:
    return value is None or all(type(item) is str for item in value)


def _jsonb(value: Any) -> Any:
    # A jsonb field in binary is a version byte, then the JSON text; sent as bytes, as PostgreSQL
    # reads each field by its column's type, whatever psycopg was told.
    return None if value is None else b"\x01" + value.encode()


# PostgreSQL type -> (what psycopg dumps it as, the Python type its values must be of, a further
# check of the value, a conversion before it is sent).
_KINDS: dict[str, tuple[str, type, Callable[[Any], bool] | None, Callable[[Any], Any] | None]] = {
    "uuid": ("uuid", UUID, None, None),
    "text": ("text", str, None, None),
    "bigint": ("int8", int, _in_range(64), None),
    "integer": ("int4", int, _in_range(32), None),
    "smallint": ("int2", int, _in_range(16), None),
    "numeric": ("numeric", Decimal, None, None),
    "date": ("date", date, None, None),  # a datetime is not a date here: type, not isinstance
    "timestamp with time zone": ("timestamptz", datetime, _aware, None),
    "bytea": ("bytea", bytes, None, None),
    "boolean": ("bool", bool, None, None),
    "text[]": ("text[]", list, _texts, None),
    "jsonb": ("bytea", str, None, _jsonb),
}


class _Plan:
    def __init__(self, types: list[str]) -> None:
        kinds = [_KINDS.get(kind) for kind in types]
        self.binary = all(kind is not None for kind in kinds)
        known = [kind for kind in kinds if kind is not None]
        self.width = len(kinds)
        self.dump_as = [kind[0] for kind in known]
        self.allowed = [frozenset((kind[1], _NONE)) for kind in known]
        self.checks = [(n, kind[2]) for n, kind in enumerate(known) if kind[2] is not None]
        self.converts = [(n, kind[3]) for n, kind in enumerate(known) if kind[3] is not None]

    def fits(self, rows: Sequence[tuple]) -> bool:
        """Whether every value is exactly of its column's type (None anywhere)."""
        allowed, width, checks, contains = self.allowed, self.width, self.checks, frozenset.__contains__
        for row in rows:
            if len(row) != width or not all(map(contains, allowed, map(type, row))):
                return False
            for n, check in checks:
                if not check(row[n]):
                    return False
        return True

    def converted(self, rows: Sequence[tuple]) -> Sequence[tuple]:
        if not self.converts:
            return rows
        out = []
        for row in rows:
            changed = list(row)
            for n, convert in self.converts:
                changed[n] = convert(changed[n])
            out.append(changed)
        return out


_PLANS: dict[tuple[str, tuple[str, ...]], _Plan] = {}


def _plan(cursor: Any, table: str, columns: tuple[str, ...]) -> _Plan:
    """The columns' types, read once per process: a rebuild's shadow tables are copies of the
    live ones (`LIKE … INCLUDING ALL`), of the same types."""
    key = (table, columns)
    plan = _PLANS.get(key)
    if plan is None:
        cursor.execute(
            "SELECT c.name, format_type(a.atttypid, NULL) AS type FROM unnest(%s::text[]) WITH ORDINALITY AS c(name, n)"
            " LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(%s) AND a.attname = c.name AND NOT a.attisdropped"
            " ORDER BY c.n",
            (list(columns), table),
        )
        plan = _PLANS[key] = _Plan([row["type"] if isinstance(row, dict) else row[1] for row in cursor.fetchall()])
    return plan


def copy_rows(cursor: Any, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """COPY `rows` (tuples in the order of `columns`) into `table`: binary when every value is of
    its column's type, else as text."""
    if not rows:
        return
    names = tuple(columns)
    plan = _plan(cursor, table, names)
    listed = ", ".join(names)
    if plan.binary and plan.fits(rows):
        try:
            with cursor.copy(f"COPY {table} ({listed}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(plan.dump_as)
                for row in plan.converted(rows):
                    copy.write_row(row)
        except psycopg.Error:
            # The column's type may have changed under this process (a migration during a
            # rolling upgrade): forget what was read of it, so that the batch's retry reads
            # the types again rather than failing the same way until a restart.
            _PLANS.pop((table, names), None)
            raise
        return
    with cursor.copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
