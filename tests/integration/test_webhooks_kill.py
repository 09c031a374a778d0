"""Proof by killing: webhook delivery loses nothing and keeps each record's order while the
processes delivering are SIGKILLed over and over and the receiver fails at random."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import threading
import time

import httpx
import psycopg

from channel_domain.aggregate import event_id
from tests.integration.receiver import receiving
from tests.reliability.conftest import serving
from tests.servers import BIN

KILLS = 12
WRITERS = 4


def _delivery_worker(database_url: str) -> subprocess.Popen:
    """A `channel-domain project` process: it delivers webhooks beside the read models."""
    return subprocess.Popen([str(BIN / "channel-domain"), "project"],
                            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _write(base: str, token: str, stop: threading.Event, seed: int) -> None:
    chance = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    partners: list[str] = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while not stop.is_set():
            if not partners or chance.random() < 0.3:
                answer = client.post("/v1/partners", json={"kind": "retailer", "name": f"P{seed}-{len(partners)}"})
                assert answer.status_code == 201, answer.text
                partners.append(answer.json()["id"])
            else:
                answer = client.post(f"/v1/partners/{chance.choice(partners)}/complaints", json={"subject": "late"})
                assert answer.status_code == 200, answer.text


def test_every_event_arrives_in_order_per_record_while_deliverers_are_killed(database_url, monkeypatch):
    # Inherited by every process started below: serve (which checks the url) and the deliverers.
    monkeypatch.setenv("CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("CHANNEL_DOMAIN_WEBHOOK_RETRY_DELAYS", "0.05,0.1,0.2")
    chance = random.Random(15)
    with receiving() as receiver, serving(database_url, workers=1) as server:
        receiver.answer = lambda item: 500 if chance.random() < 0.25 else 200
        with httpx.Client(base_url=server.base, timeout=30) as client:
            created = client.post("/v1/webhooks", json={"url": receiver.url, "from_position": 0},
                                  headers={"Authorization": f"Bearer {server.token('erp', 'integration')}"})
        assert created.status_code == 201, created.text
        webhook = created.json()["id"]

        workers = [_delivery_worker(database_url), _delivery_worker(database_url)]
        stop = threading.Event()
        token = server.token("spec-1", "channel_specialist")
        writers = [threading.Thread(target=_write, args=(server.base, token, stop, n)) for n in range(WRITERS)]
        for writer in writers:
            writer.start()
        kills = 0
        during_kills = 0
        try:
            while kills < KILLS:
                # Kill while delivering: once the restarted workers have sent something again.
                sent_before = len(receiver.requests)
                receiver.wait_for(lambda: len(receiver.requests) > sent_before, timeout=60,  # noqa: B023
                                  what="deliveries between kills")
                time.sleep(chance.uniform(0.0, 0.6))
                victims = range(len(workers)) if kills % 4 == 3 else [chance.randrange(len(workers))]
                for n in victims:  # now and then both at once: nobody left delivering for a moment
                    workers[n].send_signal(signal.SIGKILL)
                    workers[n].wait()
                    kills += 1
                    workers[n] = _delivery_worker(database_url)
            during_kills = len(receiver.requests)
        finally:
            stop.set()
            for writer in writers:
                writer.join(timeout=60)

        try:
            receiver.answer = lambda item: 200
            with psycopg.connect(database_url) as conn:
                logged = conn.execute("SELECT position, originator_id, originator_version FROM events"
                                      " ORDER BY position").fetchall()

            def caught_up() -> bool:
                with psycopg.connect(database_url) as conn:
                    position = conn.execute("SELECT position FROM webhook_subscriptions WHERE id = %s",
                                            (webhook,)).fetchone()[0]
                    waiting = conn.execute("SELECT count(*) FROM webhook_lines WHERE subscription_id = %s",
                                           (webhook,)).fetchone()[0]
                return position >= logged[-1][0] and waiting == 0

            receiver.wait_for(caught_up, timeout=60, what="every event delivered after the last kill")
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=15)

    expected = {str(event_id(stream, version)) for _, stream, version in logged}
    delivered = receiver.delivered
    assert {r.webhook_id for r in delivered} == expected  # every event, none made up

    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    for r in delivered:
        bodies[r.webhook_id].add(r.body)
    assert all(len(b) == 1 for b in bodies.values())  # a duplicate is the same delivery again

    seen: dict[str, int] = collections.defaultdict(int)  # per record: versions delivered at least once so far
    for r in delivered:
        item = r.item
        assert item["version"] <= seen[item["stream_id"]] + 1, f"{item['stream_id']} v{item['version']} ahead of order"
        seen[item["stream_id"]] = max(seen[item["stream_id"]], item["version"])

    duplicates = len(delivered) - len(expected)
    failures = len(receiver.requests) - len(delivered)
    print(f"webhooks under kills: {len(expected)} events in {len(seen)} records delivered, {kills} SIGKILLs of the"
           f" delivering processes ({during_kills} requests meanwhile), {failures} answers 500, {duplicates} duplicate deliveries (same webhook-id)")


def test_serve_delivers_in_the_background_within_milliseconds(database_url, monkeypatch):
    """`serve` (projections on) delivers; the time from a command's answer to the receiver,
    at about 100 commands/s from 4 clients, is printed (run with -s)."""
    monkeypatch.setenv("CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    answered: dict[str, float] = {}
    with receiving() as receiver, serving(database_url, workers=2, projections=True) as server:
        with httpx.Client(base_url=server.base, timeout=30) as client:
            created = client.post("/v1/webhooks", json={"url": receiver.url},
                                  headers={"Authorization": f"Bearer {server.token('erp', 'integration')}"})
            assert created.status_code == 201, created.text
        token = server.token("spec-1", "channel_specialist")

        def write(n: int) -> None:
            with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                for k in range(100):
                    started = time.monotonic()
                    answer = c.post("/v1/partners", json={"kind": "retailer", "name": f"L{n}-{k}"})
                    assert answer.status_code == 201, answer.text
                    answered[answer.json()["id"]] = time.monotonic()
                    time.sleep(max(0.0, 0.04 - (time.monotonic() - started)))

        clients = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for client_thread in clients:
            client_thread.start()
        for client_thread in clients:
            client_thread.join()
        receiver.wait_for(lambda: len(receiver.delivered) >= len(answered), timeout=30, what="all delivered")
    arrived = {r.item["stream_id"]: r.at for r in receiver.delivered}
    assert arrived.keys() == answered.keys()
    latencies = sorted(max(0.0, arrived[k] - answered[k]) * 1000 for k in answered)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    print(f"webhook latency from answer to receiver, {len(latencies)} commands: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
