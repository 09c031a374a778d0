"""P8: from a command's commit to a feed client, at a steady rate of commands.

Writers register partners over HTTP at `--rate` commands a second (open loop: each command
leaves at its scheduled time, whatever the previous one did); `--streams` Server-Sent Event
clients and one long-polling client follow the feed. For each event, the latency is the time
the client received it minus the time its command's answer arrived — the answer is sent after
the commit, so this slightly *under*-states commit → client by the answer's own trip (well
under a millisecond on loopback); the figure from the command's *sending* is printed beside
it as an upper bound.

    PYTHONPATH=src:. .venv/bin/python bench/feed_latency.py --rate 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

import httpx
from httpx_sse import aconnect_sse

from bench.common import bench_database, percentile, server_url, served, token


async def _stream(base: str, erp: str, received: dict[int, float], ready: threading.Event) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None)) as client, \
            aconnect_sse(client, "GET", "/v1/events/stream", headers={"Authorization": f"Bearer {erp}"}) as source:
        ready.set()
        async for event in source.aiter_sse():
            received.setdefault(int(event.id), time.monotonic())


async def _long_poll(base: str, erp: str, received: dict[int, float], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=40, headers={"Authorization": f"Bearer {erp}"}) as client:
        head = (await client.get("/v1/events", params={"after": 0, "limit": 1})).json()["next_after"]
        after = head
        while not stop.is_set():
            page = (await client.get("/v1/events", params={"after": after, "wait_s": 5, "limit": 1000})).json()
            now = time.monotonic()
            for item in page["items"]:
                received.setdefault(item["position"], now)
            after = page["next_after"]


async def _write(base: str, spec: str, rate: float, seconds: float) -> tuple[dict[int, float], dict[int, float]]:
    answered: dict[int, float] = {}
    sent: dict[int, float] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits,
                                 headers={"Authorization": f"Bearer {spec}"}) as client:
        async def one(n: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            leaving = time.monotonic()
            response = await client.post("/v1/partners", json={"kind": "retailer", "name": f"shop {n}"})
            if response.status_code == 201:
                position = response.json()["position"]
                answered[position], sent[position] = time.monotonic(), leaving

        start = time.monotonic() + 0.5
        await asyncio.gather(*(one(n, start + n / rate) for n in range(int(rate * seconds))))
    return answered, sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", type=int, default=10)
    args = parser.parse_args()
    with bench_database(server_url(args.url)) as url, served(url) as server:
        erp, spec = token(url, "erp", ["integration"]), token(url, "spec", ["channel_specialist"])
        by_stream: list[dict[int, float]] = [{} for _ in range(args.streams)]
        polled: dict[int, float] = {}

        async def run() -> tuple[dict[int, float], dict[int, float]]:
            ready = [threading.Event() for _ in range(args.streams)]
            streams = [asyncio.create_task(_stream(server.base, erp, received, flag))
                       for received, flag in zip(by_stream, ready, strict=True)]
            stop = asyncio.Event()
            poller = asyncio.create_task(_long_poll(server.base, erp, polled, stop))
            while not all(flag.is_set() for flag in ready):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # every stream waiting at the head
            answered, sent = await _write(server.base, spec, args.rate, args.seconds)
            await asyncio.sleep(2)  # the last events reach everyone
            stop.set()
            for task in (*streams, poller):
                task.cancel()
            await asyncio.gather(*streams, poller, return_exceptions=True)
            return answered, sent

        answered, sent = asyncio.run(run())

    def report(name: str, received: dict[int, float]) -> dict:
        after_answer = [1000 * (received[p] - answered[p]) for p in answered if p in received]
        after_send = [1000 * (received[p] - sent[p]) for p in answered if p in received]
        return {"client": name, "events": len(after_answer), "of": len(answered),
                "p50_ms": round(percentile(after_answer, 0.5), 1), "p99_ms": round(percentile(after_answer, 0.99), 1),
                "p99_from_sending_ms": round(percentile(after_send, 0.99), 1)}

    streams = {p: max(received.get(p, float("inf")) for received in by_stream) for p in answered}
    print(json.dumps({"rate": args.rate, "seconds": args.seconds, "streams": args.streams, "figures": [
        report("slowest of the SSE streams", streams), report("long-poll", polled)]}, indent=1))


if __name__ == "__main__":
    main()
