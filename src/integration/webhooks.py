"""Delivering webhooks: each subscription's events, as feed items, `POST`ed to its URL with
Standard Webhooks signatures — at least once, in order per record, never skipping one.

At least once, never skipped. A subscription's events are read with `EventLog` (which never
passes a position a running transaction could still fill) from its checkpoint. Each event the
subscription wants goes into its record's line (`webhook_lines`) in the transaction that moves
the checkpoint past it, and leaves the line only in the transaction that records the
receiver's 2xx. A worker killed in between sends those events again on restart, with the same
`webhook-id` (the event id), so a receiver deduplicates on it.

In order per record, no record or subscription waiting for another. Each record's line is
sent by a task of its own (a coroutine on the worker's event loop, over its subscription's
own `httpx.AsyncClient`), one event after another, and the task commits its own outcome: what was
delivered leaves the line; a failure stays at its head with its count, the delay for that count
(`CHANNEL_DOMAIN_WEBHOOK_RETRY_DELAYS`) and the error. The pass that reads new events and
starts tasks never waits for one, and tasks cost no thread while they wait, so a receiver that
hangs holds up its own records alone: a subscription has at most `LINES_AT_ONCE` records in
flight, and each subscription has a connection pool of its own, uncapped. Each
request has a total deadline (`CHANNEL_DOMAIN_WEBHOOK_TIMEOUT_S`, `asyncio.timeout`, which
closes the connection): a receiver that drips its answer a byte at a time is cut there too. After `MAX_ATTEMPTS` failures the line
is parked: tried no more, and later events of that record join it, until
`POST /v1/webhooks/{id}/parked/replay`.

One worker per subscription. Every `serve` process (or `project` worker) runs a
`WebhookWorker`; each takes a session advisory lock per subscription, on a session of its own
(with TCP keepalives, so a host that vanishes frees its locks within seconds) that it asks
every pass: a worker that dies frees its locks, and another takes them over. Locks it does not
hold are asked for in one statement, at most once every `LOCK_RETRY_S`. The checkpoint
moves only from where the pass read it, so a worker that lost its session without noticing
cannot move it under the new owner; a failure is recorded only on a line as the task read it.

Only where allowed. The HTTP client connects through `VettingBackend`: it resolves a host
once, checks every address with the subscription URL policy, and connects to those very
addresses (TLS still verifies, and SNI still names, the host): a name that answers otherwise
on a second lookup gets nowhere.

Fast and cheap. A worker looks every `poll_s` (25 ms) with one statement for all its
subscriptions: their state, the log's head and each one's latest change (a replay, a resume).
A subscription gets a pass only when that shows work — the head beyond its checkpoint, a
change, one of its tasks done, or a waiting line's retry due — so idle subscriptions cost
nothing of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx
import psycopg
from eventsourcing.persistence import Notification
from psycopg.rows import dict_row
from standardwebhooks.webhooks import Webhook

from channel_domain.aggregate import event_id
from channel_domain.store.log import EventLog
from channel_domain.store.recorder import EVENTS_TABLE
from integration.items import EventFilter, feed_items
from integration.webhook_subscriptions import MAX_ATTEMPTS, UrlPolicy, WebhookUrlNotAllowed

logger = logging.getLogger(__name__)

RETRY_DELAYS_VARIABLE = "CHANNEL_DOMAIN_WEBHOOK_RETRY_DELAYS"
TIMEOUT_VARIABLE = "CHANNEL_DOMAIN_WEBHOOK_TIMEOUT_S"
# The wait after the n-th failure. The 8th failure parks the record (MAX_ATTEMPTS), so by
# default only the first 7 are waited; the 8th is used when an operator raises nothing else —
# a shorter list repeats its last value, and a list is never read past MAX_ATTEMPTS − 1.
DEFAULT_RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 7200.0, 14400.0)
DEFAULT_TIMEOUT_S = 10.0
BATCH = 500
PER_TASK = 100  # events of one record a task sends before the next pass takes the rest
LINES_AT_ONCE = 16  # records of one subscription in flight at once
COMMITS_AT_ONCE = 4
RESOLVER_THREADS = 8  # host lookups at once (one per host): hosts whose resolver hangs hold one each
IDLE_CLIENT_S = 30.0  # a subscription's connections are closed after this long without a request
LOCK_RETRY_S = 1.0  # how often a worker asks for the subscriptions' locks it does not hold
USER_AGENT = "channel-domain-webhooks/1"
# The lock session's TCP keepalives, both ends: the server notices a vanished worker host (and
# frees its advisory locks) after about idle + interval × count = 11 s, the worker a vanished
# server likewise; tcp_user_timeout bounds unacknowledged writes the same way.
LOCK_SESSION_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                           "tcp_user_timeout": 11_000}
_SERVER_KEEPALIVES = ("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                      " SET tcp_keepalives_count = 3; SET tcp_user_timeout = 11000")


class BadSetting(ValueError):
    """A webhook setting in the environment that cannot be used."""


def retry_delays_from_environment() -> tuple[float, ...]:
    given = os.environ.get(RETRY_DELAYS_VARIABLE, "").strip()
    if not given:
        return DEFAULT_RETRY_DELAYS
    wrong = BadSetting(f"{RETRY_DELAYS_VARIABLE}: seconds, comma-separated, each finite and not negative"
                       f" (got {given!r})")
    try:
        delays = tuple(float(part) for part in given.split(","))
    except ValueError:
        raise wrong from None
    if not delays or any(not math.isfinite(delay) or delay < 0 for delay in delays):
        raise wrong
    return delays


def timeout_from_environment() -> float:
    given = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not given:
        return DEFAULT_TIMEOUT_S
    try:
        timeout = float(given)
    except ValueError:
        timeout = math.nan
    if not math.isfinite(timeout) or timeout <= 0:
        raise BadSetting(f"{TIMEOUT_VARIABLE}: seconds, a positive number (got {given!r})")
    return timeout


def check_settings() -> None:
    """Raises `BadSetting` for a webhook setting that cannot be used: `serve` and `project`
    call it before starting, so a typo stops them with the reason rather than leaving every
    delivery to fail in the background."""
    retry_delays_from_environment()
    timeout_from_environment()


def delay_after(failures: int, delays: Sequence[float]) -> float:
    """The wait after a record's first waiting event failed `failures` times (the list's last
    value repeats if it is shorter than the attempts)."""
    return delays[min(failures, len(delays)) - 1]


class UrlRefused(httpcore.ConnectError):
    """The connection was not made: the policy refuses the host (`reason` as in the 422)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"url not allowed: {reason}")
        self.reason = reason


class VettingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only where `policy` allows: a host the policy
    lists is connected by name; any other is resolved once (in a thread: the policy's resolver
    blocks), every address vetted, and the connection made to those addresses themselves.
    httpcore still uses the URL's host for `Host`, SNI and the certificate check."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()
        # Lookups block a thread for as long as the resolver takes, which a cancelled wait does
        # not shorten: they get threads of their own — never the commits' — and a host one
        # lookup at a time, so a host whose resolver hangs holds one thread, not the pool.
        self._resolving = ThreadPoolExecutor(max_workers=RESOLVER_THREADS, thread_name_prefix="webhook-dns")
        self._lookups: dict[tuple[str, int], asyncio.Future[Any]] = {}

    async def _addresses(self, host: str, port: int) -> Any:
        key = (host, port)
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.get_running_loop().run_in_executor(self._resolving, self.policy.addresses_to_connect,
                                                                 host, port)
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(lookup)  # a request cut by its deadline leaves the lookup to the others

    def close(self) -> None:
        self._resolving.shutdown(wait=False, cancel_futures=True)

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._addresses(host, port)
        except WebhookUrlNotAllowed as refused:
            raise UrlRefused(refused.details.get("reason", "host")) from None
        if addresses is None:
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("host")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class VettingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a `VettingBackend` (httpx has no public way to hand its pool
    a network backend, so the pool is made again with the same settings). The TLS context is
    the worker's, made once: loading the CA store costs tens of milliseconds a time."""

    def __init__(self, backend: VettingBackend, limits: httpx.Limits, tls: ssl.SSLContext) -> None:
        super().__init__(verify=tls, limits=limits, trust_env=False)
        self.backend = backend
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend)


@dataclass
class _Subscription:
    id: uuid.UUID
    url: str
    secret: str
    position: int
    wants: EventFilter


@dataclass
class _Line:
    """A record's events not yet delivered, first to last, as read at the start of a pass."""

    stream_id: uuid.UUID
    positions: list[int]
    attempts: int  # failures of the first
    due: bool  # its first event may be tried now (not parked, its delay over)
    parked: bool


class WebhookWorker:
    def __init__(self, app: Any, *, delays: Sequence[float] | None = None, timeout_s: float | None = None,
                 poll_s: float = 0.025, policy: UrlPolicy | None = None) -> None:
        self.app = app  # the ChannelDepartment: its recorder, datastore and mapper
        self.delays = tuple(delays) if delays is not None else retry_delays_from_environment()
        self.timeout_s = timeout_s if timeout_s is not None else timeout_from_environment()
        self.poll_s = poll_s
        self._backend = VettingBackend(policy or UrlPolicy.from_environment())
        self._tls = httpx.create_ssl_context(trust_env=False)
        # A connection pool per subscription (`_client`): requests cut at their deadline are
        # cancelled inside httpcore's pool, whose bookkeeping has known races on cancellation
        # (encode/httpcore#830, #1093); a pool of its own keeps one receiver's cut requests from
        # touching another subscription's connections.
        self._clients: dict[uuid.UUID, httpx.AsyncClient] = {}
        self._client_used: dict[uuid.UUID, float] = {}
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="webhook-sending", daemon=True)
        self._loop_thread.start()
        # The tasks' commits share the process's connection pool with the API's requests: a
        # burst of tasks ending together takes a few connections, never all of them.
        self._committing = asyncio.Semaphore(COMMITS_AT_ONCE)
        self._logs: dict[uuid.UUID, EventLog] = {}
        # The records' tasks, by (subscription, record): a pass starts no second task for a record
        # whose task is not done (done: its outcome is committed).
        self._sending: dict[tuple[uuid.UUID, uuid.UUID], Future[None]] = {}
        # Subscriptions this worker holds and found active at its last look: a task sends its
        # next event only while its subscription is among them, so a pause, a delete or a lost
        # lock stops it after the request in flight.
        self._active: frozenset[uuid.UUID] = frozenset()
        # Subscriptions whose last pass failed (the database, an event that cannot be made into
        # an item): when to try again, and the error, logged once while it lasts.
        self._troubled: dict[uuid.UUID, tuple[float, str]] = {}
        # When each held subscription next needs a pass without news (a waiting line's retry;
        # absent: none), and its latest change seen (`webhook_changes.seq`).
        self._next_look: dict[uuid.UUID, float] = {}
        self._changes_seen: dict[uuid.UUID, int | None] = {}
        # Records whose line may have become due without a retry falling due: events just set
        # aside, a task just ended. A pass looks at these and at the waiting lines due, and at
        # every line only after a change (and on first holding the subscription).
        self._candidates: dict[uuid.UUID, set[uuid.UUID]] = {}
        self._look_at_all: set[uuid.UUID] = set()

    @property
    def datastore(self) -> Any:
        return self.app.event_recorder.datastore

    def close(self) -> None:
        """Lets each task finish the request in flight and commit it (bounded by the timeout),
        then stops the sending loop."""
        self._active = frozenset()
        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._wind_down(), self.loop).result(timeout=self.timeout_s + 15)
        except Exception:  # noqa: BLE001 - what is not committed is sent again by the next worker
            logger.exception("webhook delivery: stopping the sending tasks failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(timeout=5)
        if not self._loop_thread.is_alive():
            self.loop.close()

    async def _wind_down(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.timeout_s + 10)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()
        self._backend.close()

    def _client(self, subscription_id: uuid.UUID) -> httpx.AsyncClient:
        """The subscription's HTTP client (made on the sending loop, on first use)."""
        self._client_used[subscription_id] = time.monotonic()
        client = self._clients.get(subscription_id)
        if client is None:
            # No cap on connections: a cap is a queue (the subscription is capped by `LINES_AT_ONCE`).
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=LINES_AT_ONCE)
            # Redirects are not followed: a 3xx is a failure, and a receiver cannot bounce the
            # request to a host the policy would refuse.
            client = self._clients[subscription_id] = httpx.AsyncClient(
                transport=VettingTransport(self._backend, limits, self._tls), timeout=self.timeout_s,
                follow_redirects=False, trust_env=False, headers={"user-agent": USER_AGENT})
        return client

    def _drop_client(self, subscription_id: uuid.UUID) -> None:
        """Closes a subscription's connections (once its requests in flight are done): it is no
        longer this worker's, or it has sent nothing for `IDLE_CLIENT_S`. A later request makes
        a new client."""
        client = self._clients.pop(subscription_id, None)
        self._client_used.pop(subscription_id, None)
        if client is None or self.loop.is_closed():
            return
        sending = [asyncio.wrap_future(task, loop=self.loop) for (of, _), task in list(self._sending.items())
                   if of == subscription_id and not task.done()]

        async def close() -> None:
            if sending:
                await asyncio.wait(sending, timeout=self.timeout_s + 5)
            await client.aclose()

        asyncio.run_coroutine_threadsafe(close(), self.loop)

    def _drop_idle_clients(self) -> None:
        """Lets go of the clients of subscriptions that have sent nothing for `IDLE_CLIENT_S`:
        otherwise a worker would keep one for every subscription it ever sent for (and httpcore
        closes a pool's idle connections only when that pool is used again)."""
        now = time.monotonic()
        busy = {of for (of, _), task in list(self._sending.items()) if not task.done()}
        for subscription_id, used in list(self._client_used.items()):
            if now - used > IDLE_CLIENT_S and subscription_id not in busy:
                self._drop_client(subscription_id)

    def idle(self) -> bool:
        """No record is being sent (for tests)."""
        return all(task.done() for task in list(self._sending.values()))

    # The loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver every subscription this worker can lock until `stop` is set."""
        trouble = ""
        while not stop.is_set():
            try:
                with self._lock_session() as lock_conn:
                    self._run_locked(lock_conn, stop)
            except Exception as error:  # noqa: BLE001 - the lock session is lost: a new one after a pause
                for subscription_id in {*self._logs, *self._changes_seen, *self._candidates, *self._next_look}:
                    self._forget(subscription_id)
                for subscription_id in list(self._clients):
                    self._drop_client(subscription_id)
                text = f"{type(error).__name__}: {error}"
                if text != trouble:
                    logger.warning("webhook delivery: the locks' session is lost (%s); taking them again", text)
                trouble = text
                stop.wait(0.5)
            finally:
                self._active = frozenset()

    def _lock_session(self) -> psycopg.Connection[Any]:
        """A connection of its own (not the pool's) for the advisory locks, with keepalives."""
        pool = self.datastore.pool
        conn = psycopg.connect(pool.conninfo, **{**pool.kwargs, **LOCK_SESSION_KEEPALIVES, "autocommit": True,
                                                  "row_factory": dict_row})
        try:
            conn.execute(_SERVER_KEEPALIVES)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run_locked(self, lock_conn: Any, stop: threading.Event) -> None:
        held: set[uuid.UUID] = set()
        next_lock_try = next_sweep = 0.0
        try:
            with lock_conn.cursor() as lock:
                while not stop.is_set():
                    # One statement a loop, however many subscriptions: also the check that the
                    # session, and every lock in `held`, is still there.
                    lock.execute(_LOOK)
                    rows = {row["id"]: row for row in lock.fetchall()}
                    for gone in held - rows.keys():
                        lock.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_name(gone),))
                        held.discard(gone)
                        self._forget(gone)
                        self._drop_client(gone)
                    unheld = sorted(rows.keys() - held)
                    if unheld and time.monotonic() >= next_lock_try:
                        lock.execute("SELECT id FROM unnest(%s::uuid[]) AS wanted (id)"
                                     " WHERE pg_try_advisory_lock(hashtextextended('webhook:' || id::text, 0))",
                                     (unheld,))
                        taken = {row["id"] for row in lock.fetchall()}
                        for subscription_id in taken:
                            # Another worker may have left lines half sent while this one did not
                            # hold it: what this worker remembers of it is stale, look at every line.
                            self._forget(subscription_id)
                        held.update(taken)
                        next_lock_try = time.monotonic() + LOCK_RETRY_S
                    self._active = frozenset(s for s in held if rows[s]["status"] == "active")
                    # A task's outcome is committed: its record may have more to send.
                    ended = [key for key, task in self._sending.items() if task.done()]
                    for subscription_id, stream in ended:
                        self._candidates.setdefault(subscription_id, set()).add(stream)
                        del self._sending[(subscription_id, stream)]
                    busy = False
                    for subscription_id in sorted(self._active):
                        if stop.is_set():
                            break
                        row = rows[subscription_id]
                        if self._candidates.get(subscription_id) or self._has_news(row):
                            busy = self._deliver_reporting(subscription_id, _subscription(row)) or busy
                    if time.monotonic() >= next_sweep:
                        self._drop_idle_clients()
                        next_sweep = time.monotonic() + IDLE_CLIENT_S / 6
                    if not busy:
                        # A worker holding nothing has nothing to look at before its next try.
                        wait = self.poll_s if held else max(self.poll_s, next_lock_try - time.monotonic())
                        stop.wait(wait)
        finally:
            self._active = frozenset()
            if not lock_conn.broken and not lock_conn.closed:
                with contextlib.suppress(psycopg.Error):
                    lock_conn.execute("SELECT pg_advisory_unlock_all()")

    def _has_news(self, row: dict[str, Any]) -> bool:
        """Whether a held, active subscription needs a pass now."""
        subscription_id = row["id"]
        changed = self._changes_seen.get(subscription_id, -1) != row["changes"]
        self._changes_seen[subscription_id] = row["changes"]
        if changed:
            self._look_at_all.add(subscription_id)  # a replay or resume: any line may be due
        if changed or (row["head"] or 0) > row["position"]:
            return True
        next_look = self._next_look.get(subscription_id)
        return next_look is not None and time.monotonic() >= next_look

    def _forget(self, subscription_id: uuid.UUID) -> None:
        self._logs.pop(subscription_id, None)
        self._candidates.pop(subscription_id, None)
        self._next_look.pop(subscription_id, None)
        self._changes_seen.pop(subscription_id, None)

    def _deliver_reporting(self, subscription_id: uuid.UUID, subscription: _Subscription | None = None) -> bool:
        troubled = self._troubled.get(subscription_id)
        if troubled is not None and time.monotonic() < troubled[0]:
            return False
        try:
            busy = self.deliver(subscription_id, subscription)
        except Exception as error:  # noqa: BLE001 - this subscription alone; tried again in a second
            self._forget(subscription_id)
            self._next_look[subscription_id] = time.monotonic() + 1.0
            text = f"{type(error).__name__}: {error}"[:2000]
            if troubled is None or troubled[1] != text:
                logger.error("webhook %s: delivery pass failed; trying again every second", subscription_id,
                             exc_info=error)
            self._troubled[subscription_id] = (time.monotonic() + 1.0, text)
            return False
        self._troubled.pop(subscription_id, None)
        return busy

    # One pass of one subscription ----------------------------------------------------------

    def deliver(self, subscription_id: uuid.UUID, subscription: _Subscription | None = None) -> bool:
        """One pass: the new events after the checkpoint into their records' lines, then a task
        for every line whose turn it is and that no task is sending. Never waits for a task.
        Returns whether there was anything to do. The caller holds the subscription's lock
        (and may hand over the subscription as it read it this loop)."""
        subscription = subscription or self._load(subscription_id)
        if subscription is None:
            return False
        log = self._logs.get(subscription_id)
        if log is None or log.position != subscription.position:
            log = self._logs[subscription_id] = EventLog(self.app.event_recorder, after=subscription.position)
        batch = log.read(BATCH)
        wanted = [n for n in batch if subscription.wants(n)]
        if batch:
            self._set_aside(subscription, log.position, wanted)
        started = False
        sending = [stream for (of, stream), task in self._sending.items() if of == subscription_id and not task.done()]
        candidates = self._candidates.pop(subscription_id, set()) | {n.originator_id for n in wanted}
        # Every line on a first pass (a worker new to the subscription knows no candidates).
        every = subscription_id in self._look_at_all or subscription_id not in self._changes_seen
        room = LINES_AT_ONCE - len(sending)
        if room <= 0:  # looked at when a task ends
            self._candidates[subscription_id] = candidates
            if every:
                self._look_at_all.add(subscription_id)
            return bool(batch)
        self._look_at_all.discard(subscription_id)
        lines, more_due, retry_in = self._due_lines(subscription_id, sending, room, None if every else candidates)
        if more_due:  # the rest are looked at again at once (the waiting ones are found anyway)
            self._candidates[subscription_id] = candidates - {line.stream_id for line in lines}
            if every:
                self._look_at_all.add(subscription_id)
        self._next_look[subscription_id] = _next_look(more_due, retry_in)
        if lines:
            known = {n.id: n for n in wanted}
            positions = [p for line in lines for p in line.positions]
            known.update(self._notifications([p for p in positions if p not in known]))
            bodies = {item["position"]: _body(item) for item in feed_items(self.app, [known[p] for p in positions])}
            for line in lines:
                events = [(p, str(_event_id(known[p])), bodies[p]) for p in line.positions]
                key = (subscription_id, line.stream_id)
                self._sending[key] = asyncio.run_coroutine_threadsafe(
                    self._send_line(subscription, line, events), self.loop)
                started = True
        return bool(batch) or started

    async def _send_line(self, subscription: _Subscription, line: _Line, events: list[tuple[int, str, str]]) -> None:
        """A task: the line's events in order until one fails, then what came of it, committed."""
        try:
            signer = Webhook(subscription.secret)
            delivered: list[int] = []
            failed_at, error = None, None
            for position, message_id, body in events:
                if subscription.id not in self._active:
                    break  # paused, deleted or no longer ours: the rest stays in the line
                error = await self._post(self._client(subscription.id), subscription.url, signer, message_id, body)
                if error is not None:
                    failed_at = position
                    break
                delivered.append(position)
            async with self._committing:
                await asyncio.to_thread(self._commit_line, subscription, line, delivered, failed_at, error)
        except Exception:  # noqa: BLE001 - the line is as it was: the next pass sends it again
            logger.exception("webhook %s: sending record %s failed", subscription.id, line.stream_id)

    async def _post(self, client: httpx.AsyncClient, url: str, signer: Webhook, message_id: str,
                    body: str) -> str | None:
        """None when the receiver answered 2xx, else what went wrong — never an address."""
        now = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signer.sign(message_id, now, body)}
        try:
            # The whole request, connecting to answering, within the timeout: httpx's own timeout
            # is per read, which a receiver that drips its answer never trips. Cancelling closes
            # the connection.
            async with asyncio.timeout(self.timeout_s):
                # Streamed and closed unread: a receiver's answer body is of no use, and could be huge.
                async with client.stream("POST", url, content=body.encode(), headers=headers) as response:
                    if 200 <= response.status_code < 300:
                        return None
                    return f"HTTP {response.status_code}"
        except (TimeoutError, httpx.TimeoutException):
            return "timeout"
        except httpx.HTTPError as error:
            if isinstance(error.__cause__, UrlRefused):
                return str(error.__cause__)
            # The class only: an OS error's text can name the address connected to.
            return f"{type(error).__name__}"

    # Reading and writing the subscription's state -------------------------------------------

    def _load(self, subscription_id: uuid.UUID) -> _Subscription | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT id, url, secret, position, types, stream_types FROM webhook_subscriptions"
                         " WHERE id = %s AND status = 'active'", (subscription_id,))
            row = curs.fetchone()
        if row is None:
            return None
        return _subscription(row)

    def _due_lines(self, subscription_id: uuid.UUID, sending: Sequence[uuid.UUID], room: int,
                   candidates: set[uuid.UUID] | None) -> tuple[list[_Line], bool, float | None]:
        """Up to `room` lines whose turn it is and that no task is sending, each with its first
        `PER_TASK` events only; whether more are due; and the seconds until the next waiting
        line's retry. Bounded however long the backlog: only the `candidates`' lines and the
        waiting lines due are looked at (`None`: every line, skipping from record to record in
        the index), and no more of them are read than the pass can start."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            query = _EVERY_DUE_LINE if candidates is None else _DUE_LINES_OF
            curs.execute(query, {"subscription": subscription_id, "sending": list(sending),
                                 "candidates": list(candidates or ()), "per_task": PER_TASK, "limit": room + 1})
            lines = [_Line(row["stream_id"], row["positions"], row["attempts"], True, False)
                     for row in curs.fetchall()]
            # Not only the retries still to come: one that fell due since the statement above is
            # due now (each statement reads its own now()).
            curs.execute("SELECT extract(epoch FROM min(next_attempt_at) - now())::float AS retry_in"
                         " FROM webhook_lines WHERE subscription_id = %s AND attempts > 0 AND parked_at IS NULL"
                         " AND stream_id <> ALL(%s::uuid[])",
                         (subscription_id, [*sending, *(line.stream_id for line in lines[:room])]))
            retry_in = curs.fetchone()["retry_in"]
        return lines[:room], len(lines) > room, retry_in

    def _lines(self, subscription_id: uuid.UUID) -> list[_Line]:
        """Every line, whole (for tests: a pass reads `_due_lines`)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT stream_id, array_agg(position ORDER BY position) AS positions,"
                " (array_agg(attempts ORDER BY position))[1] AS attempts,"
                " (array_agg(next_attempt_at <= now() ORDER BY position))[1] AS due,"
                " (array_agg(parked_at IS NOT NULL ORDER BY position))[1] AS parked"
                " FROM webhook_lines WHERE subscription_id = %s GROUP BY stream_id", (subscription_id,))
            return [_Line(row["stream_id"], row["positions"], row["attempts"], row["due"] and not row["parked"],
                          row["parked"]) for row in curs.fetchall()]

    def _notifications(self, positions: Sequence[int]) -> dict[int, Notification]:
        if not positions:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(f"SELECT position, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}"  # noqa: S608
                         " WHERE position = ANY(%s)", (list(positions),))
            return {row["position"]: Notification(id=row["position"], originator_id=row["originator_id"],
                                                   originator_version=row["originator_version"], topic=row["topic"],
                                                   state=bytes(row["state"]))
                    for row in curs.fetchall()}

    def _set_aside(self, subscription: _Subscription, read_to: int, wanted: list[Notification]) -> None:
        """The events read into their records' lines and the checkpoint moved past them, in one
        transaction, and only if the checkpoint is still where the pass read it (else another
        worker owns the subscription now: roll back)."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("UPDATE webhook_subscriptions SET position = %s"
                         " WHERE id = %s AND position = %s AND status <> 'deleted'",
                         (read_to, subscription.id, subscription.position))
            if curs.rowcount != 1:
                self._logs.pop(subscription.id, None)
                raise CheckpointMoved(f"webhook {subscription.id} is no longer at position {subscription.position}")
            if wanted:
                # Times are the database's (`now()`), the clock every worker and API process shares.
                curs.executemany("INSERT INTO webhook_lines (subscription_id, position, stream_id) VALUES (%s, %s, %s)"
                                 " ON CONFLICT DO NOTHING",
                                 [(subscription.id, n.id, n.originator_id) for n in wanted])

    def _commit_line(self, subscription: _Subscription, line: _Line, delivered: list[int], failed_at: int | None,
                     error: str | None) -> None:
        """A task's outcome, in one transaction. What was delivered leaves the line (right
        whoever sent it). A failure is counted only on the row as the pass read it — attempts
        unchanged, not parked — so a replay, or another worker's count, that came meanwhile
        wins over it."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            if delivered:
                curs.execute("DELETE FROM webhook_lines WHERE subscription_id = %s AND position = ANY(%s)",
                             (subscription.id, delivered))
                curs.execute("UPDATE webhook_subscriptions SET last_delivered_at = now() WHERE id = %s",
                             (subscription.id,))
            if failed_at is None:
                return
            before = line.attempts if failed_at == line.positions[0] else 0
            failures = before + 1
            parked = failures >= MAX_ATTEMPTS
            curs.execute(
                "UPDATE webhook_lines SET attempts = %s, next_attempt_at = now() + make_interval(secs => %s),"
                " last_error = %s, last_error_at = now(), parked_at = CASE WHEN %s THEN now() END"
                " WHERE subscription_id = %s AND position = %s AND attempts = %s AND parked_at IS NULL",
                (failures, delay_after(failures, self.delays), error, parked, subscription.id, failed_at, before))
            if parked and curs.rowcount == 1:
                logger.warning("webhook %s: record %s parked after %d failed attempts at position %d (%s)",
                               subscription.id, line.stream_id, failures, failed_at, error)


# A worker's look at every subscription not deleted: its state, its latest change (a replay, a
# resume, a pause) and the log's head, in one statement.
_LOOK = ("SELECT s.id, s.status, s.url, s.secret, s.position, s.types, s.stream_types,"
         " (SELECT max(c.seq) FROM webhook_changes c WHERE c.subscription_id = s.id) AS changes,"
         f" (SELECT max(position) FROM {EVENTS_TABLE}) AS head"  # noqa: S608 - a constant
         " FROM webhook_subscriptions s WHERE s.status <> 'deleted'")


def _subscription(row: dict[str, Any]) -> _Subscription:
    return _Subscription(row["id"], row["url"], row["secret"], row["position"],
                         EventFilter.of(row["types"], row["stream_types"]))


def _next_look(more_due: bool, retry_in: float | None) -> float | None:
    """When a subscription needs a pass though nothing new comes: now if more lines are due
    than were started, else at the earliest waiting retry (its tasks' ends the loop sees)."""
    now = time.monotonic()
    if more_due:
        return now
    return None if retry_in is None else now + max(0.0, retry_in)


# Each due line's first events.
_POSITIONS = """ARRAY(SELECT position FROM webhook_lines AS line
                     WHERE line.subscription_id = %(subscription)s AND line.stream_id = heads.stream_id
                     ORDER BY position LIMIT %(per_task)s) AS positions"""

# Every due line of a subscription: the first rows found by a skip scan over
# `webhook_lines_by_record` (one index probe per record, read lazily: the LIMIT ends the
# recursion).
_EVERY_DUE_LINE = """
WITH RECURSIVE heads AS (
    (SELECT stream_id, position, attempts, next_attempt_at, parked_at FROM webhook_lines
      WHERE subscription_id = %(subscription)s ORDER BY stream_id, position LIMIT 1)
    UNION ALL
    SELECT next.* FROM heads, LATERAL (
        SELECT stream_id, position, attempts, next_attempt_at, parked_at FROM webhook_lines
         WHERE subscription_id = %(subscription)s AND stream_id > heads.stream_id
         ORDER BY stream_id, position LIMIT 1) next
)
SELECT stream_id, attempts, """ + _POSITIONS + """
  FROM heads
 WHERE parked_at IS NULL AND next_attempt_at <= now() AND stream_id <> ALL(%(sending)s::uuid[])
 LIMIT %(limit)s
"""

# The due lines among the candidates' (one index probe each), then the waiting lines whose
# retry is due (`webhook_lines_waiting`: only a line's first row has failures).
_DUE_LINES_OF = """
WITH candidate_heads AS (
    SELECT first.* FROM unnest(%(candidates)s::uuid[]) AS candidate (stream_id), LATERAL (
        SELECT stream_id, position, attempts, next_attempt_at, parked_at FROM webhook_lines
         WHERE subscription_id = %(subscription)s AND stream_id = candidate.stream_id
         ORDER BY position LIMIT 1) first
), heads AS (
    SELECT stream_id, attempts FROM candidate_heads WHERE parked_at IS NULL AND next_attempt_at <= now()
    UNION ALL
    SELECT stream_id, attempts FROM webhook_lines
     WHERE subscription_id = %(subscription)s AND attempts > 0 AND parked_at IS NULL AND next_attempt_at <= now()
       AND stream_id <> ALL(%(candidates)s::uuid[])
)
SELECT stream_id, attempts, """ + _POSITIONS + """
  FROM heads
 WHERE stream_id <> ALL(%(sending)s::uuid[])
 LIMIT %(limit)s
"""


class CheckpointMoved(RuntimeError):
    """Another worker moved the subscription's checkpoint: this pass is rolled back."""


def _lock_name(subscription_id: uuid.UUID) -> str:
    return f"webhook:{subscription_id}"


def _event_id(notification: Notification) -> uuid.UUID:
    return event_id(notification.originator_id, notification.originator_version)


def _body(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def run_in_background(app: Any, stop: threading.Event) -> threading.Thread:
    """A `WebhookWorker` on `app` in a daemon thread until `stop` is set (`channel-domain project`)."""

    def work() -> None:
        while not stop.is_set():
            try:
                worker = WebhookWorker(app)
                try:
                    worker.run(stop)
                finally:
                    worker.close()
            except Exception:  # noqa: BLE001 - a bad setting or the database away: logged, tried again
                logger.exception("webhook delivery stopped; restarting")
                stop.wait(1)

    thread = threading.Thread(target=work, name="webhooks", daemon=True)
    thread.start()
    return thread
