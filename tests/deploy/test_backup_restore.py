"""docs/deploy.md's logical backup, tested as an operator runs it: `pg_dump --format=custom` of a
live database whose read models lag, `pg_restore` into a new database, `channel-domain verify`
on the restore (exit 0), a `channel-domain project` worker that brings the restored read models
up to the log, equal row for row to the original's, and a node that serves and takes a write on
the restore."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import psycopg

from channel_domain.store.database import scratch_database
from tests.api.flows import ERP, post
from tests.deploy.test_multi_node import report, sell_through, wait_for
from tests.projections.read_model_rows import read_models
from tests.servers import stop
from tests.reliability.conftest import BIN, http_api, project_worker, projection_lag, projection_lags, serving


def pg_tool(name: str, database_url: str) -> str:
    """The `pg_dump`/`pg_restore` of the server's own major version, as docs/deploy.md asks. A
    server on this machine names its own binaries (`pg_config`'s BINDIR: the embedded server's
    come with pgserver); else the distribution's place for that version, else PATH's."""
    places = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        try:
            places.append(Path(conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()[0]))
        except psycopg.errors.InsufficientPrivilege:
            pass  # pg_config is for superusers by default; the places below still apply
    places.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    if found := shutil.which(name):
        places.append(Path(found).parent)
    tried = []
    for place in places:
        tool = place / name
        if tool.exists():
            version = subprocess.run([str(tool), "--version"], capture_output=True, text=True, check=True).stdout
            tried.append(f"{tool}: {version.strip()}")
            if (match := re.search(r"\) (\d+)", version)) and int(match.group(1)) == major:
                return str(tool)
    raise AssertionError(f"no {name} for PostgreSQL {major} (tried: {tried or places})")


def channel_domain(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "channel-domain"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url})


def write(server, writers: range) -> None:  # noqa: ANN001
    done: list[int] = []
    failures: list[BaseException] = []
    apis = [http_api(server) for _ in writers]
    threads = [threading.Thread(target=sell_through, args=(api, n, done, failures, 2)) for api, n in zip(apis, writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for api in apis:
        api.client.close()  # an open keep-alive connection holds up the server's shutdown
    assert not failures, failures


def project_until_caught_up(database_url: str) -> None:
    """A worker until every read model reaches the log's head. A worker that ends first, or a
    wait that runs out, fails with what the worker printed and each model's lag."""
    with tempfile.TemporaryFile() as output:
        worker = project_worker(database_url, output=output)

        def caught_up() -> bool:
            assert worker.poll() is None, f"the worker ended (exit {worker.returncode})"
            return projection_lag(database_url) == 0

        try:
            wait_for(caught_up, "the read models to reach the log's head", 120)
        except AssertionError as failure:
            # Read without moving the file's offset: the worker may still be writing through it.
            printed = os.pread(output.fileno(), 1 << 20, 0).decode(errors="replace")[-4000:]
            raise AssertionError(f"{failure}; behind: {behind(database_url)}; the worker printed: {printed}") from None
        finally:
            stop(worker)


def behind(database_url: str) -> dict[str, int] | str:
    """The read models behind the log's head, or why that could not be told."""
    try:
        return {name: lag for name, lag in projection_lags(database_url).items() if lag}
    except Exception as error:  # noqa: BLE001 - a failing test's message, never its cause
        return f"unknown ({error!r})"


def events(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT position, originator_id, originator_version, hash FROM events"
                            " ORDER BY position").fetchall()


def test_a_logical_backup_restores_verifies_and_its_read_models_catch_up(database_url, server_url, request, tmp_path):
    with serving(database_url, workers=1) as node:
        write(node, range(2))
        project_until_caught_up(database_url)
        write(node, range(2, 4))  # no worker now: the backup is taken with read models behind
    lag_when_dumped = projection_lag(database_url)
    assert lag_when_dumped > 0

    dump = tmp_path / "channel_domain.dump"
    pg_dump = pg_tool("pg_dump", database_url)
    subprocess.run([pg_dump, "--format=custom", f"--file={dump}", f"--dbname={database_url}"], check=True)
    with scratch_database(server_url, prefix="cd_restore", template="template0") as restored:
        subprocess.run([pg_tool("pg_restore", restored), "--exit-on-error", f"--dbname={restored}", str(dump)],
                       check=True)

        verified = channel_domain(restored, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "ok" in verified.stdout
        assert "schema is up to date" in channel_domain(restored, "migrate").stdout  # nothing left to apply
        assert events(restored) == events(database_url)
        assert projection_lag(restored) == lag_when_dumped  # the read models came back as they were dumped

        project_until_caught_up(restored)
        project_until_caught_up(database_url)
        original, caught_up = read_models(database_url), read_models(restored)
        differing = [table for table in original if original[table] != caught_up[table]]
        assert original == caught_up, differing

        # The restore serves, and its log goes on after the restored head (the sequence came back too).
        head = events(restored)[-1][0]
        with serving(restored, workers=1) as node:
            api = http_api(node)
            with psycopg.connect(restored) as conn:
                contract = conn.execute("SELECT originator_id FROM events WHERE topic LIKE %s LIMIT 1",
                                        ("%Contract.Signed",)).fetchone()[0]
            sale = post(api, f"/v1/contracts/{contract}/sales",
                        {"order_id": "after-restore", "amount": "10.00", "sold_on": "2026-05-02"}, ERP).json()
            api.client.close()
        assert sale["position"] > head
        assert channel_domain(restored, "verify").returncode == 0
    report(request, f"deploy: pg_dump -Fc of {head} events with read models {lag_when_dumped} events behind:"
                    f" {dump.stat().st_size} bytes; the restore verifies, its read models caught up equal the"
                    f" original's in all {len(original)} tables ({sum(map(len, original.values()))} rows)")
