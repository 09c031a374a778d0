"""`channel-domain migrate` creates the schema once and is safe to run again, even at once, even
after a `migrate` was killed; the commands that only read never migrate."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.store.database import scratch_database
from channel_domain.store.migrations import MIGRATIONS_DIR, migrate, not_applied
from tests.channel_domain.helpers import as_


def all_migrations() -> list[str]:
    return sorted(path.stem for path in MIGRATIONS_DIR.iterdir() if path.suffix in (".sql", ".py"))


def test_migrate_on_a_migrated_database_applies_nothing(database_url):
    assert migrate(database_url) == []


def test_concurrent_migrations_apply_each_migration_once(server_url):
    with scratch_database(server_url, prefix="cd_test_migrate") as url:
        applied: list[list[str]] = []
        start = threading.Barrier(4)

        def run() -> None:
            start.wait()
            applied.append(migrate(url))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(m for batch in applied for m in batch) == all_migrations()
        with psycopg.connect(url) as conn:
            tables = {row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"events", "snapshots", "command_outcomes", "contracts_in_force"} <= tables


# The migration lock is a session advisory lock: nothing a dead `migrate` leaves behind blocks the next.

GATE = "migration_gate"  # a table the test holds locked, so that a migration stops half-way for as long as it likes


def gated_migrations(folder: Path) -> Path:
    """The real migrations plus one more that waits for the test's lock on GATE."""
    for path in MIGRATIONS_DIR.iterdir():
        if path.suffix in (".sql", ".py"):
            shutil.copy(path, folder / path.name)
    (folder / "9999.gated.sql").write_text(
        "CREATE TABLE after_the_gate (id int);\n"
        f"LOCK TABLE {GATE} IN ACCESS EXCLUSIVE MODE;\n")
    return folder


def start_migrate(url: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from channel_domain.store.migrations import migrate;"
         " print(migrate(sys.argv[1], directory=Path(sys.argv[2])))", url, str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(url: str, condition: str, process: subprocess.Popen | None = None) -> None:
    """Until pg_stat_activity/pg_locks show `condition` (a SQL boolean over a backend's
    `query`, `wait_event_type` and `lock_waited` on an advisory lock)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT EXISTS (SELECT FROM pg_stat_activity a WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND (" + condition + "))"
        ).fetchone()[0]:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"migrate ended early: {process.stdout.read()}")
            assert time.monotonic() < deadline, f"never saw {condition}"
            time.sleep(0.05)


STOPPED_AT_GATE = f"a.wait_event_type = 'Lock' AND a.query LIKE '%LOCK TABLE {GATE}%'"
WAITING_FOR_THE_MIGRATION_LOCK = ("EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'"
                                  " AND NOT l.granted)")


def test_a_stale_yoyo_lock_row_blocks_nothing(database_url, monkeypatch):
    # What yoyo's own lock left behind when a `migrate` was killed: every command then failed with LockTimeout.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS yoyo_lock (locked INT DEFAULT 1, ctime TIMESTAMP, pid INT NOT NULL,"
                     " PRIMARY KEY (locked))")
        conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    assert migrate(database_url) == []
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    for command in (["migrate"], ["tokens", "list"], ["verify"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 0, (command, result.output)


@contextmanager
def closed_gate(url: str) -> Iterator[psycopg.Connection]:
    """A connection holding the gate table locked: the gated migration waits until it rolls back."""
    with psycopg.connect(url) as gate:
        gate.execute(f"CREATE TABLE {GATE} (id int)")
        gate.commit()
        gate.execute(f"LOCK TABLE {GATE} IN ACCESS EXCLUSIVE MODE")
        yield gate


def test_a_migrate_killed_half_way_does_not_block_the_next(server_url, tmp_path):
    folder = gated_migrations(tmp_path)
    with scratch_database(server_url, prefix="cd_test_migrate") as url:
        with closed_gate(url) as gate:
            killed = start_migrate(url, folder)
            try:
                wait_for(url, STOPPED_AT_GATE, killed)
            finally:
                killed.kill()
                killed.wait()
            gate.rollback()  # its backend now finishes the statement, finds its client gone and ends
        # The killed run's transaction rolled back, so the gated migration is still to apply, once.
        assert migrate(url, directory=folder) == ["9999.gated"]
        assert migrate(url, directory=folder) == []


def test_a_second_migrate_waits_for_a_long_first_then_applies_nothing(server_url, tmp_path):
    folder = gated_migrations(tmp_path)
    with scratch_database(server_url, prefix="cd_test_migrate") as url:
        with closed_gate(url) as gate:
            first = start_migrate(url, folder)
            wait_for(url, STOPPED_AT_GATE, first)
            second = start_migrate(url, folder)
            # However long the first takes (yoyo's lock gave up after 10 s), the second waits for it.
            wait_for(url, WAITING_FOR_THE_MIGRATION_LOCK, second)
            gate.rollback()
        first_out, _ = first.communicate(timeout=120)
        second_out, _ = second.communicate(timeout=120)
        assert first.returncode == 0 and second.returncode == 0, (first_out, second_out)
        assert first_out.strip().splitlines()[-1] == repr(all_migrations() + ["9999.gated"])
        assert second_out.strip().splitlines()[-1] == "[]"
        assert "another migrate is running" in second_out
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM _yoyo_migration WHERE migration_id = '9999.gated'"
                                ).fetchone()[0] == 1


# Commands that only read never migrate: an auditor's read-only role or a standby can run them.

def read_only(url: str) -> str:
    return make_conninfo(url, options="-c default_transaction_read_only=on")


def test_verify_and_export_run_read_only_and_never_migrate(app, database_url, monkeypatch, tmp_path):
    with as_("spec-1", "channel_specialist"):
        app.register_partner(kind="retailer", name="Shop")
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", read_only(database_url))
    verified = CliRunner().invoke(cli, ["verify"])
    assert verified.exit_code == 0, verified.output
    exported = CliRunner().invoke(cli, ["export", "--output", str(tmp_path / "log.ndjson")])
    assert exported.exit_code == 0, exported.output
    assert '"checkpoint"' in (tmp_path / "log.ndjson").read_text()


def test_verify_and_export_refuse_a_schema_behind_and_leave_it_so(database_url, monkeypatch, tmp_path):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM _yoyo_migration WHERE migration_id = %s", (all_migrations()[-1],))
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    for command in (["verify"], ["export", "--output", str(tmp_path / "log.ndjson")]):
        refused = CliRunner().invoke(cli, command)
        assert refused.exit_code == 2, refused.output
        assert "the schema is behind" in refused.output and "run channel-domain migrate" in refused.output
    assert not_applied(database_url) == [all_migrations()[-1]]
