"""Delivering webhooks: each subscription's events, as feed items, `POST`ed to its URL with
Standard Webhooks signatures — at least once, in order per record, never skipping one.

At least once, never skipped. A subscription's events are read with `EventLog` (which never
passes a position a running transaction could still fill) from its checkpoint, and the
checkpoint moves in the transaction that records what the receiver accepted — after its 2xx.
A worker killed between the two sends those events again on restart, with the same
`webhook-id` (the event id), so a receiver deduplicates on it.

In order per record, the others going on. The events of one record (stream) are sent one
after another; when one fails, it and every later event of that record are set aside in the
record's line (`webhook_lines`) and the checkpoint moves on: other records are not held up.
Only a line's first event is tried again, after the delay for its number of failures
(`CHANNEL_DOMAIN_WEBHOOK_RETRY_DELAYS`); once it is delivered, the line drains in order.
After `MAX_ATTEMPTS` failures the line is parked: tried no more, and later events of that
record join it, until `POST /v1/webhooks/{id}/parked/replay`.

One worker per subscription. Every `serve` process (or `project` worker) runs a
`WebhookWorker`; each takes a session advisory lock per subscription, on a session it asks
every pass, as the projection runner does: a worker that dies frees its locks, and another
takes them over. The checkpoint moves only from where the pass read it, so a worker that
lost its session without noticing cannot move it under the new owner.

Fast. Idle workers look for new events every `poll_s` (25 ms); the records of a batch are
sent concurrently (a thread pool over one keep-alive `httpx.Client`), each record's events in
order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from eventsourcing.persistence import Notification
from standardwebhooks.webhooks import Webhook

from channel_domain.aggregate import event_id
from channel_domain.store.log import EventLog
from channel_domain.store.recorder import EVENTS_TABLE
from integration.items import EventFilter, feed_items
from integration.webhook_subscriptions import MAX_ATTEMPTS, CachedUrlPolicy, UrlPolicy

logger = logging.getLogger(__name__)

RETRY_DELAYS_VARIABLE = "CHANNEL_DOMAIN_WEBHOOK_RETRY_DELAYS"
TIMEOUT_VARIABLE = "CHANNEL_DOMAIN_WEBHOOK_TIMEOUT_S"
DEFAULT_RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 7200.0, 14400.0)
DEFAULT_TIMEOUT_S = 10.0
BATCH = 500
USER_AGENT = "channel-domain-webhooks/1"


def retry_delays_from_environment() -> tuple[float, ...]:
    given = os.environ.get(RETRY_DELAYS_VARIABLE, "").strip()
    if not given:
        return DEFAULT_RETRY_DELAYS
    delays = tuple(float(part) for part in given.split(",") if part.strip())
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError(f"{RETRY_DELAYS_VARIABLE}: seconds, comma-separated, none negative (got {given!r})")
    return delays


def delay_after(failures: int, delays: Sequence[float]) -> float:
    """The wait after a record's first waiting event failed `failures` times (the list's last
    value repeats if it is shorter than the attempts)."""
    return delays[min(failures, len(delays)) - 1]


@dataclass
class _Subscription:
    id: uuid.UUID
    url: str
    secret: str
    position: int
    wants: EventFilter


@dataclass
class _Line:
    """A record's waiting events, first to last, as read at the start of a pass."""

    stream_id: uuid.UUID
    positions: list[int]
    attempts: int
    due: bool  # its first event may be tried now (not parked, its delay over)
    parked: bool


@dataclass
class _Sent:
    """What one record's sending in a pass came to."""

    delivered: list[int] = field(default_factory=list)
    failed_at: int | None = None  # the position that failed; it and the rest wait in the line
    error: str | None = None


class WebhookWorker:
    def __init__(self, app: Any, *, delays: Sequence[float] | None = None, timeout_s: float | None = None,
                 poll_s: float = 0.025, policy: UrlPolicy | None = None, concurrency: int = 16) -> None:
        self.app = app  # the ChannelDepartment: its recorder, datastore and mapper
        self.delays = tuple(delays) if delays is not None else retry_delays_from_environment()
        timeout = timeout_s if timeout_s is not None else float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S))
        self.poll_s = poll_s
        self.policy = CachedUrlPolicy(policy or UrlPolicy.from_environment())
        # Redirects are not followed: a 3xx is a failure, and a receiver cannot bounce the
        # request to a host the policy would refuse.
        self.http = httpx.Client(timeout=timeout, follow_redirects=False, headers={"user-agent": USER_AGENT},
                                 limits=httpx.Limits(max_connections=concurrency * 2,
                                                     max_keepalive_connections=concurrency))
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook")
        self._logs: dict[uuid.UUID, EventLog] = {}
        # Subscriptions whose last pass failed (the database, an event that cannot be made into
        # an item): when to try again, and the error, logged once while it lasts.
        self._troubled: dict[uuid.UUID, tuple[float, str]] = {}

    @property
    def datastore(self) -> Any:
        return self.app.event_recorder.datastore

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()

    # The loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver every subscription this worker can lock until `stop` is set."""
        trouble = ""
        while not stop.is_set():
            try:
                with self.datastore.get_connection() as lock_conn:
                    self._run_locked(lock_conn, stop)
            except Exception as error:  # noqa: BLE001 - the lock session is lost: a new one after a pause
                self._logs.clear()
                text = f"{type(error).__name__}: {error}"
                if text != trouble:
                    logger.warning("webhook delivery: the locks' session is lost (%s); taking them again", text)
                trouble = text
                stop.wait(0.5)

    def _run_locked(self, lock_conn: Any, stop: threading.Event) -> None:
        held: set[uuid.UUID] = set()
        try:
            with lock_conn.cursor() as lock:
                while not stop.is_set():
                    # Also the check that the session, and every lock in `held`, is still there.
                    lock.execute("SELECT id, status FROM webhook_subscriptions WHERE status <> 'deleted'")
                    live = {row["id"]: row["status"] for row in lock.fetchall()}
                    for gone in held - live.keys():
                        lock.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_lock_name(gone),))
                        held.discard(gone)
                        self._logs.pop(gone, None)
                    for subscription_id in live.keys() - held:
                        lock.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS got",
                                     (_lock_name(subscription_id),))
                        if lock.fetchone()["got"]:
                            held.add(subscription_id)
                    busy = False
                    for subscription_id in sorted(held):
                        if live[subscription_id] != "active" or stop.is_set():
                            continue
                        busy = self._deliver_reporting(subscription_id) or busy
                    if not busy:
                        stop.wait(self.poll_s)
        finally:
            if not lock_conn.broken and not lock_conn.closed:
                with contextlib.suppress(psycopg.Error):
                    lock_conn.execute("SELECT pg_advisory_unlock_all()")

    def _deliver_reporting(self, subscription_id: uuid.UUID) -> bool:
        troubled = self._troubled.get(subscription_id)
        if troubled is not None and time.monotonic() < troubled[0]:
            return False
        try:
            busy = self.deliver(subscription_id)
        except Exception as error:  # noqa: BLE001 - this subscription alone; tried again in a second
            self._logs.pop(subscription_id, None)
            text = f"{type(error).__name__}: {error}"[:2000]
            if troubled is None or troubled[1] != text:
                logger.error("webhook %s: delivery pass failed; trying again every second", subscription_id,
                             exc_info=error)
            self._troubled[subscription_id] = (time.monotonic() + 1.0, text)
            return False
        self._troubled.pop(subscription_id, None)
        return busy

    # One pass of one subscription ----------------------------------------------------------

    def deliver(self, subscription_id: uuid.UUID) -> bool:
        """One pass: the new events after the checkpoint, and the lines whose turn it is.
        Returns whether there was anything to do. The caller holds the subscription's lock."""
        subscription = self._load(subscription_id)
        if subscription is None:
            return False
        log = self._logs.get(subscription_id)
        if log is None or log.position != subscription.position:
            log = self._logs[subscription_id] = EventLog(self.app.event_recorder, after=subscription.position)
        lines = self._lines(subscription_id)
        batch = log.read(BATCH)
        wanted = [n for n in batch if subscription.wants(n)]
        due = [line for line in lines.values() if line.due]
        if not batch and not due:
            return False

        # Per record: what to send now (a due line, then its new events), or what joins a line.
        to_send: dict[uuid.UUID, list[int]] = {line.stream_id: list(line.positions) for line in due}
        joining: list[tuple[int, uuid.UUID]] = []
        for notification in wanted:
            stream = notification.originator_id
            if stream in lines and not lines[stream].due:
                joining.append((notification.id, stream))
            else:
                to_send.setdefault(stream, []).append(notification.id)
        notifications = {n.id: n for n in wanted}
        missing = [p for positions in to_send.values() for p in positions if p not in notifications]
        notifications.update(self._notifications(missing))
        sendable = [notifications[p] for positions in to_send.values() for p in positions]
        bodies = {item["position"]: _body(item) for item in feed_items(self.app, sendable)} if sendable else {}

        refusal = self.policy.why_refused(subscription.url)
        signer = Webhook(subscription.secret)
        futures = {stream: self.pool.submit(self._send_in_order, subscription, signer, refusal,
                                            [(p, notifications[p], bodies[p]) for p in positions])
                   for stream, positions in to_send.items()}
        sent = {stream: future.result() for stream, future in futures.items()}
        self._commit(subscription, log.position if batch else subscription.position, lines, to_send, sent, joining)
        return True

    def _send_in_order(self, subscription: _Subscription, signer: Webhook, refusal: str | None,
                       events: list[tuple[int, Notification, str]]) -> _Sent:
        sent = _Sent()
        for position, notification, body in events:
            error = refusal or self._post(subscription.url, signer, str(_event_id(notification)), body)
            if error is not None:
                sent.failed_at, sent.error = position, error
                break
            sent.delivered.append(position)
        return sent

    def _post(self, url: str, signer: Webhook, message_id: str, body: str) -> str | None:
        """None when the receiver answered 2xx, else what went wrong."""
        now = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signer.sign(message_id, now, body)}
        try:
            # Streamed and closed unread: a receiver's answer body is of no use, and could be huge.
            with self.http.stream("POST", url, content=body.encode(), headers=headers) as response:
                if 200 <= response.status_code < 300:
                    return None
                return f"HTTP {response.status_code}"
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:500]

    # Reading and writing the subscription's state -------------------------------------------

    def _load(self, subscription_id: uuid.UUID) -> _Subscription | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT id, url, secret, position, types, stream_types FROM webhook_subscriptions"
                         " WHERE id = %s AND status = 'active'", (subscription_id,))
            row = curs.fetchone()
        if row is None:
            return None
        return _Subscription(row["id"], row["url"], row["secret"], row["position"],
                             EventFilter.of(row["types"], row["stream_types"]))

    def _lines(self, subscription_id: uuid.UUID) -> dict[uuid.UUID, _Line]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT stream_id, array_agg(position ORDER BY position) AS positions,"
                " (array_agg(attempts ORDER BY position))[1] AS attempts,"
                " (array_agg(next_attempt_at <= now() ORDER BY position))[1] AS due,"
                " (array_agg(parked_at IS NOT NULL ORDER BY position))[1] AS parked"
                " FROM webhook_lines WHERE subscription_id = %s GROUP BY stream_id", (subscription_id,))
            return {row["stream_id"]: _Line(row["stream_id"], row["positions"], row["attempts"],
                                            row["due"] and not row["parked"], row["parked"])
                    for row in curs.fetchall()}

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

    def _commit(self, subscription: _Subscription, read_to: int, lines: dict[uuid.UUID, _Line],
                to_send: dict[uuid.UUID, list[int]], sent: dict[uuid.UUID, _Sent],
                joining: list[tuple[int, uuid.UUID]]) -> None:
        """What this pass did, in one transaction, and only if the checkpoint is still where
        the pass read it (else another worker owns the subscription now: roll back, and the
        events sent are sent again by it — at least once)."""
        delivered_from_lines: list[int] = []
        # Rows of webhook_lines: (subscription, position, record, failures, wait in seconds, error, parked).
        # Times are the database's (`now()`), the clock every worker and API process shares.
        new_rows: list[tuple[Any, ...]] = [(subscription.id, p, stream, 0, 0.0, None, False) for p, stream in joining]
        failed_heads: list[tuple[Any, ...]] = []
        last_error = None
        for stream, positions in to_send.items():
            outcome = sent[stream]
            line = lines.get(stream)
            in_line = set(line.positions) if line is not None else set()
            delivered_from_lines += [p for p in outcome.delivered if p in in_line]
            if outcome.failed_at is None:
                continue
            last_error = outcome.error
            failures = (line.attempts if line is not None and outcome.failed_at == line.positions[0] else 0) + 1
            parked = failures >= MAX_ATTEMPTS
            for p in positions[positions.index(outcome.failed_at):]:
                if p == outcome.failed_at:
                    failed_heads.append((subscription.id, p, stream, failures, delay_after(failures, self.delays),
                                         outcome.error, parked))
                elif p not in in_line:
                    new_rows.append((subscription.id, p, stream, 0, 0.0, None, False))
            if parked:
                logger.warning("webhook %s: record %s parked after %d failed attempts at position %d (%s)",
                               subscription.id, stream, failures, outcome.failed_at, outcome.error)
        delivered_any = any(outcome.delivered for outcome in sent.values())
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(
                "UPDATE webhook_subscriptions SET position = %s,"
                " last_error = coalesce(%s, last_error), last_error_at = CASE WHEN %s::text IS NULL"
                " THEN last_error_at ELSE now() END,"
                " last_delivered_at = CASE WHEN %s THEN now() ELSE last_delivered_at END"
                " WHERE id = %s AND position = %s AND status <> 'deleted'",
                (read_to, last_error, last_error, delivered_any, subscription.id, subscription.position))
            if curs.rowcount != 1:
                self._logs.pop(subscription.id, None)
                raise CheckpointMoved(f"webhook {subscription.id} is no longer at position {subscription.position}")
            if delivered_from_lines:
                curs.execute("DELETE FROM webhook_lines WHERE subscription_id = %s AND position = ANY(%s)",
                             (subscription.id, delivered_from_lines))
            rows = failed_heads + new_rows
            if rows:
                curs.executemany(
                    "INSERT INTO webhook_lines (subscription_id, position, stream_id, attempts, next_attempt_at,"
                    " last_error, parked_at) VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s), %s,"
                    " CASE WHEN %s THEN now() END)"
                    " ON CONFLICT (subscription_id, position) DO UPDATE SET attempts = EXCLUDED.attempts,"
                    " next_attempt_at = EXCLUDED.next_attempt_at, last_error = EXCLUDED.last_error,"
                    " parked_at = EXCLUDED.parked_at", rows)


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
