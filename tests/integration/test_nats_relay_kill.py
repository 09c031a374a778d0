"""Proof by killing: writers run while the relay is SIGKILLed again and again and started
anew; a JetStream consumer reading all along gets every event exactly once, in the log's
position order (so each record's events in their order)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import defaultdict

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from channel_domain import acting_as
from channel_domain.store.log import read_settled
from tests.integration.relays import RelayProcess, checkpoint, delete_stream, head, stream_count, unique_names, wait_until

KILLS = 12
WRITERS = 3


class Consumer:
    """A durable pull consumer on the relay's stream, in a thread of its own, recording every
    delivery (stream sequence, Nats-Msg-Id, the item) until told to stop."""

    def __init__(self, nats_url: str, stream: str) -> None:
        self.nats_url, self.stream = nats_url, stream
        self.deliveries: list[tuple[int, str, dict]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._consume())
        except BaseException as error:  # noqa: BLE001 - raised in the test's thread by join()
            self.error = error

    async def _consume(self) -> None:
        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            await wait_for_stream(js, self.stream)
            subscription = await js.pull_subscribe(
                ">", durable="proof", stream=self.stream,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
            while not self.stop.is_set():
                try:
                    messages = await subscription.fetch(200, timeout=0.5)
                except TimeoutError:  # nothing new within the wait (nats-py raises asyncio's, not its own)
                    continue
                for message in messages:
                    self.deliveries.append((message.metadata.sequence.stream, message.headers["Nats-Msg-Id"],
                                            json.loads(message.data)))
                    await message.ack()
        finally:
            await nc.close()


async def wait_for_stream(js, stream: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await js.stream_info(stream)
            return
        except nats.js.errors.NotFoundError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _write_until(app, stop: threading.Event, writer: int, errors: list[BaseException]) -> None:
    try:
        with acting_as(f"spec-{writer}", ["channel_specialist"]):
            n = 0
            while not stop.is_set():
                outcome = app.register_partner(kind="retailer", name=f"writer {writer} partner {n}")
                if n % 3 == 0:  # some records get more than one event: per-record order to check
                    app.record_partner_document(outcome.id, "business_licence", f"licence {writer}-{n}")
                n += 1
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


@pytest.mark.timeout(180)
def test_every_event_arrives_exactly_once_in_order_while_the_relay_is_killed_again_and_again(
        app, database_url, nats_url):
    stream, prefix = unique_names()
    rng = random.Random(15)
    stop_writing = threading.Event()
    errors: list[BaseException] = []
    writers = [threading.Thread(target=_write_until, args=(app, stop_writing, n, errors)) for n in range(WRITERS)]
    consumer = Consumer(nats_url, stream)
    outputs: list[str] = []
    began = time.monotonic()
    try:
        for writer in writers:
            writer.start()
        consumer.start()
        for _ in range(KILLS):
            relay = RelayProcess(database_url, nats_url, stream, prefix)
            try:
                at_start = checkpoint(database_url, stream, prefix)
                # Killed once it is publishing: its checkpoint has moved at least once.
                wait_until(lambda at_start=at_start, relay=relay: checkpoint(database_url, stream, prefix) > at_start,
                           60, f"the relay publishes: {relay.output()[-2000:]}", pause=0.01)
                time.sleep(rng.uniform(0, 0.3))
            finally:
                relay.kill()
                outputs.append(relay.output())
                relay.stop()
        stop_writing.set()
        for writer in writers:
            writer.join(timeout=30)
        assert not errors, errors
        final = RelayProcess(database_url, nats_url, stream, prefix)
        try:
            wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 60, final.output)
            total = stream_count(nats_url, stream)
            wait_until(lambda: len({d[0] for d in consumer.deliveries}) >= total or consumer.error, 30,
                       f"the consumer reads all {total}: {len(consumer.deliveries)} delivered")
        finally:
            outputs.append(final.output())
            assert final.stop() == 0
        consumer.join()
        seconds = time.monotonic() - began
    finally:
        stop_writing.set()
        consumer.stop.set()
        delete_stream(nats_url, stream)

    log = read_settled(app.event_recorder, after=0, limit=1_000_000)
    first_deliveries = {}
    for sequence, msg_id, item in consumer.deliveries:
        first_deliveries.setdefault(sequence, (msg_id, item))
    in_stream = [first_deliveries[sequence] for sequence in sorted(first_deliveries)]

    # Every event of the log, exactly once, in position order.
    assert [item["position"] for _, item in in_stream] == [n.id for n in log]
    assert len({msg_id for msg_id, _ in in_stream}) == len(in_stream)
    assert all(msg_id == item["event_id"] for msg_id, item in in_stream)
    # Each record's events in version order, none missing.
    versions = defaultdict(list)
    for _, item in in_stream:
        versions[item["stream_id"]].append(item["version"])
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    assert any(len(v) > 1 for v in versions.values())

    resumed_past_checkpoint = sum("already holds the events up to position" in output for output in outputs)
    print(f"\nproof by killing: {len(log)} events, {KILLS} relays SIGKILLed, {resumed_past_checkpoint} restarts"
          f" found the stream ahead of the checkpoint, {len(consumer.deliveries) - len(in_stream)} redeliveries;"
          f" {seconds:.0f} s")
