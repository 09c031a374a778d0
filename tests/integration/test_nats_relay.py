"""`channel-domain relay nats`: the log, in order, to JetStream — against a real NATS server and
real relay processes (docs/integration.md, "NATS JetStream relay")."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import StorageType

from channel_domain import acting_as
from channel_domain.store.log import read_settled
from integration import nats_relay
from integration.items import feed_items
from tests.integration.relays import (
    RelayProcess,
    checkpoint,
    delete_stream,
    head,
    received,
    stream_count,
    stream_info,
    unique_names,
    wait_until,
)
from tests.natsserver import nats_server
from tests.servers import BIN, free_port


@pytest.fixture
def names(nats_url: str) -> Iterator[tuple[str, str]]:
    stream, prefix = unique_names()
    yield stream, prefix
    delete_stream(nats_url, stream)


def _partners(app, count: int, tag: str = "P") -> None:
    with acting_as("spec-1", ["channel_specialist"], correlation_id=f"crm-{tag}"):
        for n in range(count):
            app.register_partner(kind="retailer", name=f"{tag} {n}")


def _caught_up(database_url: str, nats_url: str, stream: str, prefix: str) -> bool:
    return checkpoint(database_url, stream, prefix) == head(database_url) and stream_count(nats_url, stream) > 0


def _relay_status(database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "channel-domain"), "relay", "status"], capture_output=True, text=True,
                          env={"CHANNEL_DOMAIN_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin",
                               "COLUMNS": "250", **_python_path()}, timeout=60)


def _python_path() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def test_every_event_reaches_its_subject_with_its_id_and_the_feed_item_as_body(app, database_url, nats_url, names):
    stream, prefix = names
    _partners(app, 3)
    with acting_as("hr-1", ["hr"]):
        app.hire_employee(name="Wang Fang", role="sales_rep", hired_on="2020-01-06", national_id="330101199001011234")
    relay = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: _caught_up(database_url, nats_url, stream, prefix), 60,
                   f"the relay publishes the log: {relay.output()[-2000:]}")
        got = received(nats_url, stream)
        status = _relay_status(database_url)
    finally:
        assert relay.stop() == 0  # SIGTERM: a clean stop

    notifications = read_settled(app.event_recorder, after=0, limit=1000)
    expected = feed_items(app, notifications)
    assert [m.item for m in got] == expected  # every event, once, in position order, as the feed item
    for message, item in zip(got, expected, strict=True):
        assert message.subject == f"{prefix}.{item['stream_type']}.{item['type'].partition('.')[2]}"
        assert message.headers["Nats-Msg-Id"] == item["event_id"]
        assert message.headers["Channel-Domain-Position"] == str(item["position"])
    assert {m.subject for m in got} >= {f"{prefix}.Partner.Applied", f"{prefix}.Employee.Hired"}
    hired = next(m.item for m in got if m.item["type"] == "Employee.Hired")
    assert hired["data"]["name"] == "redacted" and hired["data"]["national_id"] == "redacted"
    assert not any("Wang Fang" in str(m.item) or "330101199001011234" in str(m.item) for m in got)

    config = stream_info(nats_url, stream).config
    assert config.subjects == [f"{prefix}.>"]
    assert config.duplicate_window == 120
    assert config.storage == StorageType.FILE

    assert status.returncode == 0, status.stdout + status.stderr
    row = next(line for line in status.stdout.splitlines() if stream in line)
    assert "yes" in row and f" {head(database_url)} " in row  # running, at the head


def test_relay_status_says_when_no_relay_runs(app, database_url, nats_url, names):
    stream, prefix = names
    _partners(app, 1)
    relay = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: _caught_up(database_url, nats_url, stream, prefix), 60, relay.output)
    finally:
        relay.stop()
    _partners(app, 2, "Q")
    status = _relay_status(database_url)
    assert status.returncode == 1
    row = next(line for line in status.stdout.splitlines() if stream in line)
    assert " no " in row and f" {head(database_url) - 2} " in row and " 2 " in row  # behind by the 2 new events
    assert "no relay is running" in status.stdout


def test_the_checkpoint_moves_only_after_jetstream_acknowledged(app, database_url):
    """NATS stops: events keep coming, the checkpoint stays; NATS comes back on the same port: the
    relay reconnects by itself and everything arrives, once, in order."""
    stream, prefix = unique_names()
    with nats_server() as server:
        _partners(app, 2)
        relay = RelayProcess(database_url, server.url, stream, prefix)
        try:
            wait_until(lambda: _caught_up(database_url, server.url, stream, prefix), 60, relay.output)
            before = checkpoint(database_url, stream, prefix)
            server.stop()
            _partners(app, 5, "during the outage")
            # Long enough for several publish attempts and acknowledgement timeouts to have failed.
            wait_until(lambda: "syncing with the stream again" in relay.output()
                       or "disconnected from NATS" in relay.output(), 30, "the relay notices the outage")
            time.sleep(2)
            assert checkpoint(database_url, stream, prefix) == before < head(database_url)
            server.start()
            wait_until(lambda: _caught_up(database_url, server.url, stream, prefix), 60,
                       f"the relay reconnects and catches up: {relay.output()[-3000:]}")
        finally:
            assert relay.stop() == 0
        got = received(server.url, stream)
        assert [m.position for m in got] == [n.id for n in read_settled(app.event_recorder, after=0, limit=1000)]


def test_a_standby_takes_over_within_5_s_when_the_active_relay_is_killed(app, database_url, nats_url, names):
    stream, prefix = names
    _partners(app, 1)
    active = RelayProcess(database_url, nats_url, stream, prefix)
    standby = None
    try:
        wait_until(lambda: _caught_up(database_url, nats_url, stream, prefix), 60, active.output)
        standby = RelayProcess(database_url, nats_url, stream, prefix)
        wait_until(lambda: "standing by" in standby.output(), 60, f"the second relay stands by: {standby.output()}")
        _partners(app, 1, "while both run")
        wait_until(lambda: _caught_up(database_url, nats_url, stream, prefix), 10, active.output)

        active.kill()
        killed_at = time.monotonic()
        _partners(app, 1, "after the kill")
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 10,
                   f"the standby takes over: {standby.output()[-2000:]}")
        took = time.monotonic() - killed_at
        assert took < 5, f"taken over in {took:.1f} s"
        print(f"\ntaken over {took:.2f} s after the SIGKILL (the event written after it in the stream)")
        assert "relaying to stream" in standby.output()
    finally:
        active.stop()
        if standby is not None:
            assert standby.stop() == 0
    got = received(nats_url, stream)
    assert [m.position for m in got] == [n.id for n in read_settled(app.event_recorder, after=0, limit=1000)]


def test_a_relay_that_died_before_recording_its_checkpoint_sends_nothing_twice(app, database_url, nats_url, names):
    """Killed between JetStream's acknowledgement and its checkpoint's commit (simulated: the
    checkpoint set back): the next relay reads the stream's last message and moves on from it,
    even after the duplicate window would have passed."""
    stream, prefix = names
    _partners(app, 4)
    relay = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: _caught_up(database_url, nats_url, stream, prefix), 60, relay.output)
    finally:
        relay.stop()
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE nats_relay_checkpoints SET position = 0")
    _partners(app, 1, "later")
    relay = RelayProcess(database_url, nats_url, stream, prefix)
    try:
        wait_until(lambda: checkpoint(database_url, stream, prefix) == head(database_url), 60, relay.output)
        assert "already holds the events up to position" in relay.output()
    finally:
        relay.stop()
    got = received(nats_url, stream)
    assert [m.position for m in got] == [n.id for n in read_settled(app.event_recorder, after=0, limit=1000)]


def test_messages_sent_again_are_dropped_by_their_msg_id(app, database_url, nats_url, names):
    """Two relays publishing the same events — one lost its lock without noticing yet — or a
    message resent by hand: JetStream acknowledges the repeats as duplicates, and the stream
    holds each event once."""
    stream, prefix = names
    _partners(app, 5)
    notifications = read_settled(app.event_recorder, after=0, limit=1000)

    async def publish_twice() -> list:
        active = nats_relay.NatsRelay(app, "unused", url=nats_url, stream=stream, subject_prefix=prefix)
        zombie = nats_relay.NatsRelay(app, "unused", url=nats_url, stream=stream, subject_prefix=prefix)
        await active.connect()
        await zombie.connect()
        try:
            batch = nats_relay.outgoing(app, prefix, notifications)
            await active._sync()
            await active._publish(batch[:2])
            await zombie._sync()  # sees the stream end at the second event
            await active._publish(batch[2:])
            await zombie._publish(batch[2:])  # the same events again, through the relay's own path
            return [await zombie.js.publish(m.subject, m.body, headers={"Nats-Msg-Id": m.event_id}) for m in batch]
        finally:
            await active.close()
            await zombie.close()

    acks = asyncio.run(publish_twice())
    assert all(ack.duplicate for ack in acks)
    got = received(nats_url, stream)
    assert [m.position for m in got] == [n.id for n in notifications]
    assert checkpoint(database_url, stream, prefix) == notifications[-1].id


def test_a_relay_with_a_stale_view_of_the_stream_cannot_store_out_of_order(app, database_url, nats_url, names):
    """Each message names the one that must precede it in the stream: a relay whose view is
    stale (it lost its lock unnoticed, or a message before it was lost) is refused, and its
    checkpoint does not move."""
    stream, prefix = names
    _partners(app, 3)
    early = read_settled(app.event_recorder, after=0, limit=1000)
    _partners(app, 1, "later")
    late = read_settled(app.event_recorder, after=early[-1].id, limit=1000)

    async def publish() -> None:
        ahead = nats_relay.NatsRelay(app, "unused", url=nats_url, stream=stream, subject_prefix=prefix)
        stale = nats_relay.NatsRelay(app, "unused", url=nats_url, stream=stream, subject_prefix=prefix)
        await ahead.connect()
        await stale.connect()
        try:
            await stale._sync()  # sees the stream empty
            with pytest.raises(nats_relay.PublishFailed, match="acknowledged 0 of 1 .* wrong last sequence"):
                await ahead._sync()
                await ahead._publish(nats_relay.outgoing(app, prefix, early[:1]))
                await stale._publish(nats_relay.outgoing(app, prefix, late))  # would follow nothing: refused
            await stale._sync()  # sees the stream end at the first event
            await ahead._publish(nats_relay.outgoing(app, prefix, early[1:]))
            with pytest.raises(nats_relay.PublishFailed, match="acknowledged 0 of 1 .* wrong last msg ID"):
                await stale._publish(nats_relay.outgoing(app, prefix, late))  # would follow the first: refused
        finally:
            await ahead.close()
            await stale.close()

    asyncio.run(publish())
    assert [m.position for m in received(nats_url, stream)] == [n.id for n in early]
    assert checkpoint(database_url, stream, prefix) == early[-1].id


def _relay_once(database_url: str, url: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "channel-domain"), "relay", "nats", "--url", url, *options], capture_output=True,
                          text=True, timeout=60,
                          env={"CHANNEL_DOMAIN_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "COLUMNS": "250",
                               **_python_path()})


def test_an_unreachable_nats_stops_the_relay_at_start_with_exit_code_3(database_url):
    nobody = f"nats://127.0.0.1:{free_port()}"
    began = time.monotonic()
    done = _relay_once(database_url, nobody)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot reach NATS at {nobody}" in done.stderr.replace("\n", " ")
    assert time.monotonic() - began < 30


def test_a_nats_without_jetstream_stops_the_relay_at_start_with_exit_code_3(database_url, tmp_path):
    port = free_port()
    plain = subprocess.Popen([str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), 20, "nats-server starts")
        done = _relay_once(database_url, f"nats://127.0.0.1:{port}")
    finally:
        plain.terminate()
        plain.wait(timeout=10)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "JetStream" in done.stderr


def test_a_stream_that_does_not_take_the_prefix_or_a_bad_name_is_refused_with_exit_code_2(database_url, nats_url,
                                                                                          names):
    stream, prefix = names

    async def make_other_stream() -> None:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().add_stream(name=stream, subjects=[f"other-{uuid.uuid4().hex[:8]}.>"])
        finally:
            await nc.close()

    asyncio.run(make_other_stream())
    done = _relay_once(database_url, nats_url, "--stream", stream, "--subject-prefix", prefix)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"not {prefix}.>" in done.stderr.replace("\n", " ")
    for option, bad in (("--stream", "has.dot"), ("--subject-prefix", "a.*"), ("--subject-prefix", "a..b")):
        done = _relay_once(database_url, nats_url, option, bad)
        assert done.returncode == 2, (bad, done.stdout + done.stderr)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
