"""Append throughput: raw psycopg ceiling vs the stock `eventsourcing` recorder vs ours.

One event per transaction, 1 and 4 writer threads, all on the same PostgreSQL in one run, so
the ratios hold on a noisy shared machine even when the absolute figures drift.

    .venv/bin/python bench/append.py [--events 2000] [--url postgresql://...]

Without --url it uses CHANNEL_DOMAIN_DATABASE_URL or the embedded server. It creates and
drops its own database.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from common import arguments, bench_database
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from channel_domain.store.recorder import EventFacts, EventRecorder

STATE = b'{"order_id":"O-1","amount":{"_type_":"decimal_str","_data_":"100.00"}}'


def timed(writers: int, events: int, append: Callable[[], None]) -> float:
    per_writer = events // writers
    start = threading.Barrier(writers + 1)

    def run() -> None:
        start.wait()
        for _ in range(per_writer):
            append()

    threads = [threading.Thread(target=run) for _ in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return per_writer * writers / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    args = arguments(parser)
    with bench_database(args.url) as url:
        run(url, args.events)


def run(url: str, events: int) -> None:
    params = conninfo_to_dict(url)
    datastore = PostgresDatastore(
        dbname=str(params["dbname"]), host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", 5432)), user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")), pool_size=6,
    )
    stock = PostgresApplicationRecorder(datastore, events_table_name="stock_events")
    stock.create_table()
    ours = EventRecorder(datastore)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")

    local = threading.local()

    def raw_append() -> None:
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

    def event() -> StoredEvent:
        return StoredEvent(uuid.uuid4(), 1, "bench:Sale", STATE)

    def stock_append() -> None:
        stock.insert_events([event()])

    def our_append() -> None:
        ours.insert_events([event()], facts=[EventFacts(datetime.now(UTC), None)])

    results = {}
    for writers in (1, 4):
        for label, append in (("raw psycopg", raw_append), ("stock recorder", stock_append), ("channel-domain", our_append)):
            results[(label, writers)] = timed(writers, events, append)
    print(f"{'appends/s (1 event per txn)':32} {'1 writer':>10} {'4 writers':>10}")
    for label in ("raw psycopg", "stock recorder", "channel-domain"):
        print(f"{label:32} {results[(label, 1)]:10.0f} {results[(label, 4)]:10.0f}")
    for writers in (1, 4):
        ceiling, peer, us = (results[(k, writers)] for k in ("raw psycopg", "stock recorder", "channel-domain"))
        print(f"{writers} writer(s): channel-domain = {us / ceiling:.2f}x raw, {us / peer:.2f}x stock;"
              f" stock = {peer / ceiling:.2f}x raw")
    datastore.close()


if __name__ == "__main__":
    main()
