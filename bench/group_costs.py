"""Issue 18 diagnostic: what a sale's append costs PostgreSQL and this process, per command, written
four ways on one connection — the profile behind group commit (store/group_commit.py):

- alone: one autocommitted `append_events` call a command (as before group commit);
- pipelined, savepoints: a transaction of G calls, each in a savepoint (so one can fail alone),
  sent in psycopg's pipeline mode;
- pipelined: the same without savepoints;
- one call: one `append_events` call for G commands (what group commit does).

    PYTHONPATH=src:bench .venv/bin/python bench/group_costs.py [COMMANDS] [G] [--url URL]

PostgreSQL's CPU is read from /proc for this connection's backend, so the server must run on
this machine.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, date, datetime

import psycopg
from common import bench_database, cpu_seconds, server_url
from eventsourcing.persistence import StoredEvent

from channel_domain.store.recorder import _APPEND_EVENTS, SALE_RECORDED_TOPIC, Append, EventFacts, _append_parameters

STATE = (b'{"order_id":"O-1","amount":{"_type_":"decimal_str","_data_":"100.00"},'
         b'"sold_on":{"_type_":"date_iso","_data_":"2026-03-02"}}')
SELLER = uuid.UUID(int=7)

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("commands", nargs="?", type=int, default=4000)
    parser.add_argument("group", nargs="?", type=int, default=4)
    parser.add_argument("--url")
    args = parser.parse_args()
    commands, size = args.commands - args.commands % args.group, args.group
    with bench_database(server_url(args.url)) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO selling_gates (record_id, version) VALUES (%s, 1)", (SELLER,))
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        streams = [uuid.uuid4() for _ in range(size * 3)]
        versions = dict.fromkeys(streams, 0)
        cursor = conn.cursor()

        def sale(k: int) -> Append:
            stream = streams[k % len(streams)]
            versions[stream] += 1
            event = StoredEvent(stream, versions[stream], SALE_RECORDED_TOPIC, STATE)
            return Append([event], [EventFacts(datetime.now(UTC), date(2026, 3, 2))], None, {SELLER: 5})

        def alone(n: int) -> None:
            for k in range(n):
                cursor.execute(_APPEND_EVENTS, _append_parameters([sale(k)]), prepare=True)
                cursor.fetchall()

        def pipelined(n: int, savepoints: bool) -> None:
            for k in range(0, n, size):
                with conn.transaction(), conn.pipeline():
                    for j in range(size):
                        if savepoints:
                            cursor.execute("SAVEPOINT command")
                        cursor.execute(_APPEND_EVENTS, _append_parameters([sale(k + j)]), prepare=True)
                        if savepoints:
                            cursor.execute("RELEASE SAVEPOINT command")

        def one_call(n: int) -> None:
            for k in range(0, n, size):
                cursor.execute(_APPEND_EVENTS, _append_parameters([sale(k + j) for j in range(size)]), prepare=True)
                cursor.fetchall()

        ways = {"alone": alone, "pipelined, savepoints": lambda n: pipelined(n, True),
                "pipelined": lambda n: pipelined(n, False), f"one call for {size}": one_call}
        for _ in range(2):
            for name, write in ways.items():
                write(200)
                server, client, began = cpu_seconds(backend), time.process_time(), time.perf_counter()
                write(commands)
                server, client = cpu_seconds(backend) - server, time.process_time() - client
                print(f"{name:22s} {commands / (time.perf_counter() - began):7,.0f} commands/s; CPU a command:"
                      f" PostgreSQL {1000 * server / commands:.3f} ms, this process {1000 * client / commands:.3f} ms")


if __name__ == "__main__":
    main()
