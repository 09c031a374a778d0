"""R4: PostgreSQL stopped and started again under load. While it is down every command is
answered `503` with `Retry-After`, most at once and none later than the pool's wait (with a
margin); nothing answered `2xx` is lost; clients that retry with their Idempotency-Key get each
command recorded exactly once; and the same server processes answer `2xx` again within 5 s of
the database coming back. Beside them, clients without an Idempotency-Key sell on one contract,
so their commands queue for its turn: each is refused with the one ahead of it, not after a
pool wait of its own in turn."""

from __future__ import annotations

import asyncio
import collections
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from channel_domain.application import ChannelDepartment
from channel_domain.store.database import POOL_WAIT_S
from channel_domain.store.migrations import migrate
from tests.channel_domain.test_application import partner, signed_contract
from tests.reliability.conftest import recorded_orders, serving

CLIENTS, CONTRACTS, UNKEYED_CLIENTS = 16, 8, 8
# Down for longer than two pool waits: a command queued behind another's wait would take both.
BEFORE_S, DOWN_S, AFTER_S, RECOVERY_S = 2.0, 2.5 * POOL_WAIT_S, 6.0, 5.0
# A request already waiting for a connection is refused after the pool wait and one look at the
# database (a few ms); the rest at once. CI once measured 6.43 s against a bound of pool wait + 1 s.
# Two causes fit: the machine (the whole suite on 2 cores), or a command queued for its record's
# turn behind one in its pool wait, then waiting again itself (10.1 s, measured with the clients
# without keys here, before a record's turn passed that failure on). The margin is now 2 s.
REFUSED_WITHIN_S = POOL_WAIT_S + 2.0


@dataclass
class OwnPostgres:
    """A PostgreSQL server of the test's own (the `pgserver` binaries), so it may be stopped."""

    server: object
    url: str

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    with warnings.catch_warnings():  # pgserver asks for an XDG runtime dir it does not use
        warnings.simplefilter("ignore")
        import pgserver

    with tempfile.TemporaryDirectory(prefix="cd-outage-") as folder:
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            url = server.get_uri()
            migrate(url)
            yield OwnPostgres(server, url)
        finally:
            server.cleanup()


@dataclass
class Tally:
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, Retry-After)
    accepted: set[str] = field(default_factory=set)
    unkeyed_refused: set[str] = field(default_factory=set)  # not sent again: never recorded, or in doubt
    unexpected: list[tuple[int, str]] = field(default_factory=list)
    waits: list[tuple[int, float]] = field(default_factory=list)


def test_an_outage_answers_503_loses_nothing_and_heals_without_a_restart(own_postgres, figure):
    with ChannelDepartment(own_postgres.url) as app:
        contracts = [str(signed_contract(app, partner(app, "retailer"))) for _ in range(CONTRACTS)]
    with serving(own_postgres.url) as served:
        token = served.token("erp", "integration")
        tally = Tally()
        stopping = time.monotonic() + BEFORE_S + DOWN_S + AFTER_S

        async def command(session: aiohttp.ClientSession, order: str, contract: str, keyed: bool = True) -> None:
            while True:  # as a well-behaved client: retry 503 after Retry-After, with the same key
                sent = time.monotonic()
                try:
                    async with session.post(
                        f"/v1/contracts/{contract}/sales",
                        headers={"Authorization": f"Bearer {token}", **({"Idempotency-Key": order} if keyed else {})},
                        json={"order_id": order, "amount": "10.00", "sold_on": "2026-03-02"},
                    ) as answer:
                        body = await answer.text()
                        retry_after = answer.headers.get("Retry-After", "")
                        tally.answers.append((time.monotonic(), answer.status, retry_after))
                        tally.waits.append((answer.status, time.monotonic() - sent))
                except aiohttp.ClientError as error:  # the server itself must stay up: a failure
                    tally.unexpected.append((0, repr(error)))
                    return
                if answer.status == 200:
                    tally.accepted.add(order)
                    return
                if answer.status == 503 and retry_after:
                    await asyncio.sleep(min(float(retry_after), 0.5))  # shortened: the test has a clock
                    if keyed:
                        continue
                    tally.unkeyed_refused.add(order)  # without a key, not sent again
                    return
                tally.unexpected.append((answer.status, body[:300]))
                return

        async def client(number: int, session: aiohttp.ClientSession, keyed: bool = True) -> None:
            n = 0
            while time.monotonic() < stopping:  # those without keys all on one contract
                contract = contracts[(number + n) % CONTRACTS] if keyed else contracts[0]
                await command(session, f"{'C' if keyed else 'U'}{number}-{n}", contract, keyed)
                n += 1

        async def outage() -> tuple[float, float]:
            await asyncio.sleep(BEFORE_S)
            await asyncio.to_thread(own_postgres.stop)
            down = time.monotonic()
            await asyncio.sleep(DOWN_S)
            starting = time.monotonic()
            await asyncio.to_thread(own_postgres.start)
            return down, starting

        async def everyone() -> tuple[float, float]:
            async with aiohttp.ClientSession(served.base, connector=aiohttp.TCPConnector(limit=CLIENTS + UNKEYED_CLIENTS),
                                             timeout=aiohttp.ClientTimeout(total=30)) as session:
                window, *_ = await asyncio.gather(outage(), *(client(n, session) for n in range(CLIENTS)),
                                                  *(client(n, session, keyed=False) for n in range(UNKEYED_CLIENTS)))
                return window

        down, up = asyncio.run(everyone())

    assert tally.unexpected == []
    during = collections.Counter(status for at, status, _ in tally.answers if down + 0.5 < at < up)
    assert set(during) == {503}, during  # every request during the outage, refused cleanly
    assert all(retry for _, status, retry in tally.answers if status == 503)
    refusals = sorted(wait for status, wait in tally.waits if status == 503)
    slowest_refusal, median_refusal = refusals[-1], refusals[len(refusals) // 2]
    assert slowest_refusal < REFUSED_WITHIN_S
    assert median_refusal < 0.5  # the breaker: once one request found the database away, the rest at once
    healed = min((at for at, status, _ in tally.answers if status == 200 and at > up), default=float("inf"))
    assert healed - up < RECOVERY_S
    late_refusals = sum(1 for at, status, _ in tally.answers if status != 200 and at > healed + 1.0)
    assert late_refusals == 0
    recorded = recorded_orders(own_postgres.url)
    lost = len(tally.accepted - set(recorded))
    duplicates = sum(count - 1 for count in recorded.values())
    unanswered = len(set(recorded) - tally.accepted - tally.unkeyed_refused)
    statuses = collections.Counter(status for _, status, _ in tally.answers)
    figure(f"R4: PostgreSQL down {up - down:.1f} s under {CLIENTS} clients and {UNKEYED_CLIENTS} without keys on one"
           f" contract: answers {dict(statuses)}, each 503 within"
           f" {slowest_refusal:.2f} s (median {median_refusal * 1000:.0f} ms);"
           f" 2xx again {healed - up:.2f} s after it came back; {len(tally.accepted)} accepted, {lost} lost,"
           f" {duplicates} duplicated, {unanswered} recorded but never answered 2xx")
    assert (lost, duplicates, unanswered) == (0, 0, 0)
