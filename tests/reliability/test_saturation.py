"""Saturation is not an outage, and health is cheap — against a real `channel-domain serve`.

A flood of `/health` costs the database one connection per server process, however many
requests come at once. A server whose every pooled connection is held answers the requests it
cannot serve `503 service_busy` with `Retry-After` — its database answers, so the breaker stays
closed: the request after the flood is served, and `/health` says ok throughout."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import aiohttp
import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.reliability.conftest import serving

HEALTH_REQUESTS, HEALTH_CLIENTS = 1000, 200
WORKERS = 2
BUSY_CLIENTS = 12


def _sessions(database_url: str) -> int:
    """Sessions connected to the database, counted from another database so as not to be one."""
    name = conninfo_to_dict(database_url)["dbname"]
    admin = psycopg.conninfo.make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]


class Sampler(threading.Thread):
    """The most sessions seen on the database while it runs."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.database_url, self.most, self.samples = database_url, 0, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.most = max(self.most, _sessions(self.database_url))
            self.samples += 1

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return self.most


def test_a_thousand_health_checks_at_once_cost_one_connection_per_process(database_url, figure):
    with serving(database_url, workers=WORKERS) as served:
        before = _sessions(database_url)
        sampler = Sampler(database_url)
        sampler.start()

        async def flood() -> collections.Counter[int]:
            statuses: collections.Counter[int] = collections.Counter()
            async with aiohttp.ClientSession(served.base, connector=aiohttp.TCPConnector(limit=HEALTH_CLIENTS),
                                             timeout=aiohttp.ClientTimeout(total=60)) as session:
                async def one() -> None:
                    async with session.get("/health") as answer:
                        statuses[answer.status] += 1
                        assert (await answer.json())["database"] == "ok"

                await asyncio.gather(*(one() for _ in range(HEALTH_REQUESTS)))
            return statuses

        statuses = asyncio.run(flood())
        during = sampler.stop()
        after = _sessions(database_url)
    assert statuses == {200: HEALTH_REQUESTS}
    # Each process's probe keeps one connection; before this change each request opened its own.
    assert during <= WORKERS and after <= WORKERS, (before, during, after)
    figure(f"health: {HEALTH_REQUESTS} GET /health, {HEALTH_CLIENTS} at a time, on {WORKERS} server processes:"
           f" all 200; sessions on the database before {before}, at most {during} during ({sampler.samples}"
           f" samples), after {after}")


def test_a_server_with_every_connection_held_answers_busy_and_does_not_trip_the_breaker(
        database_url, monkeypatch, figure):
    # One process, one pooled connection, no overflow: holding that connection saturates it.
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_SIZE", "1")
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_MAX_OVERFLOW", "0")
    with serving(database_url, workers=1) as served, httpx.Client(base_url=served.base, timeout=60) as client:
        headers = {"Authorization": f"Bearer {served.token('watcher', 'auditor')}"}
        assert client.get("/v1/projections", headers=headers).status_code == 200  # the pool is open
        with psycopg.connect(database_url) as locker:
            # Every request authenticates on a pooled connection: with the tokens table locked,
            # the first request to take the connection keeps it, waiting; the rest get none.
            locker.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")

            async def flood() -> list[tuple[int, str, str, float]]:
                async with aiohttp.ClientSession(served.base, timeout=aiohttp.ClientTimeout(total=60)) as session:
                    async def one() -> tuple[int, str, str, float]:
                        sent = time.monotonic()
                        async with session.get("/v1/projections", headers=headers) as answer:
                            body = await answer.json()
                            code = body.get("code", "") if isinstance(body, dict) else ""
                            return answer.status, code, answer.headers.get("Retry-After", ""), time.monotonic() - sent

                    async def health_meanwhile() -> list[str]:
                        await asyncio.sleep(0.5)
                        async with session.get("/health") as answer:
                            return [str(answer.status), (await answer.json())["status"]]

                    first = asyncio.create_task(one())  # takes the connection, and waits on the lock
                    await asyncio.sleep(0.5)
                    rest = [asyncio.create_task(one()) for _ in range(BUSY_CLIENTS)]
                    health = await health_meanwhile()
                    assert health == ["200", "ok"], health  # health does not queue for the pool
                    busy = await asyncio.gather(*rest)
                    assert not first.done()  # still waiting on the lock, its connection held
                    locker.commit()  # the lock goes: the waiting request is served
                    return [*busy, await first]

            answers = asyncio.run(flood())
        *busy, first = answers
        assert first[0] == 200, first
        assert {(status, code) for status, code, _, _ in busy} == {(503, "service_busy")}, busy
        assert all(retry_after for _, _, retry_after, _ in busy)
        # The breaker stayed closed: the very next request is served, not refused for a pause.
        after = client.get("/v1/projections", headers=headers)
        assert after.status_code == 200, after.text
        health = client.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "ok")
    waits = sorted(wait for _, _, _, wait in busy)
    figure(f"saturation: 1 pooled connection held, {BUSY_CLIENTS} more requests: all 503 service_busy with"
           f" Retry-After after {waits[0]:.1f}-{waits[-1]:.1f} s (the pool wait); /health 200 ok meanwhile;"
           f" the next request after the flood 200")
