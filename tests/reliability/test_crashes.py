"""R3, exactly once under crashes: the projection worker (a real `channel-domain project`
process) is SIGKILLed at 50 random moments during a large catch-up, restarted each time, and the
read models it leaves equal a clean rebuild, row for row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from channel_domain.application import SalesLine
from channel_domain.store.projecting import ProjectionRunner
from projections import all_projections
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract
from tests.projections.read_model_rows import TABLES, read_models, record_tiered_sales

CHANNEL_DOMAIN = str(Path(sys.executable).parent / "channel-domain")
KILLS = 50
SALES = 10_000  # with the tiered sales, about twice what 50 kills get through on this machine


def checkpoint(database_url: str) -> int:
    """The position every projection has reached."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT position FROM projection_checkpoints").fetchall()
    return min(row[0] for row in rows) if len(rows) == len(all_projections()) else 0


# A guard against a hang, not a time limit: 50 kills of a worker catching up 12 000 events took up to 290 s on a loaded two-core CI machine.
@pytest.mark.timeout(900)
def test_killed_worker_leaves_the_read_models_equal_to_a_clean_rebuild(app, database_url, figure):
    rng = random.Random(20261123)
    contract = signed_contract(app, partner(app))
    lines = [SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "10.00", "sold_on": "2026-02-01"})
             for n in range(SALES)]
    with as_("erp", "integration"):
        assert not any(app.import_sales(lines))
    record_tiered_sales(app, rng)
    head = app.event_recorder.max_notification_id()

    env = {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}
    kills, at_last_kill = 0, 0
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
            at_last_kill = checkpoint(database_url)
        else:
            deadline = time.monotonic() + 60
            while checkpoint(database_url) < head and time.monotonic() < deadline:
                time.sleep(0.1)
            worker.terminate()
            worker.wait(timeout=10)
    survived = read_models(database_url)
    assert kills == KILLS, "the catch-up ended before every kill: make the log longer"

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
    differing = sum(survived[table] != rebuilt[table] for table in TABLES)
    figure(f"R3: projection worker SIGKILLed {kills} times during a catch-up of {head} events (the last at"
           f" position {at_last_kill}):"
           f" {sum(map(len, survived.values()))} read-model rows, {differing} of {len(TABLES)} tables"
           " unlike a clean rebuild")
    assert survived == rebuilt
