"""The command line as an operator uses it: `migrate`, then `serve` answering on a socket."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import DEFAULT_TRUSTED_PROXIES, proxy_settings
from api.cli import app as cli
from channel_domain.store.projecting import ProjectionRunner
from projections import AuditSeals
from tests.channel_domain.helpers import as_
from tests.servers import BIN, free_port, wait_until_up



def test_migrate_reports_an_up_to_date_schema(database_url, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_tokens_create_list_revoke(database_url, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    runner = CliRunner()
    created = runner.invoke(cli, ["tokens", "create", "--actor", "erp", "--role", "integration"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("cd_")
    listed = runner.invoke(cli, ["tokens", "list"])
    assert "erp" in listed.output and token not in listed.output
    token_id = created.output.split()[2]
    assert runner.invoke(cli, ["tokens", "revoke", token_id]).exit_code == 0
    assert runner.invoke(cli, ["tokens", "revoke", token_id]).exit_code == 1
    refused = runner.invoke(cli, ["tokens", "create", "--actor", "x", "--role", "emperor"])
    assert refused.exit_code == 2 and "unknown role" in refused.output


def issue_token(database_url: str, monkeypatch, actor: str, role: str) -> str:
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    created = CliRunner().invoke(cli, ["tokens", "create", "--actor", actor, "--role", role])
    assert created.exit_code == 0, created.output
    return created.output.strip().splitlines()[-1]


def test_serve_answers_over_a_real_socket(database_url, monkeypatch):
    token = issue_token(database_url, monkeypatch, "spec-1", "channel_specialist")
    port = free_port()
    env = {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}
    server = subprocess.Popen(
        [str(BIN / "channel-domain"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, lambda: "" if server.poll() is None else server.stdout.read().decode())
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["migrations"] >= 1
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"http://127.0.0.1:{port}/v1/partners", json={"kind": "retailer", "name": "Corner Shop"},
                             headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        read = httpx.get(f"http://127.0.0.1:{port}{created.headers['location']}", headers=auth, timeout=10)
        assert read.json()["name"] == "Corner Shop"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_believes_forwarded_headers_from_the_proxies_it_is_given_only(database_url):
    """--forwarded-allow-ips reaches every worker process: a peer named there is believed when it
    says the browser used https, and 127.0.0.1 — uvicorn's default — no longer is. The Secure
    flag of the sign-in form's cookie shows which was believed. (The option, not the variable:
    uvicorn reads FORWARDED_ALLOW_IPS by itself, so the variable would pass without `serve`.)"""
    port = free_port()
    env = {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}
    env.pop("CHANNEL_DOMAIN_PUBLIC_ORIGIN", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    server = subprocess.Popen(
        [str(BIN / "channel-domain"), "serve", "--port", str(port), "--workers", "2", "--no-projections",
         "--forwarded-allow-ips", "127.0.0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server,
                      lambda: "" if server.poll() is None else server.stdout.read().decode())
        forwarded = {"Host": "audit.example.com", "X-Forwarded-Proto": "https"}

        def csrf_cookies(address: str) -> list[str]:
            with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10) as client:
                # Several requests, so both worker processes are likely to answer some.
                return [client.get(f"http://127.0.0.1:{port}/audit/sign-in", headers=forwarded).headers["set-cookie"]
                        for _ in range(6)]

        assert all("Secure" in cookie for cookie in csrf_cookies("127.0.0.2"))
        assert not any("Secure" in cookie for cookie in csrf_cookies("127.0.0.1"))
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize(("option", "said"), [
    (["--forwarded-allow-ips", "lb.internal"], "'lb.internal' is not an IP address or network"),
    (["--forwarded-allow-ips", "*,10.0.0.1"], "'*' is not an IP address or network"),
    # Host bits set: uvicorn would take it for a name and never match it.
    (["--forwarded-allow-ips", "10.0.0.1/8"], "'10.0.0.1/8' is not an IP address or network"),
    (["--public-origin", "https://audit.example.com/audit/"], "must be an origin such as https://audit.example.com"),
])
def test_serve_refuses_a_proxy_or_origin_setting_it_cannot_use(monkeypatch, option, said):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.delenv("CHANNEL_DOMAIN_PUBLIC_ORIGIN", raising=False)
    refused = CliRunner().invoke(cli, ["serve", *option])
    assert refused.exit_code == 2 and said in " ".join(refused.output.split()), refused.output


def test_serve_proxy_settings_are_uvicorns():
    assert proxy_settings(DEFAULT_TRUSTED_PROXIES) == {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1,::1"}
    assert proxy_settings(" 10.0.0.0/8 , 192.0.2.1") == {"proxy_headers": True,
                                                         "forwarded_allow_ips": "10.0.0.0/8,192.0.2.1"}
    assert proxy_settings("*") == {"proxy_headers": True, "forwarded_allow_ips": "*"}
    assert proxy_settings("") == {"proxy_headers": False, "forwarded_allow_ips": ""}


def test_verify_and_export_commands(app, database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    with as_("spec-1", "channel_specialist"):
        for n in range(5):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    runner = ProjectionRunner(app, [AuditSeals()])
    runner.catch_up(runner.projections[0])
    verified = CliRunner().invoke(cli, ["verify"])
    assert verified.exit_code == 0, verified.output
    assert "ok" in verified.output and "sealed through position 5" in verified.output

    exported = CliRunner().invoke(cli, ["export", "--output", str(tmp_path / "log.ndjson")])
    assert exported.exit_code == 0, exported.output
    lines = (tmp_path / "log.ndjson").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[-1])["checkpoint"]["through_position"] == 5

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        conn.execute("UPDATE events SET recorded_at = recorded_at + interval '1 day' WHERE position = 3")
        conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    failed = CliRunner().invoke(cli, ["verify"])
    assert failed.exit_code == 1 and "NOT OK at position 3" in failed.output


def test_an_export_that_cannot_finish_exits_non_zero_without_its_checkpoint(app, database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    with as_("spec-1", "channel_specialist"):
        app.register_partner(kind="retailer", name="Shop")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE event_seals RENAME TO event_seals_away")
    exported = CliRunner().invoke(cli, ["export", "--output", str(tmp_path / "log.ndjson")])
    assert exported.exit_code == 1
    assert "export failed, the output is incomplete" in exported.output
    written = tmp_path / "log.ndjson"
    assert not written.exists() or "checkpoint" not in written.read_text()
