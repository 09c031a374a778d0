"""The whole-log verification runs once at a time for the whole service (api/full_check.py): the
workspace's POST /audit/verification and the API's GET /v1/audit/verify share one PostgreSQL
advisory lock, so another process or node running one refuses both, with Retry-After."""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import full_check
from api.app import create_app
from api.errors import ApiProblem
from api.routes.audit import VerifyResult
from channel_domain.store import integrity
from tests.api.flows import approved_partner, problem, signed_contract
from tests.api.test_workspace import auditor, csrf_of, sign_in, text_of  # noqa: F401 - auditor is a fixture

LOCK = "SELECT pg_try_advisory_lock(hashtextextended('channel-domain:full-verify', 0))"
UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('channel-domain:full-verify', 0))"


@contextlib.contextmanager
def held_elsewhere(database_url: str):
    """The lock taken by another PostgreSQL session, as a check running on another node holds it."""
    with psycopg.connect(database_url, autocommit=True) as other:
        assert other.execute(LOCK).fetchone()[0]
        try:
            yield
        finally:
            other.execute(UNLOCK)


def free(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        got = conn.execute(LOCK).fetchone()[0]
        if got:
            conn.execute(UNLOCK)
        return got


@pytest.fixture
def counted(monkeypatch):
    """How many whole-log reads began."""
    checks: list[int] = []
    whole_log = integrity.verify

    def counting(datastore, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        checks.append(1)
        return whole_log(datastore, *args, **kwargs)

    monkeypatch.setattr(integrity, "verify", counting)
    return checks


def refused_by_the_api(response) -> None:
    body = problem(response, 503, "verification_running")
    assert int(response.headers["retry-after"]) >= 1 and "already running" in body["detail"]


def refused_by_the_workspace(response) -> None:
    assert response.status_code == 503 and response.headers["content-type"].startswith("text/html")
    assert int(response.headers["retry-after"]) >= 1
    assert "A full check is already running" in text_of(response.text) and "全面验证正在进行" in response.text


def test_a_check_held_by_another_session_refuses_the_api_and_the_workspace_until_it_ends(api, auditor, counted):
    signed_contract(api, approved_partner(api, "retailer"))
    csrf = csrf_of(auditor.get("/audit/verification").text)
    with held_elsewhere(api.database_url):
        refused_by_the_api(api.get("/v1/audit/verify"))
        refused_by_the_workspace(auditor.post("/audit/verification", data={"csrf_token": csrf}))
        assert counted == []  # refused before reading anything
    verified = api.get("/v1/audit/verify")
    assert verified.status_code == 200 and set(verified.json()) == set(VerifyResult.model_fields)
    assert verified.json()["ok"] is True
    page = auditor.post("/audit/verification", data={"csrf_token": csrf})
    assert page.status_code == 200 and "结果 Result 通过 OK" in text_of(page.text)
    assert counted == [1, 1] and free(api.database_url)


def test_two_app_instances_run_one_check_between_them(api, monkeypatch):
    """Two servers (two apps, each with its own connection pool) on one database: while the
    first runs a check, the second refuses both kinds; once it ends, the second runs one."""
    signed_contract(api, approved_partner(api, "retailer"))
    started, release = threading.Event(), threading.Event()
    whole_log = integrity.verify

    def slow_verify(datastore, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        started.set()
        assert release.wait(30)
        return whole_log(datastore, *args, **kwargs)

    monkeypatch.setattr(integrity, "verify", slow_verify)
    first: list = []
    running = threading.Thread(target=lambda: first.append(api.get("/v1/audit/verify")))
    with TestClient(create_app(api.database_url)) as other_node:
        assert sign_in(other_node, api.token("auditor-2", "auditor")).status_code == 303
        csrf = csrf_of(other_node.get("/audit/verification").text)
        bearer = {"Authorization": f"Bearer {api.token('auditor-2', 'auditor')}"}
        running.start()
        try:
            assert started.wait(30)
            refused_by_the_api(other_node.get("/v1/audit/verify", headers=bearer))
            refused_by_the_workspace(other_node.post("/audit/verification", data={"csrf_token": csrf}))
            assert not free(api.database_url)
        finally:
            release.set()
            running.join(30)
        assert first[0].status_code == 200 and first[0].json()["ok"] is True
        assert other_node.get("/v1/audit/verify", headers=bearer).status_code == 200
        page = other_node.post("/audit/verification", data={"csrf_token": csrf})
        assert page.status_code == 200 and "结果 Result 通过 OK" in text_of(page.text)
    assert free(api.database_url)


def test_a_check_that_fails_lets_go_of_the_lock(api, monkeypatch):
    def broken(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the check failed")

    monkeypatch.setattr(integrity, "verify", broken)
    with pytest.raises(RuntimeError):
        api.get("/v1/audit/verify")
    assert free(api.database_url)


class _UnlockFails:
    """A connection whose unlock statement fails while the session lives on (a cancelled query)."""

    def __init__(self, conn) -> None:  # noqa: ANN001
        self.conn = conn

    def execute(self, query, *args):  # noqa: ANN001, ANN002, ANN201
        if "pg_advisory_unlock" in query:
            raise psycopg.errors.QueryCanceled("canceling statement due to user request")
        return self.conn.execute(query, *args)

    def close(self) -> None:
        self.conn.close()


def test_a_lock_that_cannot_be_let_go_goes_with_its_connection_not_back_to_the_pool(api):
    datastore = api.department.event_recorder.datastore

    class FirstConnectionBreaksItsUnlock:
        def __init__(self) -> None:
            self.handed = 0

        @contextlib.contextmanager
        def get_connection(self):  # noqa: ANN202
            self.handed += 1
            with datastore.get_connection() as conn:
                yield _UnlockFails(conn) if self.handed == 1 else conn

    assert full_check.verify_alone(FirstConnectionBreaksItsUnlock())["ok"] is True
    # Back in the pool with the lock, that connection would refuse every later check. Closed,
    # its backend lets the lock go as it exits, a moment after the close returns.
    deadline = time.monotonic() + 10
    while not free(api.database_url):
        assert time.monotonic() < deadline, "the lock outlived its closed connection"
        time.sleep(0.05)
    assert api.get("/v1/audit/verify").status_code == 200


def test_a_refusal_inside_the_full_check_is_an_html_page_with_its_headers(api, auditor, monkeypatch):
    def refused(_datastore):  # noqa: ANN001, ANN202
        raise ApiProblem(503, "service_busy", "the service is busy; retry shortly", {"Retry-After": "1"})

    monkeypatch.setattr(full_check, "verify_alone", refused)
    csrf = csrf_of(auditor.get("/audit/verification").text)
    page = auditor.post("/audit/verification", data={"csrf_token": csrf})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "1" and "the service is busy" in text_of(page.text)
    assert page.headers["x-frame-options"] == "DENY"
