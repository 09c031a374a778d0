"""Proof by killing, for the feed: writers keep committing over HTTP while a client long-polls
GET /v1/events, and the server — supervisor and workers, all at once — is SIGKILLed and
started again several times. The client only ever resumes after the last position it was
given; at the end it holds every event of the log exactly once, in position order."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import threading
import time

import httpx
import psycopg

from api.tokens import create_token
from tests.servers import BIN, free_port, wait_until_up

KILLS = 3
WRITERS = 4


def test_a_feed_client_gets_every_event_once_in_order_across_server_kills(database_url, figure):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        erp = create_token(conn, "erp", ["integration"])[1]
        spec = create_token(conn, "spec-1", ["channel_specialist"])[1]

    with tempfile.TemporaryFile() as log:
        def start() -> subprocess.Popen:
            # A session of its own, so that one signal reaches the supervisor and every worker.
            server = subprocess.Popen(
                [str(BIN / "channel-domain"), "serve", "--port", str(port), "--workers", "2", "--no-projections",
                 "--no-access-log"],
                env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            wait_until_up(base, server, lambda: (log.seek(0), log.read().decode(errors="replace"))[1])
            return server

        writing = threading.Event()
        writing.set()
        received: list[dict] = []
        resumed = [0]
        reader_done = threading.Event()
        stop_reading = threading.Event()

        def write() -> None:
            with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {spec}"}) as client:
                n = 0
                while writing.is_set():
                    n += 1
                    try:
                        client.post("/v1/partners", json={"kind": "retailer", "name": f"shop {n}"})
                    except httpx.HTTPError:
                        time.sleep(0.05)  # the server is down: try again shortly, as a client would

        def read() -> None:
            after = 0
            with httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {erp}"}) as client:
                while True:
                    try:
                        response = client.get("/v1/events", params={"after": after, "limit": 1000, "wait_s": 1})
                    except httpx.HTTPError:
                        resumed[0] += 1
                        time.sleep(0.1)
                        continue
                    if response.status_code != 200:  # a 503 while the database notices the dead sessions
                        resumed[0] += 1
                        time.sleep(0.1)
                        continue
                    page = response.json()
                    received.extend(page["items"])
                    after = page["next_after"]
                    if not page["items"] and stop_reading.is_set():
                        break
            reader_done.set()

        server = start()
        writers = [threading.Thread(target=write) for _ in range(WRITERS)]
        reader = threading.Thread(target=read)
        for thread in (*writers, reader):
            thread.start()
        try:
            for _ in range(KILLS):
                time.sleep(random.uniform(1.0, 2.5))
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=15)
                server = start()
            time.sleep(1)
            writing.clear()
            for thread in writers:
                thread.join(timeout=30)
            stop_reading.set()  # the reader stops at its first empty page: it has caught up
            assert reader_done.wait(60), "the feed client never caught up"
        finally:
            writing.clear()
            stop_reading.set()
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)

    with psycopg.connect(database_url) as conn:
        logged = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
    positions = [item["position"] for item in received]
    assert len(logged) > 50, "the writers hardly wrote: the test proves nothing"
    assert len(positions) == len(set(positions)), "an event was delivered twice"
    assert positions == sorted(positions), "events out of position order"
    assert positions == logged, f"missed {sorted(set(logged) - set(positions))[:10]}"
    assert len({item["event_id"] for item in received}) == len(received)
    figure(f"feed across {KILLS} SIGKILLs of every server process: {len(received)} events, each once, in order "
           f"({resumed[0]} failed polls resumed from the last position; {logged[-1] - len(logged)} positions drawn "
           "and never committed, passed once final)")
