"""Load through `channel-domain serve`: P2 commands, P3 the bulk import, P7 statement reads."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from common import percentile


@dataclass(frozen=True)
class Load:
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    unexpected: int  # answers other than 2xx


def hammer(base: str, clients: int, per_client: int, send: Callable[[httpx.Client, int, int], httpx.Response]) -> Load:
    """`clients` threads, each with its own keep-alive connection, each sending `per_client`
    requests back to back: send(client, client number, request number)."""
    latencies: list[float] = []
    unexpected = 0
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def run(number: int) -> None:
        nonlocal unexpected
        mine, bad = [], 0
        with httpx.Client(base_url=base, timeout=60) as client:
            start.wait()
            for request in range(per_client):
                began = time.perf_counter()
                response = send(client, number, request)
                mine.append(time.perf_counter() - began)
                bad += not response.is_success
        with lock:
            latencies.extend(mine)
            unexpected += bad

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return Load(len(latencies), len(latencies) / elapsed, percentile(latencies, 0.5) * 1000,
                percentile(latencies, 0.99) * 1000, unexpected)


def record_sales(base: str, token: str, contracts: list[str], clients: int, per_client: int,
                 idempotent: bool = False) -> Load:
    """Each client records sales on a contract of its own."""
    orders = itertools.count()
    prefix = "K" if idempotent else "S"

    def send(client: httpx.Client, number: int, _: int) -> httpx.Response:
        order = f"{prefix}-{next(orders)}"
        headers = {"Authorization": f"Bearer {token}"}
        if idempotent:
            headers["Idempotency-Key"] = order
        return client.post(f"/v1/contracts/{contracts[number % len(contracts)]}/sales", headers=headers,
                           json={"order_id": order, "amount": "100.00", "sold_on": "2026-03-02"})

    return hammer(base, clients, per_client, send)


def import_sales(base: str, token: str, contracts: list[str], lines: int) -> tuple[float, int, int]:
    """(seconds, accepted, rejected) for one NDJSON request of `lines` sales spread over the
    contracts, in sale-date order as a day's export from an ERP would come."""
    body = b"".join(
        json.dumps({"kind": "sale", "contract_id": contracts[n % len(contracts)], "order_id": f"IMP-{n}",
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


def read_statements(base: str, token: str, partners: list[str], periods: list[str], clients: int,
                    per_client: int) -> Load:
    def send(client: httpx.Client, number: int, request: int) -> httpx.Response:
        partner = partners[(number + request) % len(partners)]
        period = periods[request % len(periods)]
        return client.get(f"/v1/commissions/statements/{partner}/{period}",
                          headers={"Authorization": f"Bearer {token}"})

    return hammer(base, clients, per_client, send)
