"""Real `channel-domain relay nats` processes, and a JetStream consumer reading what they sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from tests.servers import BIN, stop


def unique_names() -> tuple[str, str]:
    """A stream and a subject prefix no other test uses (the tests may share one NATS server)."""
    tag = uuid.uuid4().hex[:10]
    return f"TEST_{tag}", f"test-{tag}"


class RelayProcess:
    """`channel-domain relay nats` in a process of its own, its output kept for a failing test."""

    def __init__(self, database_url: str, nats_url: str, stream: str, prefix: str, *options: str) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(BIN / "channel-domain"), "relay", "nats", "--url", nats_url, "--stream", stream,
             "--subject-prefix", prefix, "--log-format", "text", *options],
            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}, stdout=self.log,
            stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        code = stop(self.process)
        self.log.close()
        return code


def wait_until(condition: Callable[[], Any], within_s: float, what: str, pause: float = 0.05) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        time.sleep(pause)


def head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]


def positions(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]


def checkpoint(database_url: str, stream: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT position FROM nats_relay_checkpoints WHERE stream = %s AND subject_prefix = %s",
                           (stream, prefix)).fetchone()
    return row[0] if row else 0


@dataclass(frozen=True)
class Received:
    sequence: int  # the stream's sequence number
    subject: str
    headers: dict[str, str]
    item: dict[str, Any]

    @property
    def position(self) -> int:
        return self.item["position"]


def received(nats_url: str, stream: str) -> list[Received]:
    """Everything in the stream, in stream order, as a JetStream consumer receives it (an
    ephemeral pull consumer from the first message, each acknowledged)."""
    return asyncio.run(_received(nats_url, stream))


async def _received(nats_url: str, stream: str) -> list[Received]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        got: list[Received] = []
        if total == 0:
            return got
        subscription = await js.pull_subscribe(
            ">", stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT))
        try:
            while len(got) < total:
                for message in await subscription.fetch(min(500, total - len(got)), timeout=10):
                    await message.ack()
                    got.append(Received(message.metadata.sequence.stream, message.subject, dict(message.headers or {}),
                                        json.loads(message.data)))
        finally:
            await subscription.unsubscribe()
        return got
    finally:
        await nc.close()


def stream_info(nats_url: str, stream: str) -> Any:
    async def info() -> Any:
        nc = await nats.connect(nats_url)
        try:
            return await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()

    return asyncio.run(info())


def stream_count(nats_url: str, stream: str) -> int:
    try:
        return stream_info(nats_url, stream).state.messages
    except nats.js.errors.NotFoundError:
        return 0


def delete_stream(nats_url: str, stream: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(delete())
