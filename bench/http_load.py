"""Load through `channel-domain serve`: P2 commands, P3 the bulk import, P7 statement reads."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import httpx
from common import percentile


@dataclass(frozen=True)
class Load:
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    unexpected: dict[int, int]  # status -> how many answers other than 2xx


WARM_UP = 5  # requests per client before timing starts
Send = Callable[[aiohttp.ClientSession, int, int], Awaitable[int]]


def hammer(base: str, clients: int, per_client: int, send: Send) -> Load:
    """`clients` concurrent clients, each with a keep-alive connection of its own, each
    sending `per_client` requests back to back: send(session, client number, request number)
    returns the status. One asyncio loop drives them all, so the load generator costs the
    machine little beside the server it measures."""
    return asyncio.run(_hammer(base, clients, per_client, send))


async def _hammer(base: str, clients: int, per_client: int, send: Send,
                  until: asyncio.Event | None = None) -> Load:
    """With `until`, each client goes on (past `per_client`) until it is set."""
    latencies: list[float] = []
    unexpected: dict[int, int] = {}

    async def run(session: aiohttp.ClientSession, number: int) -> None:
        request = 0
        while request < per_client or (until is not None and not until.is_set()):
            request += 1
            began = time.perf_counter()
            status = await send(session, number, request)
            latencies.append(time.perf_counter() - began)
            if not 200 <= status < 300:
                unexpected[status] = unexpected.get(status, 0) + 1

    sessions = [aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=1),
                                      timeout=aiohttp.ClientTimeout(total=60)) for _ in range(clients)]
    try:
        # Warm up before the clock starts: each connection opened, each server worker's
        # database pool filled, as on a server that has been up for a while.
        await asyncio.gather(*(send(session, number, -1 - n) for number, session in enumerate(sessions)
                               for n in range(WARM_UP)))
        began = time.perf_counter()
        await asyncio.gather(*(run(session, number) for number, session in enumerate(sessions)))
        elapsed = time.perf_counter() - began
    finally:
        for session in sessions:
            await session.close()
    return Load(len(latencies), len(latencies) / elapsed, percentile(latencies, 0.5) * 1000,
                percentile(latencies, 0.99) * 1000, unexpected)


async def _open_loop(base: str, rate: float, count: int, send: Send) -> Load:
    """`count` requests at a steady `rate` a second, each on its schedule whether or not the
    ones before it have answered, and each timed from when it was due: a slow answer cannot
    hide the wait of those queued behind it (no coordinated omission)."""
    latencies: list[float] = []
    unexpected: dict[int, int] = {}
    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=60)) as session:
        began = time.perf_counter()

        async def one(number: int) -> None:
            due = began + number / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            status = await send(session, number % 16, number)
            latencies.append(time.perf_counter() - due)
            if not 200 <= status < 300:
                unexpected[status] = unexpected.get(status, 0) + 1

        await asyncio.gather(*(one(n) for n in range(count)))
        elapsed = time.perf_counter() - began
    return Load(len(latencies), len(latencies) / elapsed, percentile(latencies, 0.5) * 1000,
                percentile(latencies, 0.99) * 1000, unexpected)


def _sales(token: str, contracts: list[str], prefix: str, idempotent: bool = False) -> Send:
    orders = itertools.count()

    async def send(session: aiohttp.ClientSession, number: int, _: int) -> int:
        order = f"{prefix}-{next(orders)}"
        headers = {"Authorization": f"Bearer {token}"}
        if idempotent:
            headers["Idempotency-Key"] = order
        async with session.post(f"/v1/contracts/{contracts[number % len(contracts)]}/sales", headers=headers,
                                json={"order_id": order, "amount": "100.00", "sold_on": "2026-03-02"}) as answer:
            await answer.read()
            return answer.status

    return send


def record_sales(base: str, token: str, contracts: list[str], clients: int, per_client: int,
                 idempotent: bool = False) -> Load:
    """Each client records sales on a contract of its own."""
    return hammer(base, clients, per_client, _sales(token, contracts, "K" if idempotent else "S", idempotent))


def import_sales(base: str, token: str, contracts: list[str], lines: int,
                 prefix: str = "IMP") -> tuple[float, int, int]:
    """(seconds, accepted, rejected) for one NDJSON request of `lines` sales spread over the
    contracts, in sale-date order as a day's export from an ERP would come."""
    body = b"".join(
        json.dumps({"kind": "sale", "contract_id": contracts[n % len(contracts)], "order_id": f"{prefix}-{n}",
                    "amount": f"{100 + n % 900}.00", "sold_on": f"2026-{3 + n * 9 // lines:02d}-0{1 + n % 9}"}).encode()
        + b"\n"
        for n in range(lines)
    )
    with httpx.Client(base_url=base, timeout=3600) as client:
        began = time.perf_counter()
        response = client.post("/v1/sales/import", content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
        elapsed = time.perf_counter() - began
    response.raise_for_status()
    result = response.json()
    return elapsed, result["accepted"], len(result["rejected"])


def read_statements_under_load(base: str, reader: str, partners: list[str], periods: list[str], rate: float,
                                count: int, writer: str, contracts: list[str], write_rate: float,
                                orders: str = "R") -> tuple[Load, Load]:
    """(reads, writes): statements read at a steady `rate` while sales are recorded at a
    steady `write_rate`, both on their schedules; the sales' order ids start with `orders`."""
    async def read(session: aiohttp.ClientSession, number: int, request: int) -> int:
        partner = partners[request % len(partners)]
        period = periods[request // len(partners) % len(periods)]
        async with session.get(f"/v1/commissions/statements/{partner}/{period}",
                               headers={"Authorization": f"Bearer {reader}"}) as answer:
            await answer.read()
            return answer.status

    async def both() -> tuple[Load, Load]:
        writes = int(count / rate * write_rate)
        return tuple(await asyncio.gather(_open_loop(base, rate, count, read),
                                          _open_loop(base, write_rate, writes, _sales(writer, contracts, orders))))

    return asyncio.run(both())
