"""A real server for the reliability suite: `channel-domain serve` in processes of its own."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.tokens import create_token
from channel_domain.store import checkpoints
from tests.figures import FIGURES
from tests.servers import BIN, free_port, wait_until_up


@dataclass(frozen=True)
class Served:
    base: str
    database_url: str
    log: Any = None  # the server's output, for a failing test to show
    process: subprocess.Popen | None = None  # uvicorn's supervisor, for a test that stops it itself

    def log_tail(self, chars: int = 4000) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def token(self, actor: str, *roles: str) -> str:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return create_token(conn, actor, list(roles))[1]


@contextmanager
def serving(database_url: str, *, workers: int = 2, projections: bool = False) -> Iterator[Served]:
    """`channel-domain serve` in processes of its own until the block ends, with a checkpoint
    signing key of its own (as a deployment has one: `POST /v1/audit/checkpoints` signs)."""
    port = free_port()
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as keys:
        key = checkpoints.create_key_file(Path(keys) / "checkpoint.pem")
        server = subprocess.Popen(
            [str(BIN / "channel-domain"), "serve", "--port", str(port), "--workers", str(workers),
             "--projections" if projections else "--no-projections", "--no-access-log"],
            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url,
                 checkpoints.KEY_FILE_VARIABLE: str(key.path)},
            stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base, server, lambda: (log.seek(0), log.read().decode(errors="replace"))[1])
            yield Served(base, database_url, log, server)
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=15)


@pytest.fixture
def served(database_url: str) -> Iterator[Served]:
    """Two workers, as `serve` runs on this machine's two cores; projections off."""
    with serving(database_url) as server:
        yield server


def recorded_orders(database_url: str) -> collections.Counter[str]:
    """How many times each order id was recorded as a sale, across every contract."""
    with psycopg.connect(database_url) as conn:
        return collections.Counter(
            json.loads(bytes(row[0]))["order_id"] for row in conn.execute(
                "SELECT state FROM events WHERE topic LIKE %s", ("%Contract.SaleRecorded",)))


@pytest.fixture(scope="session")
def figure() -> Callable[[str], None]:
    """Report a test's figure: shown at the end of every run, captured output or not
    (tests/conftest.py prints them, from every process of the run)."""
    return FIGURES.append


def http_api(server: Served) -> Any:
    """`tests.api.flows` steps against a real server: its `Api` over an httpx client, which
    answers `post(path, json=, headers=)` and `get(path, params=, headers=)` as TestClient does."""
    from tests.api.conftest import Api

    return Api(httpx.Client(base_url=server.base, timeout=60), server.database_url)


def project_worker(database_url: str, *options: str, output: Any = subprocess.DEVNULL) -> subprocess.Popen:
    """A `channel-domain project` process of its own on the database; what it prints goes to
    `output` (a file), else nowhere."""
    return subprocess.Popen([str(BIN / "channel-domain"), "project", *options],
                            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url},
                            stdout=output, stderr=subprocess.STDOUT if output is not subprocess.DEVNULL else output)


def projection_lag(database_url: str) -> int:
    """Events the furthest-behind read model still has to apply (the log's head if one never started)."""
    return max(projection_lags(database_url).values())


def projection_lags(database_url: str) -> dict[str, int]:
    """Events each read model still has to apply."""
    from projections import all_projections

    with psycopg.connect(database_url) as conn:
        head = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        positions = dict(conn.execute("SELECT name, position FROM projection_checkpoints").fetchall())
    return {p.name: head - positions.get(p.name, 0) for p in all_projections()}


def rebuild_in_place(database_url: str) -> None:
    """Empty every read model and its checkpoint, then project the whole log again in this
    process: the clean rebuild that R3 and the deployment tests compare with."""
    from channel_domain.application import ChannelDepartment
    from channel_domain.store.projecting import ProjectionRunner
    from projections import all_projections
    from tests.projections.read_model_rows import TABLES

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        conn.execute("DELETE FROM projection_checkpoints")
    with ChannelDepartment(database_url) as app:
        runner = ProjectionRunner(app, all_projections())
        for projection in runner.projections:
            runner.catch_up(projection)
