"""GET /health reports the database: 200 when it answers, 503 when it does not — from this
process's latest look, so that asking often costs the database next to nothing. GET / says
what the service is and links onwards."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api import breaker as breaker_module
from api.app import create_app
from channel_domain.store.database import scratch_database


def test_health_reports_a_reachable_database(database_url):
    with TestClient(create_app(database_url)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert response.json()["migrations"] > 0


def test_health_reports_an_unreachable_database_as_unavailable():
    with TestClient(create_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.headers["Retry-After"]


def test_health_reports_a_database_without_the_schema_as_unavailable(server_url):
    with scratch_database(server_url, prefix="cd_test_unmigrated") as url, TestClient(create_app(url)) as client:
        response = client.get("/health")
    assert (response.status_code, response.json()["database"]) == (503, "UndefinedTable")


def test_health_says_why_when_the_serving_role_cannot_read_the_migrations(database_url):
    # All else may work; the look reads `_yoyo_migration`, and an operator must learn from the
    # body that a grant is missing, not guess at an outage.
    role = f"no_migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'looks'").format(sql.Identifier(role)))
    try:
        params = conninfo_to_dict(database_url)
        params.update(user=role, password="looks")
        with TestClient(create_app(make_conninfo(**params))) as client:
            response = client.get("/health")
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert response.json()["status"] == "unavailable"
        assert response.json()["database"] == "InsufficientPrivilege"
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_health_is_not_fooled_by_its_own_connection_dying(database_url, monkeypatch):
    # Terminated alone (an operator's pg_terminate_backend), or gone with a restart since: the
    # database answers, and a look on a fresh connection says so — not "away", which would also
    # trip the breaker of a process whose database is there.
    monkeypatch.setattr(breaker_module, "LOOK_EVERY_S", 0.0)
    app = create_app(database_url)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        probe_pid = client.portal.call(lambda: _probe_pid(app))
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (probe_pid,)).fetchone()[0]
        response = client.get("/health")
        assert (response.status_code, response.json()["database"]) == (200, "ok"), response.text
        assert client.portal.call(lambda: _probe_pid(app)) != probe_pid  # on a new connection


async def _probe_pid(app) -> int:
    return app.state.breaker.probe._connection.info.backend_pid


def _sessions(database_url: str) -> int:
    """Sessions connected to the test's database, besides the one asking."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (name,)).fetchone()[0]


def test_a_flood_of_health_checks_costs_one_connection_and_one_look(database_url, monkeypatch):
    monkeypatch.setattr(breaker_module, "LOOK_EVERY_S", 3600.0)  # so that the count below is exact
    app = create_app(database_url)
    with TestClient(app) as client:
        async def flood() -> list[int]:
            async def one() -> int:
                return (await app.state.breaker.probe.look()).migrations or 0
            return await asyncio.gather(*(one() for _ in range(200)))

        answers = [client.get("/health") for _ in range(50)]
        assert {answer.status_code for answer in answers} == {200}
        # 200 at once on the server's loop: they all share the one look already taken
        assert set(client.portal.call(flood)) == {answers[0].json()["migrations"]}
        assert app.state.breaker.probe.looks == 1
        assert _sessions(database_url) == 1  # the probe's own connection, kept open; no pool opened


def test_health_looks_again_once_its_last_look_is_old(database_url, monkeypatch):
    monkeypatch.setattr(breaker_module, "LOOK_EVERY_S", 0.0)
    app = create_app(database_url)
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
        assert app.state.breaker.probe.looks == 3
        assert _sessions(database_url) == 1  # still the one connection


def test_landing_page_answers_json_to_tools_and_html_to_browsers():
    with TestClient(create_app("postgresql:///not-connected")) as client:
        as_json = client.get("/", headers={"Accept": "application/json"})
        assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
        body = as_json.json()
        assert body["service"] == "channel-domain" and body["version"]
        assert {"/docs", "/openapi.json", "/health", "/metrics"} <= set(body["links"].values())
        assert client.get("/", headers={"Accept": "*/*"}).json() == body
        browser = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert browser.status_code == 200 and browser.headers["content-type"].startswith("text/html")
        for link in body["links"].values():
            assert f'href="{link}"' in browser.text
        documented = client.get("/openapi.json").json()["paths"]["/"]["get"]
        assert documented["tags"] == ["meta"]
        assert set(documented["responses"]["200"]["content"]) == {"application/json", "text/html"}
