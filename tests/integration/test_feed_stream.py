"""GET /v1/events/stream against a real `channel-domain serve` (two worker processes), read as a
client would, with httpx-sse: ids, types and items; resuming after Last-Event-ID; starting at
the head; ending cleanly when the server shuts down; and what idle streams cost the database."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
import queue
import signal
import threading
import time

import httpx
import psycopg
from httpx_sse import aconnect_sse
from httpx_sse._decoders import SSEDecoder

from api.tokens import revoke_token
from tests.integration.holding import HELD_NAME, HOLD_LOCK, install_hold, wait_until_held
from tests.reliability.conftest import serving


_LOOP = asyncio.new_event_loop()  # every client's streams run on this one loop, on a thread of its own
threading.Thread(target=_LOOP.run_forever, name="sse-clients", daemon=True).start()


class Stream:
    """One SSE client, as a task on the clients' loop; its events arrive in `events`. Closing
    it cancels the task, which closes its connection as a client going away would."""

    def __init__(self, base: str, token: str, params: dict | None = None, last_event_id: str | None = None) -> None:
        self.events: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.status: int | None = None
        self.error: BaseException | None = None
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._task = asyncio.run_coroutine_threadsafe(self._run(base, params or {}, headers), _LOOP)

    async def _run(self, base: str, params: dict, headers: dict) -> None:
        try:
            async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=None)) as client:
                async with aconnect_sse(client, "GET", "/v1/events/stream", params=params, headers=headers) as source:
                    self.status = source.response.status_code
                    self.connected.set()
                    async for event in source.aiter_sse():
                        self.events.put(event)
        except BaseException as error:  # noqa: BLE001 - kept for the test to look at
            self.error = error
        finally:
            self.connected.set()
            self.ended.set()

    def take(self, count: int, within_s: float = 20) -> list:
        deadline = time.monotonic() + within_s
        taken = []
        while len(taken) < count:
            try:
                taken.append(self.events.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                raise AssertionError(f"{len(taken)} of {count} events within {within_s} s ({self.error!r})") from None
        return taken

    def close(self) -> None:
        self._task.cancel()
        self.ended.wait(10)


def _feed(server, token: str, **params) -> list[dict]:
    response = httpx.get(f"{server.base}/v1/events", params={"limit": 1000, **params},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _register(server, token: str, name: str) -> int:
    response = httpx.post(f"{server.base}/v1/partners", json={"kind": "retailer", "name": name},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["position"]


def test_the_stream_carries_id_type_and_item_and_resumes_exactly_after_last_event_id(database_url):
    with serving(database_url) as server:
        erp, spec = server.token("erp", "integration"), server.token("spec-1", "channel_specialist")
        for n in range(3):
            _register(server, spec, f"before {n}")
        stream = Stream(server.base, erp, {"after": 0})
        try:
            first = stream.take(3)
            items = _feed(server, erp)
            assert [(e.id, e.event, json.loads(e.data)) for e in first] == [
                (str(item["position"]), item["type"], item) for item in items]
            live = [_register(server, spec, f"live {n}") for n in range(2)]
            assert [int(e.id) for e in stream.take(2)] == live
        finally:
            stream.close()

        missed = [_register(server, spec, f"while away {n}") for n in range(3)]
        # An EventSource reconnects to the same URL with Last-Event-ID: the header wins over `after`.
        again = Stream(server.base, erp, {"after": 0}, last_event_id=str(live[-1]))
        try:
            assert [int(e.id) for e in again.take(3)] == missed
            later = _register(server, spec, "later")
            assert [int(e.id) for e in again.take(1)] == [later]
            assert again.events.empty(), "nothing twice"
        finally:
            again.close()

        # "²" and "¹" (Latin-1 bytes on the wire) are digits to str.isdigit, not to int(): they made a 500.
        for bad in (b"seven", b"\xb2", b"1\xb9"):
            refused = httpx.get(f"{server.base}/v1/events/stream", headers={
                "Authorization": f"Bearer {erp}", "Last-Event-ID": bad}, timeout=10)
            assert refused.status_code == 422 and refused.json()["code"] == "validation_error", (bad, refused.text)
        forbidden = httpx.get(f"{server.base}/v1/events/stream", timeout=10, headers={
            "Authorization": f"Bearer {server.token('bi', 'reporting')}"})
        assert forbidden.status_code == 403


def test_without_after_the_stream_starts_at_the_head_and_filters_apply(database_url):
    with serving(database_url) as server:
        erp, spec = server.token("erp", "integration"), server.token("spec-1", "channel_specialist")
        hr = server.token("hr-1", "hr")
        existing = max(_register(server, spec, f"old {n}") for n in range(3))
        stream = Stream(server.base, erp)
        employees = Stream(server.base, erp, {"stream_types": "Employee"})
        try:
            assert stream.connected.wait(20) and stream.status == 200
            # The stream has started once it is waiting at the head; until an event shows it,
            # keep committing new ones. Whatever arrives first must be new, then each in turn.
            posted: list[int] = []
            deadline = time.monotonic() + 30
            while stream.events.empty():
                assert time.monotonic() < deadline, "no event reached the stream"
                posted.append(_register(server, spec, "new"))
                time.sleep(0.2)
            first = int(stream.take(1)[0].id)
            assert first > existing and first in posted
            rest = posted[posted.index(first) + 1:]
            assert [int(e.id) for e in stream.take(len(rest))] == rest

            hired = httpx.post(f"{server.base}/v1/employees", headers={"Authorization": f"Bearer {hr}"}, timeout=30,
                               json={"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06",
                                     "national_id": "330101199001011234"})
            assert hired.status_code == 201
            (event,) = employees.take(1)
            assert event.event == "Employee.Hired" and int(event.id) == hired.json()["position"]
            assert json.loads(event.data)["data"]["national_id"] == "redacted" and "Wang Fang" not in event.data
        finally:
            stream.close()
            employees.close()


def test_without_after_the_stream_starts_once_no_writer_can_commit_below_the_head(database_url):
    install_hold(database_url)
    with serving(database_url) as server, ThreadPoolExecutor(1) as pool:
        erp, spec = server.token("erp", "integration"), server.token("spec-1", "channel_specialist")
        lock = psycopg.connect(database_url, autocommit=True)
        lock.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
        try:
            held = pool.submit(_register, server, spec, HELD_NAME)  # draws a position, then waits
            wait_until_held(database_url)
            later = _register(server, spec, "later")  # committed above the held one
            # Started at `later`, a stream would never carry the held event, which commits after
            # it connected: so it does not start while that writer runs, and says so after 5 s.
            early = Stream(server.base, erp)
            assert early.ended.wait(30), "the stream started above a writer that could still commit below it"
            assert early.status == 503
            refused = httpx.get(f"{server.base}/v1/events/stream", headers={"Authorization": f"Bearer {erp}"},
                                timeout=30)
            assert refused.status_code == 503 and refused.json()["code"] == "head_not_settled"
            assert refused.headers["Retry-After"] == "1"
            stream = Stream(server.base, erp)
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))
            lock.close()
        try:
            assert held.result(timeout=30) < later
            assert stream.connected.wait(30) and stream.status == 200, stream.error
            # It starts once the writer has ended: after both, with nothing of before it.
            posted: list[int] = []
            deadline = time.monotonic() + 30
            while stream.events.empty():
                assert time.monotonic() < deadline, "no event reached the stream"
                posted.append(_register(server, spec, "new"))
                time.sleep(0.2)
            assert int(stream.take(1)[0].id) == posted[0]
        finally:
            stream.close()


def test_a_streams_token_revoked_ends_it_within_5_s_and_only_that_one(database_url):
    with serving(database_url) as server:
        spec = server.token("spec-1", "channel_specialist")
        leaked, other = server.token("erp", "integration"), server.token("crm", "integration")
        revoked, kept = Stream(server.base, leaked), Stream(server.base, other)
        try:
            for stream in (revoked, kept):
                assert stream.connected.wait(30) and stream.status == 200, stream.error
            first = _register(server, spec, "before revocation")
            assert [int(e.id) for e in revoked.take(1)] == [first]
            with psycopg.connect(database_url, autocommit=True) as conn:
                (token_id,) = conn.execute("SELECT token_id FROM api_tokens WHERE actor = 'erp'").fetchone()
                assert revoke_token(conn, token_id)
            revoked_at = time.monotonic()
            assert revoked.ended.wait(10), "the revoked token's stream stayed open"
            ended_in = time.monotonic() - revoked_at
            assert ended_in < 5, f"the revoked token's stream ended {ended_in:.1f} s after the revocation"
            # Another client's stream goes on; the revoked token cannot open a new one.
            after = _register(server, spec, "after revocation")
            assert [int(e.id) for e in kept.take(2)] == [first, after]
            assert revoked.events.empty()
            again = httpx.get(f"{server.base}/v1/events/stream", headers={"Authorization": f"Bearer {leaked}"},
                              timeout=10)
            assert again.status_code == 401
            print(f"a revoked token's stream ended {ended_in:.2f} s after the revocation")
        finally:
            revoked.close()
            kept.close()


def test_a_stream_is_pinged_every_ping_interval_with_lone_comment_lines(database_url, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_FEED_PING_S", "0.3")
    with serving(database_url) as server:
        erp, spec = server.token("erp", "integration"), server.token("spec-1", "channel_specialist")
        first = _register(server, spec, "first")
        lines: list[str] = []
        pings: list[float] = []
        with httpx.stream("GET", f"{server.base}/v1/events/stream", params={"after": 0},
                          headers={"Authorization": f"Bearer {erp}"}, timeout=httpx.Timeout(30, read=10)) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith(":"):
                    pings.append(time.monotonic())
                    if len(pings) == 4:
                        break
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # Every 0.3 s (15 s by default: four would take 45 s, and the read would time out).
        assert max(gaps) < 3, gaps
        # The pings that followed the event are invisible to a client library: no empty event
        # with the last id (httpx-sse dispatches one at every blank line once an id was seen).
        decoder = SSEDecoder()
        decoded = [event for line in lines if (event := decoder.decode(line)) is not None]
        assert [(event.id, event.event) for event in decoded] == [(str(first), "Partner.Applied")]


def test_open_streams_and_long_polls_end_cleanly_when_the_server_shuts_down(database_url):
    with serving(database_url) as server:
        erp = server.token("erp", "integration")
        head = _register(server, server.token("spec-1", "channel_specialist"), "the head")
        streams = [Stream(server.base, erp) for _ in range(3)]
        for stream in streams:
            assert stream.connected.wait(20) and stream.status == 200
        long_poll: dict = {}

        def poll() -> None:
            try:
                long_poll["response"] = httpx.get(f"{server.base}/v1/events", params={"after": head, "wait_s": 30},
                                                  headers={"Authorization": f"Bearer {erp}"}, timeout=60)
            except httpx.HTTPError as error:
                long_poll["error"] = error

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(1)  # lets the long-poll start waiting; not an assertion
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)
        stopped_in = time.monotonic() - stopping
        poller.join(timeout=20)
        assert stopped_in < 10, f"graceful shutdown took {stopped_in:.1f} s with open streams"
        for stream in streams:
            assert stream.ended.wait(10), "a stream stayed open after the server stopped"
        # The long-poll was answered, empty, rather than cut off or held for its 30 s.
        assert long_poll["response"].status_code == 200
        assert long_poll["response"].json() == {"items": [], "next_after": head}


def _transactions(conn: psycopg.Connection) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                        " WHERE datname = current_database()").fetchone()[0]


def test_a_hundred_idle_streams_cost_the_database_one_read_per_poll_interval_per_process(database_url, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_FEED_POLL_S", "0.02")
    monkeypatch.setenv("CHANNEL_DOMAIN_FEED_LINGER_S", "1")
    processes, interval_s, window_s = 2, 0.02, 5.0
    with serving(database_url, workers=processes) as server, psycopg.connect(database_url, autocommit=True) as stats:
        erp = server.token("erp", "integration")
        streams = [Stream(server.base, erp) for _ in range(100)]
        try:
            for stream in streams:
                assert stream.connected.wait(30) and stream.status == 200, stream.error
            time.sleep(2)  # the connections' own reads (token, head) done and their statistics flushed
            before, started = _transactions(stats), time.monotonic()
            time.sleep(window_s)
            spent = _transactions(stats) - before
            elapsed = time.monotonic() - started
        finally:
            for stream in streams:
                stream.close()
        # One read per poll interval per process; statistics reach pg_stat_database up to a
        # second late, so allow a second more per process. A read per stream would be 100×.
        ceiling = processes * (elapsed + 1) / interval_s
        assert spent <= ceiling, f"{spent} transactions in {elapsed:.1f} s with 100 idle streams (ceiling {ceiling:.0f})"
        assert spent >= elapsed / interval_s / 4, "the streams were not being served at all"
        print(f"100 idle streams, {processes} processes: {spent / elapsed:.0f} transactions/s "
              f"(one read per {interval_s * 1000:.0f} ms per process: {processes / interval_s:.0f}/s)")

        # Nobody waits any more: once the reader has lingered (1 s here), nothing reads the log.
        # An idle backend reports its last statistics up to 10 s late: wait for them first.
        time.sleep(12)
        before = _transactions(stats)
        time.sleep(3)
        assert _transactions(stats) - before <= 5, "the feed's reader kept polling with nobody waiting"

