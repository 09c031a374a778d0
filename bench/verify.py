"""Sealing and verifying a large log.

    .venv/bin/python bench/verify.py [--events 1000000] [--url postgresql://...]

Fills a scratch database with copies of a real event (through the recorder, which hashes
them, 1 000 a transaction, in streams of 100 versions), seals them with the `audit_seals` projection, then times `verify()` — which
recomputes every hash and seal in Python — beside a raw sequential read of the same rows.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, date, datetime

from common import arguments, bench_database
from eventsourcing.persistence import StoredEvent

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.store.integrity import verify
from channel_domain.store.recorder import EventFacts
from channel_domain.store.projecting import ProjectionRunner
from projections import AuditSeals

STREAM_LENGTH = 100
CHUNK = 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = arguments(parser)
    with bench_database(args.url) as url:
        app = ChannelDepartment(url)
        with acting_as("spec", ["channel_specialist"]):
            app.register_partner(kind="retailer", name="Template")
        datastore = app.event_recorder.datastore
        template = app.event_recorder.select_notifications(start=1, limit=1)[0]
        began = time.perf_counter()
        for first in range(0, args.events - 1, CHUNK):
            numbers = range(first, min(first + CHUNK, args.events - 1))
            stored = [StoredEvent(uuid.UUID(int=n // STREAM_LENGTH + 1), n % STREAM_LENGTH + 1, template.topic,
                                  template.state) for n in numbers]
            facts = [EventFacts(datetime.now(UTC), date(2026, 3, 1)) for _ in numbers]
            app.event_recorder.insert_events(stored, facts=facts)
        print(f"{args.events:,} events written through the recorder in {time.perf_counter() - began:.1f} s")

        runner = ProjectionRunner(app, [AuditSeals()], batch_size=5000)
        began = time.perf_counter()
        runner.catch_up(runner.projections[0])
        sealing = time.perf_counter() - began
        print(f"sealed in {sealing:.1f} s ({args.events / sealing:,.0f} events/s)")

        began = time.perf_counter()
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor(name="raw") as curs:
            curs.itersize = 10_000
            curs.execute("SELECT * FROM events e FULL JOIN event_seals s ON s.position = e.position ORDER BY 1")
            rows = sum(1 for _ in curs)
        raw = time.perf_counter() - began
        print(f"raw read of events joined with seals: {rows:,} rows in {raw:.1f} s")

        began = time.perf_counter()
        result = verify(datastore)
        took = time.perf_counter() - began
        print(f"verify: ok={result.ok} through {result.verified_through:,} in {took:.1f} s "
              f"({result.events / took:,.0f} events/s; {took / raw:.1f}x the raw read)")
        app.close()


if __name__ == "__main__":
    main()
