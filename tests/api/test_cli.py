"""The command line as an operator uses it: `migrate`, then `serve` answering on a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from api.cli import app as cli

BIN = Path(sys.executable).parent


def test_migrate_reports_an_up_to_date_schema(database_url, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_answers_health_over_a_real_socket(database_url):
    port = free_port()
    env = {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}
    server = subprocess.Popen(
        [str(BIN / "channel-domain"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start within 30 s"
                time.sleep(0.2)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["migrations"] >= 1
    finally:
        server.terminate()
        server.wait(timeout=10)
