"""Append throughput, one event per transaction, 1 and 4 writer threads, side by side:

- the ceiling: raw psycopg inserts into a table shaped like `events`;
- the peer: the stock `eventsourcing` 9.5 PostgreSQL recorder;
- P1, us: a domain command (record a sale: load the contract, check the rules, commit);
  with 4 writers also as before group commit, each append in a transaction of its own.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

import psycopg
from common import signed_contract
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment

STATE = b'{"order_id":"O-1","amount":{"_type_":"decimal_str","_data_":"100.00"}}'
WRITERS = (1, 4)


class Appends(NamedTuple):
    per_s: float
    # This process's CPU (every thread's) per append: the command's own Python runs one
    # thread at a time under the GIL, so 1000 / cpu_ms bounds P1 however many writers there are.
    cpu_ms: float


def timed(writers: int, events: int, append: Callable[[int], None]) -> Appends:
    """Events per second with `writers` threads, each calling append(its number) in turn."""
    per_writer = events // writers
    start = threading.Barrier(writers + 1)
    failures: list[BaseException] = []

    def run(writer: int) -> None:
        start.wait()
        try:
            for _ in range(per_writer):
                append(writer)
        except BaseException as error:  # noqa: BLE001 - reported below, not swallowed
            failures.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    done = per_writer * writers
    return Appends(done / (time.perf_counter() - began), (time.process_time() - cpu) / done * 1000)


def measure(url: str, events: int) -> dict[tuple[str, int], Appends]:
    """{(who, writers): appends/s and CPU per append} for who in raw, stock, ours, alone (ours
    without group commit); ("groups", writers): ours' commands per group, as `per_s`."""
    params = conninfo_to_dict(url)
    datastore = PostgresDatastore(
        dbname=str(params["dbname"]), host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", 5432)), user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")), pool_size=6,
    )
    stock = PostgresApplicationRecorder(datastore, events_table_name="stock_events")
    stock.create_table()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
    app = ChannelDepartment(url)
    alone = ChannelDepartment(url, env={"GROUP_COMMIT_MAX_COMMANDS": "1"})
    contracts = [signed_contract(app, "retailer", f"Writer {n}") for n in range(max(WRITERS))]
    # Contracts of its own, signed through it: a process that wrote another's records would find
    # its cached copies stale, mark them contended and read ahead before every command (record_cache.py).
    contracts_alone = [signed_contract(alone, "retailer", f"Alone {n}") for n in range(max(WRITERS))]
    orders = itertools.count()
    local = threading.local()

    def raw(_: int) -> None:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(url, autocommit=True)
        with local.conn.transaction():
            local.conn.execute(
                "INSERT INTO raw_events (originator_id, originator_version, topic, state,"
                " recorded_at, tx_id, hash, prev_hash) VALUES (%s, 1, 'bench:Sale', %s, now(),"
                " pg_current_xact_id(), %s, %s)",
                (uuid.uuid4(), STATE, hashlib.sha256(STATE).digest(), bytes(32)),
                prepare=True,
            )

    def peer(_: int) -> None:
        stock.insert_events([StoredEvent(uuid.uuid4(), 1, "bench:Sale", STATE)])

    def selling(department: ChannelDepartment, its_contracts: list) -> Callable[[int], None]:
        def sell(writer: int) -> None:
            with acting_as("erp", ["integration"]):
                department.record_sale(its_contracts[writer], f"SO-{next(orders)}", "100.00", "2026-03-02")
        return sell

    ours, ours_alone = selling(app, contracts), selling(alone, contracts_alone)

    results = {}
    grouped = app.event_recorder.group_commit.stats
    try:
        for writers in WRITERS:
            # "alone" first: a later run meets a larger table, and grouping must not gain by that.
            for who, append in (("raw", raw), ("stock", peer), ("alone", ours_alone), ("ours", ours)):
                if who != "alone" or writers > 1:  # one writer never meets another's append
                    before = (grouped.groups, grouped.commands)
                    results[(who, writers)] = timed(writers, events, append)
                    if who == "ours":
                        results[("groups", writers)] = Appends(
                            (grouped.commands - before[1]) / (grouped.groups - before[0]), 0.0)
    finally:
        alone.close()
        app.close()
        datastore.close()
    return results
