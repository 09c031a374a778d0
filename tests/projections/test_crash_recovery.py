"""Exactly once under crashes: the projection worker is SIGKILLed at random moments during a
catch-up (a real `channel-domain project` process), restarted each time, and the read model
it leaves equals a clean rebuild, row for row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from channel_domain.application import SalesLine
from channel_domain.store.projecting import ProjectionRunner
from projections import all_projections
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract

CHANNEL_DOMAIN = str(Path(sys.executable).parent / "channel-domain")
KILLS = 15
SALES = 6000
TIERED_SALES = 2000
TIERED = {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]}


TABLES = [table for projection in all_projections() for table in projection.tables]


WHEN_WRITTEN = {"event_seals": "sealed_at"}  # the one column that says when, not what


def read_models(database_url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(database_url) as conn:
        models = {}
        for table in TABLES:
            rows = conn.execute(f"SELECT to_jsonb(r) - %s::text AS row FROM {table} AS r ORDER BY r",
                                (WHEN_WRITTEN.get(table, ""),)).fetchall()
            models[table] = [row[0] for row in rows]
        return models


def checkpoint(database_url: str) -> int:
    """The position every projection has reached."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT position FROM projection_checkpoints").fetchall()
    return min(row[0] for row in rows) if len(rows) == len(all_projections()) else 0


def record_tiered_sales(app, rng: random.Random) -> None:
    """Sales reported out of date order under tiered terms, returns, and amendments with past
    effective dates: the commission ledger's adjustments, under crashes too."""
    contract = signed_contract(app, partner(app, "retailer"), commission=TIERED)
    for chunk in range(4):
        lines = []
        for n in range(TIERED_SALES // 4):
            order = f"T-{chunk}-{n}"
            day = f"2026-0{rng.randint(2, 4)}-{rng.randint(1, 28):02d}"
            lines.append(SalesLine(contract, "sale", {"order_id": order, "amount": f"{rng.randint(1, 900)}000.00",
                                                      "sold_on": day}))
            if n % 7 == 0:
                lines.append(SalesLine(contract, "return", {"order_id": order, "amount": "500.00",
                                                            "returned_on": "2026-04-28"}))
        with as_("erp", "integration"):
            assert not any(app.import_sales(lines))
        with as_("mgr-1", "channel_manager"):
            rate = f"0.0{5 + chunk}"
            app.amend_contract(contract, effective_on=f"2026-0{2 + chunk % 3}-15", reason="new scale",
                               commission={"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"},
                                                                       {"rate": rate}]})


def test_killed_worker_leaves_the_read_models_equal_to_a_clean_rebuild(app, database_url):
    rng = random.Random(20261123)
    contract = signed_contract(app, partner(app))
    lines = [SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "10.00", "sold_on": "2026-02-01"})
             for n in range(SALES)]
    with as_("erp", "integration"):
        assert not any(app.import_sales(lines))
    record_tiered_sales(app, rng)
    head = app.event_recorder.max_notification_id()

    env = {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}
    kills = 0
    while checkpoint(database_url) < head:
        started_at = checkpoint(database_url)
        worker = subprocess.Popen([CHANNEL_DOMAIN, "project", "--batch-size", "23"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kills < KILLS:
            while checkpoint(database_url) == started_at and worker.poll() is None:
                time.sleep(0.002)  # wait until it is projecting, then kill it at a random moment
            time.sleep(rng.uniform(0, 0.03))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            kills += 1
        else:
            deadline = time.monotonic() + 60
            while checkpoint(database_url) < head and time.monotonic() < deadline:
                time.sleep(0.1)
            worker.terminate()
            worker.wait(timeout=10)
    survived = read_models(database_url)
    print(f"worker killed {kills} times during catch-up; {sum(map(len, survived.values()))} rows")
    assert kills >= 5, "the worker should have been killed mid catch-up several times"

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.execute("DELETE FROM projection_checkpoints")
    runner = ProjectionRunner(app, all_projections())
    for projection in runner.projections:
        runner.catch_up(projection)
    rebuilt = read_models(database_url)
    assert len(rebuilt["audit_events"]) == head
    assert {line["kind"] for line in rebuilt["commission_lines"]} == {"sale", "return", "adjustment"}
    assert [seal["position"] for seal in rebuilt["event_seals"]] == list(range(1, head + 1))
    assert survived == rebuilt
