"""One dead connection is not an outage — against a real `channel-domain serve`.

A pooled connection can die while the database stays up: an operator's
`pg_terminate_backend`, a proxy cutting one idle socket. The request on it fails (503 with
Retry-After: it did not happen, the client retries), but the process must not take that as
the database being away and refuse everyone else for a pause: it asks its probe, which finds
the database answering, so the breaker stays closed and the next request is served at once."""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.reliability.conftest import serving

FOUND_WITHIN_S = 30.0  # to see the request's backend wait on the lock: a bound for a slow machine, not a figure


def _admin(database_url: str) -> psycopg.Connection:
    """A connection from another database, so as not to be one of the sessions looked at."""
    return psycopg.connect(psycopg.conninfo.make_conninfo(database_url, dbname="postgres"), autocommit=True)


def _backend_waiting_on_a_lock(database_url: str, besides: int) -> int:
    name = conninfo_to_dict(database_url)["dbname"]
    deadline = time.monotonic() + FOUND_WITHIN_S
    with _admin(database_url) as admin:
        while True:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' AND pid <> %s",
                (name, besides)).fetchone()
            if row:
                return row[0]
            assert time.monotonic() < deadline, "no request came to wait on the lock"
            time.sleep(0.05)


def _terminate(database_url: str, pid: int) -> None:
    with _admin(database_url) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_pooled_connection_terminated_mid_request_fails_that_request_only(database_url, monkeypatch, figure):
    # One process with one pooled connection: the connection killed is the one every request uses.
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_SIZE", "1")
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_MAX_OVERFLOW", "0")
    with serving(database_url, workers=1) as served, httpx.Client(base_url=served.base, timeout=60) as client:
        headers = {"Authorization": f"Bearer {served.token('watcher', 'auditor')}"}
        assert client.get("/v1/projections", headers=headers).status_code == 200  # the pool is open
        answers: list[httpx.Response] = []
        with psycopg.connect(database_url) as locker:
            # Every request authenticates on its pooled connection: with the tokens table locked,
            # the request waits on the lock, in its backend, while the test kills that backend.
            locker.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")
            locker_pid = locker.info.backend_pid
            waiting = threading.Thread(target=lambda: answers.append(client.get("/v1/projections", headers=headers)))
            waiting.start()
            _terminate(database_url, _backend_waiting_on_a_lock(database_url, besides=locker_pid))
            waiting.join()
        [killed] = answers
        assert killed.status_code == 503 and killed.headers.get("Retry-After"), killed.text
        assert killed.json()["code"] == "database_unavailable"
        # The breaker did not trip: the very next requests are served, with no pause first.
        after = [client.get("/v1/projections", headers=headers) for _ in range(5)]
        assert [answer.status_code for answer in after] == [200] * 5, [answer.text for answer in after]
        health = client.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "ok")
    figure("one dead connection: a request whose backend was terminated mid-request answered 503"
           " database_unavailable with Retry-After; the 5 requests after it all 200 at once (breaker not tripped)")


def test_an_idle_pooled_connection_terminated_fails_at_most_the_command_on_it(database_url, monkeypatch):
    # A command (a write: not read again on a fresh connection) on a pooled connection that died
    # while idle — the broken-socket case, where the error may carry no SQLSTATE at all.
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_SIZE", "1")
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_MAX_OVERFLOW", "0")
    with serving(database_url, workers=1) as served, httpx.Client(base_url=served.base, timeout=60) as client:
        headers = {"Authorization": f"Bearer {served.token('hr-clerk', 'hr')}"}
        assert client.get("/health").json()["status"] == "ok"  # the probe has its own connection open

        def hire(n: int) -> httpx.Response:
            return client.post("/v1/employees", headers=headers,
                               json={"name": f"Rep {n}", "role": "sales_rep", "hired_on": "2026-01-05"})

        first_hire = hire(0)
        assert first_hire.status_code in (200, 201), first_hire.text
        name = conninfo_to_dict(database_url)["dbname"]
        with _admin(database_url) as admin:
            # The pool's connection, not the probe's (its last query reads the migrations) nor the
            # token cache's listening session.
            pids = [pid for pid, in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
                " AND query NOT LIKE %s AND query <> 'LISTEN api_tokens_changed'",
                (name, "%_yoyo_migration%")).fetchall()]
            assert len(pids) == 1, pids
            admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
        first = hire(1)
        assert first.status_code in (201, 503), first.text
        if first.status_code == 503:
            assert first.headers.get("Retry-After") and first.json()["code"] == "database_unavailable"
        after = [hire(n) for n in range(2, 7)]
        assert [answer.status_code for answer in after] == [201] * 5, [answer.text for answer in after]
