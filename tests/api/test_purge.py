"""Retention of idempotency outcomes and keyed-import line records: `channel-domain purge`
deletes what is older than the window and nothing newer; a repeat inside the window still
replays, one after the purge is a new command; a key in flight is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

import api.cli
from api.cli import app as cli
from channel_domain.store import retention
from tests.api.flows import SPECIALIST, post

BIN = Path(sys.executable).parent
SOURCE = Path(api.cli.__file__).resolve().parents[1]  # the src/ under test, for the subprocess
WINDOW = timedelta(days=30)


def register(api, key: str, name: str):
    return post(api, "/v1/partners", {"kind": "retailer", "name": name}, SPECIALIST, 201, **{"Idempotency-Key": key})


def age(database_url: str, table: str, key: str, days: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET recorded_at = now() - make_interval(days => %s)"  # noqa: S608
                     " WHERE idempotency_key = %s", (days, key))


def keys(database_url: str, table: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute(f"SELECT idempotency_key FROM {table}")}  # noqa: S608


def import_lines(database_url: str, *rows: tuple[str, int]) -> None:
    """Lines a keyed import cut short had booked, `days` ago (what `append_events` writes)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for key, days in rows:
            conn.execute("INSERT INTO keyed_import_lines (actor, idempotency_key, lines, digests, recorded_at)"
                         " VALUES ('erp', %s, '{1,2}', '{11,12}', now() - make_interval(days => %s))", (key, days))


def test_outcomes_older_than_the_window_go_and_their_repeat_is_a_new_command(api):
    old, recent = register(api, "k-old", "Old Shop"), register(api, "k-recent", "Recent Shop")
    age(api.database_url, "command_outcomes", "k-old", 31)
    age(api.database_url, "command_outcomes", "k-recent", 29)
    import_lines(api.database_url, ("import-old", 31), ("import-recent", 29))

    with psycopg.connect(api.database_url, autocommit=True) as conn:
        assert retention.count(conn, WINDOW).rows == {"command_outcomes": 1, "keyed_import_lines": 1}
        done = retention.purge(conn, WINDOW, batch_size=1)

    assert done.rows == {"command_outcomes": 1, "keyed_import_lines": 1}
    assert keys(api.database_url, "command_outcomes") == {"k-recent"}
    assert keys(api.database_url, "keyed_import_lines") == {"import-recent"}
    again = register(api, "k-recent", "Recent Shop")  # inside the window: the first answer
    assert again.headers["idempotent-replayed"] == "true" and again.json() == recent.json()
    fresh = register(api, "k-old", "Old Shop")  # after the window and a purge: a new command
    assert "idempotent-replayed" not in fresh.headers and fresh.json()["id"] != old.json()["id"]
    assert register(api, "k-old", "Old Shop").json() == fresh.json()  # and it is kept from now on


def test_an_outcome_whose_key_is_in_flight_is_left_for_the_next_purge(api):
    for n in range(5):
        register(api, f"k-{n}", f"Shop {n}")
        age(api.database_url, "command_outcomes", f"k-{n}", 40)
    recorder = api.department.event_recorder

    with recorder.key_in_flight("spec-1", "k-2") as held, psycopg.connect(api.database_url, autocommit=True) as conn:
        assert held
        done = retention.purge(conn, WINDOW, batch_size=2)
    assert done.rows["command_outcomes"] == 4 and keys(api.database_url, "command_outcomes") == {"k-2"}

    with psycopg.connect(api.database_url, autocommit=True) as conn:
        assert retention.purge(conn, WINDOW).rows["command_outcomes"] == 1
    assert keys(api.database_url, "command_outcomes") == set()


def test_a_window_under_25_hours_or_over_100_years_is_refused(database_url, monkeypatch):
    assert retention.retention_window({}) == timedelta(days=30)
    assert retention.retention_window({retention.RETENTION_VARIABLE: "7"}) == timedelta(days=7)
    assert retention.parse_window("36h") == timedelta(hours=36)
    assert retention.parse_window("25h") == timedelta(hours=25)
    for huge in ("9999999999d", "1000000w", "36501d"):  # past what a date can subtract
        with pytest.raises(ValueError, match="over 100 years"):
            retention.parse_window(huge)
    for short in ("12h", "0", "0.5d", "1d", "24h"):  # "24h": recorded_at is before the answer
        with pytest.raises(retention.WindowTooShort):
            retention.parse_window(short)
    with pytest.raises(retention.WindowTooShort):
        retention.retention_window({retention.RETENTION_VARIABLE: "0"})
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    monkeypatch.setenv(retention.RETENTION_VARIABLE, "0")
    refused = CliRunner().invoke(cli, ["purge"])
    assert refused.exit_code == 2 and "under 25 hours" in refused.output
    monkeypatch.delenv(retention.RETENTION_VARIABLE)
    refused = CliRunner().invoke(cli, ["purge", "--older-than", "23h"])
    assert refused.exit_code == 2 and "24 hours" in refused.output


def test_the_purge_command_counts_then_deletes_in_batches(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO command_outcomes (actor, idempotency_key, fingerprint, outcome, recorded_at)"
                     " SELECT 'erp', 'old-' || n, 'f', '{}'::jsonb, now() - interval '45 days' - n * interval '1 s'"
                     " FROM generate_series(1, 2500) n")
        conn.execute("INSERT INTO command_outcomes (actor, idempotency_key, fingerprint, outcome, recorded_at)"
                     " SELECT 'erp', 'new-' || n, 'f', '{}'::jsonb, now() - interval '5 days'"
                     " FROM generate_series(1, 10) n")
    import_lines(database_url, ("import-old", 45), ("import-new", 5))

    def channel_domain(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "channel-domain"), *args],
            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url, **env,
                 "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])},
            capture_output=True, text=True, timeout=120, check=False,
        )

    dry = channel_domain("purge", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "command_outcomes: 2500 rows" in dry.stdout and "keyed_import_lines: 1 rows" in dry.stdout
    assert "nothing deleted" in dry.stdout and len(keys(database_url, "command_outcomes")) == 2510

    narrower = channel_domain("purge", "--dry-run", **{retention.RETENTION_VARIABLE: "60"})
    assert "command_outcomes: 0 rows" in narrower.stdout

    done = channel_domain("purge", "--batch-size", "1000")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "command_outcomes: 2500 rows deleted" in done.stdout and "keyed_import_lines: 1 rows deleted" in done.stdout
    assert keys(database_url, "command_outcomes") == {f"new-{n}" for n in range(1, 11)}
    assert keys(database_url, "keyed_import_lines") == {"import-new"}

    wider = channel_domain("purge", "--older-than", "2d")  # overrides the window
    assert wider.returncode == 0 and "command_outcomes: 10 rows deleted" in wider.stdout
    assert keys(database_url, "command_outcomes") == set()
