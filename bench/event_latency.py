"""P8: from an event's commit to an integration client — a long-polling feed client, an SSE
client, a webhook receiver, a JetStream consumer — while sales arrive at a steady rate.

Each sale's latency is the client's clock when the item arrived less the item's `recorded_at`
(taken in the command, just before the append). That includes the append and commit, so the
figure is an upper bound on commit → client. Client and server share the machine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import nats
import nats.js.api
import nats.js.errors
import psycopg
from aiohttp import web
from common import percentile
from http_load import _open_loop, _sales

from integration import nats_relay

SALE = "Contract.SaleRecorded"


@dataclass(frozen=True)
class Latency:
    received: int
    expected: int
    p50_ms: float
    p99_ms: float
    commands_p99_ms: float  # the sales' own answers under the same load: how busy the server was


def _seconds_since(recorded_at: str) -> float:
    return time.time() - datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).timestamp()


class _Arrivals:
    """The latency of each sale, once: a consumer that sees one twice keeps the first."""

    def __init__(self, after: int) -> None:
        self.after = after  # the log's head before the load: where a consumer that pulls starts
        self.latencies: dict[str, float] = {}

    def saw(self, item: dict) -> None:
        if item["type"] == SALE and item["event_id"] not in self.latencies:
            self.latencies[item["event_id"]] = _seconds_since(item["recorded_at"])


@contextlib.asynccontextmanager
async def _running(task: asyncio.Task) -> AsyncIterator[None]:
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


Consumer = Callable[[str, str, _Arrivals], contextlib.AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def long_polling(base: str, token: str, arrivals: _Arrivals) -> AsyncIterator[None]:
    async def follow(session: aiohttp.ClientSession, after: int) -> None:
        while True:
            async with session.get("/v1/events", params={"after": after, "types": SALE, "wait_s": 30, "limit": 1000},
                                   headers={"Authorization": f"Bearer {token}"}) as answer:
                page = await answer.json()
            for item in page["items"]:
                arrivals.saw(item)
            after = page["next_after"]

    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=60)) as session:
        task = asyncio.create_task(follow(session, arrivals.after))
        async with _running(task):
            yield


@contextlib.asynccontextmanager
async def server_sent_events(base: str, token: str, arrivals: _Arrivals) -> AsyncIterator[None]:
    connected = asyncio.Event()

    async def follow(session: aiohttp.ClientSession) -> None:
        async with session.get("/v1/events/stream", params={"types": SALE},
                               headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}) as answer:
            answer.raise_for_status()
            connected.set()
            data: list[str] = []
            async for raw in answer.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    arrivals.saw(json.loads("\n".join(data)))
                    data = []

    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as session:
        task = asyncio.create_task(follow(session))
        await asyncio.wait_for(connected.wait(), 30)
        await asyncio.sleep(0.2)  # the stream starts at the head: let it get there before the load
        async with _running(task):
            yield


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.asynccontextmanager
async def webhook_receiver(base: str, token: str, arrivals: _Arrivals) -> AsyncIterator[None]:
    async def receive(request: web.Request) -> web.Response:
        arrivals.saw(await request.json())
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(base) as session:
        async with session.post("/v1/webhooks", json={"url": f"http://127.0.0.1:{port}/hook", "types": [SALE]},
                                headers={"Authorization": f"Bearer {token}"}) as answer:
            answer.raise_for_status()
            subscription = (await answer.json())["id"]
        try:
            yield
        finally:
            async with session.delete(f"/v1/webhooks/{subscription}", headers={"Authorization": f"Bearer {token}"}):
                pass
            await runner.cleanup()


def jetstream_consumer(nats_url: str) -> Consumer:
    """A JetStream consumer of the relay's stream (the relay runs beside the server)."""

    @contextlib.asynccontextmanager
    async def consume(_base: str, _token: str, arrivals: _Arrivals) -> AsyncIterator[None]:
        client = await nats.connect(nats_url)
        try:
            jetstream = client.jetstream()
            deadline = time.monotonic() + 30
            while True:  # the relay creates its stream when it starts
                try:
                    await jetstream.stream_info(nats_relay.DEFAULT_STREAM)
                    break
                except nats.js.errors.NotFoundError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

            async def saw(message: nats.aio.msg.Msg) -> None:
                arrivals.saw(json.loads(message.data))
                await message.ack()

            subscription = await jetstream.subscribe(
                f"{nats_relay.DEFAULT_SUBJECT_PREFIX}.{SALE}", cb=saw, manual_ack=True,
                config=nats.js.api.ConsumerConfig(deliver_policy=nats.js.api.DeliverPolicy.NEW))
            try:
                yield
            finally:
                await subscription.unsubscribe()
        finally:
            await client.close()

    return consume


async def _measure(base: str, token: str, contracts: list[str], rate: float, count: int, consumer: Consumer,
                   prefix: str, head: int) -> Latency:
    arrivals = _Arrivals(head)
    async with consumer(base, token, arrivals):
        load = await _open_loop(base, rate, count, _sales(token, contracts, prefix))
        deadline = time.monotonic() + 30
        while len(arrivals.latencies) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    samples = list(arrivals.latencies.values())
    if not samples:
        return Latency(0, count, float("nan"), float("nan"), load.p99_ms)
    return Latency(len(samples), count, percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000,
                   load.p99_ms)


CONSUMERS: dict[str, Consumer] = {
    "long-polling feed client": long_polling,
    "SSE client": server_sent_events,
    "webhook receiver": webhook_receiver,
}


def measure(url: str, base: str, token: str, contracts: list[str], rate: float, count: int,
            consumers: dict[str, Consumer] = CONSUMERS) -> dict[str, Latency]:
    """Each consumer in turn, alone, under its own steady load of `count` sales at `rate`."""
    results = {}
    for n, (name, consumer) in enumerate(consumers.items()):
        with psycopg.connect(url) as conn:
            head = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        results[name] = asyncio.run(_measure(base, token, contracts, rate, count, consumer, f"P8-{n}", head))
    return results
