"""Rebuilding a read model in shadow tables while the live one keeps serving and the live
worker keeps projecting new events; the switch loses and duplicates nothing."""

from __future__ import annotations

import random
import threading

import psycopg
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.store.projecting import ProjectionRunner
from channel_domain.store.rebuilding import Rebuilder
from projections import AuditTrail, all_projections
from tests.channel_domain.helpers import as_
from tests.projections.read_model_rows import read_models, record_tiered_sales


def positions(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM audit_events ORDER BY position")]


def test_rebuild_while_writers_and_the_live_worker_run(app, database_url):
    with as_("spec-1", "channel_specialist"):
        for n in range(300):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    live = ProjectionRunner(app, [AuditTrail()], batch_size=50)
    live.catch_up(live.projections[0])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_events WHERE position % 10 = 0")  # a read model gone wrong

    stop = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            with as_("spec-2", "channel_specialist"):
                app.register_partner(kind="retailer", name=f"Late {n}")
            n += 1

    threads = [threading.Thread(target=keep_writing),
               threading.Thread(target=live.run, args=(stop,), kwargs={"idle_wait": 0.01})]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    try:
        report = Rebuilder(app, AuditTrail(), batch_size=40).rebuild(seen.append)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert seen == sorted(seen) and report.position == seen[-1]
    assert report.rows["audit_events"][1] >= 300
    live.catch_up(live.projections[0])
    head = app.event_recorder.max_notification_id()
    assert positions(database_url) == list(range(1, head + 1))


def test_rebuild_command_shows_progress_and_switches(app, database_url, monkeypatch):
    with as_("spec-1", "channel_specialist"):
        for n in range(20):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    runner = ProjectionRunner(app, all_projections())
    for projection in runner.projections:
        runner.catch_up(projection)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM partner_directory")
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["rebuild", "partner_activity"])
    assert result.exit_code == 0, result.output
    assert "switched partner_activity at position 20" in result.output
    assert "partner_directory: 0 rows before, 20 after" in result.output
    result = CliRunner().invoke(cli, ["rebuild", "commissions"])
    assert result.exit_code == 0, result.output
    with psycopg.connect(database_url) as conn:  # the views over the switched tables came along
        assert conn.execute("SELECT count(*) FROM audit_findings").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM commission_statements").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM audit_findings_0008").fetchone() is not None
    assert CliRunner().invoke(cli, ["rebuild", "no_such_model"]).exit_code == 2
    refused = CliRunner().invoke(cli, ["rebuild", "audit_seals"])  # evidence is never rebuilt
    assert refused.exit_code == 2 and "never rebuilt" in refused.output


def test_read_models_shared_out_among_processes_rebuild_to_what_one_worker_built(app, database_url):
    rng = random.Random(7)
    record_tiered_sales(app, rng)
    with as_("spec-1", "channel_specialist"):
        for n in range(50):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    rebuildable = [p for p in all_projections() if getattr(p, "rebuildable", True)]
    ProjectionRunner(app, rebuildable, batch_size=64).catch_up_all()
    built_by_one_worker = read_models(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM commission_lines WHERE position % 3 = 0")  # gone wrong
        conn.execute("DELETE FROM partner_directory")
    seen: list[int] = []
    fresh = [type(p)() for p in rebuildable]
    report = Rebuilder(app, *fresh, batch_size=64).rebuild(seen.append, processes=2)
    assert seen and seen == sorted(seen) and report.position == app.event_recorder.max_notification_id()
    rebuilt = read_models(database_url)
    assert {t: rows for t, rows in rebuilt.items() if t != "event_seals"} == \
        {t: rows for t, rows in built_by_one_worker.items() if t != "event_seals"}
