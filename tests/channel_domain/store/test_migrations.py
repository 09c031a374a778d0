"""`channel-domain migrate` creates the schema once and is safe to run again, even at once."""

from __future__ import annotations

import threading

import psycopg

from channel_domain.store.database import scratch_database
from channel_domain.store.migrations import MIGRATIONS_DIR, migrate


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
