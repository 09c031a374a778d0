"""Issue 18 diagnostic: the CPU psycopg spends turning one sale's `append_events` parameters
into their binary form, on a cursor's first run of the query (fresh adapters, as a new cursor
per append had) and on its next runs (adapters kept, as the recorder's one cursor per pooled
connection has), with the optional arrays empty and as NULL.

    PYTHONPATH=src python bench/append_params.py postgresql://…/db   # any database
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, date, datetime

import psycopg
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

from channel_domain.store.recorder import _APPEND_EVENTS

ROUNDS = 3
CALLS = 3000


def sale_parameters(empty: list | None) -> tuple:
    """A sale's parameters: one event, the partner and employee checked, the rest unused."""
    return ([uuid.uuid4()], [5], ["channel_domain.contract:Contract.SaleRecorded"], [b'{"order_id":"SO-1"}' * 10],
            [datetime.now(UTC)], [date.today()], None, None, None, None, *([empty] * 15),
            [uuid.uuid4(), uuid.uuid4()], [3, 4], None, None, None, None, None, None, None, None)


def microseconds(conn: psycopg.Connection, parameters: tuple, kept: bool) -> float:
    query = PostgresQuery(Transformer.from_context(conn))
    query.convert(_APPEND_EVENTS, parameters)
    began = time.perf_counter()
    for _ in range(CALLS):
        if not kept:
            query = PostgresQuery(Transformer.from_context(conn))
        query.convert(_APPEND_EVENTS, parameters)
    return (time.perf_counter() - began) / CALLS * 1e6


def main() -> None:
    with psycopg.connect(sys.argv[1]) as conn:
        for round_ in range(ROUNDS):
            figures = {f"{'kept' if kept else 'fresh'} adapters, unused arrays {'NULL' if empty is None else 'empty'}":
                       microseconds(conn, sale_parameters(empty), kept)
                       for kept in (False, True) for empty in ([], None)}
            print(f"round {round_ + 1}: " + "; ".join(f"{name} {us:.1f} µs" for name, us in figures.items()))


if __name__ == "__main__":
    main()
