"""A database URL keeps all its parts: a percent-encoded password holding `@ / # : % ?`, and
libpq parameters (`sslmode`, `application_name`, `options`, a socket directory as `host`), reach
PostgreSQL from `migrate`, from the application's pools, and from a served request.

The server is one of the test's own (the embedded one, as `make run` uses, over its Unix
socket) whose pg_hba.conf makes the test's role prove its password: the shared test server
trusts every local connection, and could not tell a password that arrived from one that did not.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from channel_domain.application import ChannelDepartment
from channel_domain.store.database import with_database_name
from channel_domain.store.migrations import MIGRATIONS_DIR, migrate
from tests.servers import BIN, free_port, wait_until_up
from tests.channel_domain.helpers import as_

PASSWORD = "p@ss/w#rd:50%?x&y=z"  # every character a URL would otherwise split on
PROBE = "channel_domain.url_probe"  # a setting only `options` in the URL can give a session


@dataclass(frozen=True)
class GuardedDatabase:
    admin_url: str  # the server's superuser, trusted over the socket
    url: str  # the role that must prove its password, with every parameter under test
    role: str
    dbname: str
    application_name: str


def all_migrations() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.iterdir() if p.suffix in (".sql", ".py"))


@pytest.fixture(scope="module")
def guarded_database() -> Iterator[GuardedDatabase]:
    with warnings.catch_warnings():  # pgserver asks for an XDG runtime dir it does not use
        warnings.simplefilter("ignore")
        import pgserver

    with tempfile.TemporaryDirectory(prefix="cd-url-") as folder:
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            admin_url = server.get_uri()
            suffix = uuid.uuid4().hex[:8]
            role, dbname, application_name = f"cd_url_{suffix}", f"cd url {suffix}", f"cd-url-probe-{suffix}"
            hba = Path(server.pgdata) / "pg_hba.conf"
            hba.write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n" + hba.read_text())
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SET password_encryption = 'scram-sha-256'")
                admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s".replace("%s", quote_literal(PASSWORD)))
                admin.execute(f'CREATE DATABASE "{dbname}" OWNER {role}')
                admin.execute("SELECT pg_reload_conf()")
            socket_dir = conninfo_to_dict(admin_url)["host"]
            url = (
                f"postgresql://{role}:{quote(PASSWORD, safe='')}@/{quote(dbname, safe='')}"
                f"?host={quote(str(socket_dir))}&port={conninfo_to_dict(admin_url).get('port', 5432)}"
                f"&sslmode=disable&application_name={application_name}"
                f"&options={quote(f'-c {PROBE}=kept', safe='')}"
            )
            yield GuardedDatabase(admin_url, url, role, dbname, application_name)
        finally:
            server.cleanup()


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_the_server_checks_the_roles_password(guarded_database):
    """Without this, the tests below would pass with a password mangled on the way."""
    wrong = conninfo_to_dict(guarded_database.url) | {"password": "not-it"}
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**wrong).close()


def test_migrate_and_the_application_pool_keep_every_part_of_the_url(guarded_database):
    migrate(guarded_database.url)
    with psycopg.connect(guarded_database.url) as conn:
        applied = sorted(row[0] for row in conn.execute("SELECT migration_id FROM _yoyo_migration"))
    assert applied == all_migrations()
    with ChannelDepartment(guarded_database.url) as app:
        with as_("spec-1", "channel_specialist"):
            app.register_partner(kind="retailer", name="Corner Shop")
        with app.event_recorder.datastore.get_connection() as conn:
            session = conn.execute(
                "SELECT current_user AS role, current_setting('application_name') AS application_name,"
                f" current_setting('{PROBE}') AS probe,"
                " current_setting('channel_domain.time_zone') AS zone").fetchone()
        # An idempotency key's lock is held by a session of a second pool, built from the first.
        with app.event_recorder.key_in_flight("spec-1", "url-1") as acquired:
            assert acquired
            with psycopg.connect(guarded_database.admin_url) as admin:
                holders = admin.execute(
                    "SELECT a.usename, a.application_name, a.datname FROM pg_locks l"
                    " JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory'").fetchall()
    assert session == {
        "role": guarded_database.role, "application_name": guarded_database.application_name,
        "probe": "kept", "zone": "Asia/Shanghai",
    }
    assert holders == [(guarded_database.role, guarded_database.application_name, guarded_database.dbname)]


def test_a_served_request_reaches_the_database_with_the_whole_url(guarded_database):
    migrate(guarded_database.url)
    env = {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": guarded_database.url}
    created = subprocess.run(
        [str(BIN / "channel-domain"), "tokens", "create", "--actor", "spec-1", "--role", "channel_specialist"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [str(BIN / "channel-domain"), "serve", "--port", str(port), "--workers", "1", "--no-projections"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, server, lambda: (log.seek(0), log.read().decode(errors="replace"))[1])
            answer = httpx.post(
                f"{base}/v1/partners", json={"kind": "retailer", "name": "Kiosk"}, timeout=10,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 201, answer.text
            with psycopg.connect(with_database_name(guarded_database.admin_url, "postgres")) as admin:
                sessions = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND application_name = %s",
                    (guarded_database.role, guarded_database.application_name),
                ).fetchone()[0]
            assert sessions >= 1
        finally:
            server.terminate()
            server.wait(timeout=15)
