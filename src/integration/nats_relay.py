"""The NATS JetStream relay (`channel-domain relay nats`): every event of the log, in position
order, to a JetStream stream, as the feed item (personal data as markers).

Subjects are `<prefix>.<stream type>.<event name>` — the feed item's `type` already reads
`<stream type>.<event name>` (`Partner.Registered`), so a partner's registration goes to
`channel-domain.Partner.Registered`. Each message carries `Nats-Msg-Id` = the event id (a
message sent twice within the stream's duplicate window is stored once) and
`Channel-Domain-Position` = its position in the log.

What makes it exact, in order and safe to kill:

- It reads with `EventLog`, which never passes a position that a running transaction could
  still fill, and publishes in that order on one connection.
- Its checkpoint (`nats_relay_checkpoints`, one row per stream and prefix) moves only after
  JetStream acknowledged every message up to it. Publishes are asynchronous, a batch at a
  time, their acknowledgements awaited together: throughput without giving up the order.
- Each message says which message must be the stream's last before it is stored
  (`Nats-Expected-Last-Msg-Id` = the previous event's id; the first of a session, the id of
  the stream's last message as just read — or, when that has none, `Nats-Expected-Last-Sequence`,
  which JetStream checks before duplicates, so it is the fallback only). A message lost on
  the way (a connection cut mid-batch) therefore makes every later one be refused rather than
  stored out of order; a relay that lost its lock but has not noticed yet cannot interleave
  with its successor. JetStream checks duplicates first, so a message repeated within the
  window is still acknowledged as a duplicate.
- After any failure, and whenever it starts, a relay reads the stream's last message: a
  position there beyond the checkpoint (the relay died between JetStream's acknowledgement and
  its checkpoint's commit) moves the checkpoint up to it, so nothing is sent twice even after
  the duplicate window has passed.
- One relay at a time per stream and prefix: a session advisory lock, checked on every pass. A
  standby asks for it every `lock_poll_s` (0.5 s) with its NATS connection already open, so a
  relay that dies (PostgreSQL releases its lock with its session) is taken over within a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
import psycopg
from eventsourcing.persistence import Notification
from nats.js.api import StorageType, StreamConfig

from channel_domain.store.log import EventLog
from channel_domain.store.recorder import EVENTS_TABLE
from integration.items import feed_items

logger = logging.getLogger(__name__)

DEFAULT_STREAM = "CHANNEL_DOMAIN"
DEFAULT_SUBJECT_PREFIX = "channel-domain"
URL_VARIABLE = "CHANNEL_DOMAIN_NATS_URL"
DUPLICATE_WINDOW_S = 120.0

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
POSITION_HEADER = "Channel-Domain-Position"

# Stream names must not hold `.`, `*`, `>`, whitespace or path separators; this is stricter,
# and keeps the lock's name (`nats-relay:STREAM:PREFIX`) unambiguous.
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SUBJECT_TOKEN = re.compile(r"^[^\s.*>]+$")


class RelayConfigError(ValueError):
    """A stream name or subject prefix NATS would refuse, or a stream that cannot take them."""


class NatsUnavailable(Exception):
    """NATS cannot be reached at start, or it runs without JetStream."""


class PublishFailed(Exception):
    """JetStream did not acknowledge a batch: the relay syncs with the stream and goes on."""


def check_names(stream: str, subject_prefix: str) -> None:
    if not _STREAM_NAME.match(stream):
        raise RelayConfigError(f"stream name {stream!r}: letters, digits, '_' and '-' only")
    if not subject_prefix or not all(_SUBJECT_TOKEN.match(token) for token in subject_prefix.split(".")):
        raise RelayConfigError(f"subject prefix {subject_prefix!r}: dot-separated tokens, none empty, without"
                               " spaces, '*' or '>'")


def shown_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Outgoing:
    """One event as it leaves: subject, id and the feed item's JSON."""

    position: int
    event_id: str
    subject: str
    body: bytes


def outgoing(app: Any, subject_prefix: str, notifications: Sequence[Notification]) -> list[Outgoing]:
    return [Outgoing(item["position"], item["event_id"], f"{subject_prefix}.{item['type']}",
                     json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
            for item in feed_items(app, notifications)]


# The checkpoint and the status ------------------------------------------------------------


def lock_name(stream: str, subject_prefix: str) -> str:
    return f"nats-relay:{stream}:{subject_prefix}"


def read_checkpoint(datastore: Any, stream: str, subject_prefix: str) -> int:
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT position FROM nats_relay_checkpoints WHERE stream = %s AND subject_prefix = %s",
                     (stream, subject_prefix))
        row = curs.fetchone()
    return row["position"] if row else 0


def save_checkpoint(datastore: Any, stream: str, subject_prefix: str, position: int) -> None:
    """Everything up to `position` is in the stream. Never moves back: a relay that lost its
    lock and finishes a batch late cannot undo its successor's progress."""
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute(
            "INSERT INTO nats_relay_checkpoints (stream, subject_prefix, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (stream, subject_prefix) DO UPDATE"
            " SET position = greatest(nats_relay_checkpoints.position, EXCLUDED.position), updated_at = now()",
            (stream, subject_prefix, position), prepare=True)


def _mark_holder(datastore: Any, stream: str, subject_prefix: str) -> None:
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute(
            "INSERT INTO nats_relay_checkpoints (stream, subject_prefix, holder, holder_since)"
            " VALUES (%s, %s, %s, now()) ON CONFLICT (stream, subject_prefix) DO UPDATE"
            " SET holder = EXCLUDED.holder, holder_since = EXCLUDED.holder_since",
            (stream, subject_prefix, f"{socket.gethostname()} pid {os.getpid()}"))


@dataclass(frozen=True)
class RelayProgress:
    stream: str
    subject_prefix: str
    position: int
    head: int
    updated_at: datetime
    holder: str | None
    holder_since: datetime | None
    active: bool  # a relay holds the lock now

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


def relay_progress(conn: psycopg.Connection) -> list[RelayProgress]:
    """Every relay this database has known: its position, the log's head, and whether a relay
    holds its lock now (a bigint advisory lock shows in pg_locks as classid = its high 32 bits,
    objid = its low 32 bits, objsubid = 1)."""
    rows = conn.execute(
        "SELECT c.stream, c.subject_prefix, c.position, c.updated_at, c.holder, c.holder_since,"
        f" (SELECT coalesce(max(position), 0) FROM {EVENTS_TABLE}) AS head,"  # noqa: S608 - a constant
        " EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "   AND ((l.classid::bigint << 32) | l.objid::bigint)"
        "       = hashtextextended('nats-relay:' || c.stream || ':' || c.subject_prefix, 0)) AS active"
        " FROM nats_relay_checkpoints c ORDER BY c.stream, c.subject_prefix").fetchall()
    return [RelayProgress(row[0], row[1], row[2], row[6], row[3], row[4], row[5], row[7]) for row in rows]


# The relay ---------------------------------------------------------------------------------


class NatsRelay:
    """Publishes the log to JetStream while it holds its lock; stands by while another does.

    `connect()` first (it fails fast, with `NatsUnavailable` or `RelayConfigError`), then
    `run(stop)` until `stop` is set, then `close()`."""

    def __init__(self, app: Any, database_url: str, *, url: str, stream: str = DEFAULT_STREAM,
                 subject_prefix: str = DEFAULT_SUBJECT_PREFIX, batch_size: int = 1000, poll_s: float = 0.02,
                 lock_poll_s: float = 0.5, ack_timeout_s: float = 10.0, connect_timeout_s: float = 5.0,
                 progress_every_s: float = 10.0) -> None:
        check_names(stream, subject_prefix)
        self.app = app  # the ChannelDepartment: its recorder, mapper and pool
        self.database_url = database_url
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.lock_poll_s = lock_poll_s
        self.ack_timeout_s = ack_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.progress_every_s = progress_every_s
        self.nc: Any = None
        self.js: Any = None
        self.acks: AckInbox | None = None
        self._closing = False
        self.position = 0  # everything up to here is acknowledged (as far as this relay knows)
        self.published = 0  # messages acknowledged since start, duplicates included
        self._last_id: str | None = None  # the stream's last message, as this session left it
        self._last_seq = 0
        self._nats_trouble: str = ""

    @property
    def datastore(self) -> Any:
        return self.app.event_recorder.datastore

    @property
    def subjects(self) -> str:
        return f"{self.subject_prefix}.>"

    # NATS ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and make sure the stream is there. Once connected, nats-py reconnects on its
        own, for ever; failing to connect at start is an error the operator should see."""
        seen: list[BaseException] = []

        async def on_error(error: BaseException) -> None:
            seen.append(error)
            text = f"{type(error).__name__}: {error}"
            if text != self._nats_trouble:
                logger.warning("NATS at %s: %s", shown_url(self.url), text)
                self._nats_trouble = text

        async def on_disconnected() -> None:
            if self.nc is not None and not self._closing:
                logger.warning("disconnected from NATS at %s; reconnecting", shown_url(self.url))

        async def on_reconnected() -> None:
            self._nats_trouble = ""
            logger.warning("reconnected to NATS at %s", shown_url(self.url))

        try:
            self.nc = await asyncio.wait_for(nats.connect(
                self.url, name=f"channel-domain relay {self.stream}", connect_timeout=2, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5, ping_interval=10, max_outstanding_pings=2,
                error_cb=on_error, disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
                # Every subject is the checked prefix and an event type (Python names): nats-py need
                # not match three patterns per message (a fifth of the publishing time).
                skip_subject_validation=True,
            ), timeout=self.connect_timeout_s)
        except (TimeoutError, OSError, nats.errors.Error) as error:
            cause = seen[-1] if seen else error
            raise NatsUnavailable(f"cannot reach NATS at {shown_url(self.url)} within {self.connect_timeout_s:g} s:"
                                  f" {type(cause).__name__}: {cause}") from None
        self.js = self.nc.jetstream(timeout=5)
        self.acks = AckInbox(self.nc)
        await self.acks.start()
        await self.ensure_stream()

    async def ensure_stream(self) -> None:
        """Create the stream when missing (subjects `P.>`, duplicate window 2 min, on disk);
        refuse one that exists without taking `P.>`."""
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(StreamConfig(
                    name=self.stream, subjects=[self.subjects], duplicate_window=DUPLICATE_WINDOW_S,
                    storage=StorageType.FILE, description="channel-domain's event log (channel-domain relay nats)"))
            except nats.js.errors.BadRequestError as refused:
                raise RelayConfigError(f"JetStream refused to create stream {self.stream} for {self.subjects}:"
                                       f" {refused.description}") from None
            logger.info("created JetStream stream %s (subjects %s, duplicate window %g s)", self.stream,
                           self.subjects, DUPLICATE_WINDOW_S)
            return
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError):
            raise NatsUnavailable(f"NATS at {shown_url(self.url)} does not answer JetStream requests: is JetStream"
                                  " enabled (nats-server -js)?") from None
        subjects = info.config.subjects or []
        if self.subjects not in subjects and ">" not in subjects:
            raise RelayConfigError(f"stream {self.stream} exists with subjects {subjects}, not {self.subjects}:"
                                   " choose another --stream or --subject-prefix")
        window = info.config.duplicate_window or 0
        if window < DUPLICATE_WINDOW_S:
            logger.warning("stream %s keeps a duplicate window of %g s only (the relay creates streams with %g s)",
                           self.stream, window, DUPLICATE_WINDOW_S)

    async def close(self) -> None:
        self._closing = True
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()

    # Running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        trouble = ""
        while not stop.is_set():
            lock: psycopg.Connection | None = None
            try:
                lock = await asyncio.to_thread(self._lock_session)
                if await self._wait_for_lock(lock, stop):
                    await self._relay_while_locked(lock, stop)
            except Exception as error:  # noqa: BLE001 - the database or the lock session: again after a pause
                text = f"{type(error).__name__}: {error}"
                if text != trouble:
                    logger.error("relay to %s: %s; trying again", self.stream, text, exc_info=not trouble)
                    trouble = text
                await _wait(stop, 1.0)
            finally:
                if lock is not None:
                    await asyncio.to_thread(lock.close)

    def _lock_session(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True,
                               application_name=f"channel-domain relay nats {self.stream}")

    async def _wait_for_lock(self, lock: psycopg.Connection, stop: asyncio.Event) -> bool:
        said = False
        while not stop.is_set():
            if await asyncio.to_thread(self._try_lock, lock):
                return True
            if not said:
                logger.warning("standing by: another relay publishes to stream %s (%s); taking over if it stops",
                               self.stream, self.subjects)
                said = True
            await _wait(stop, self.lock_poll_s)
        return False

    def _try_lock(self, lock: psycopg.Connection) -> bool:
        row = lock.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                           (lock_name(self.stream, self.subject_prefix),)).fetchone()
        return bool(row and row[0])

    async def _relay_while_locked(self, lock: psycopg.Connection, stop: asyncio.Event) -> None:
        await asyncio.to_thread(_mark_holder, self.datastore, self.stream, self.subject_prefix)
        pause = 0.1
        while not stop.is_set():
            try:
                await self._relay_session(lock, stop)
            except PublishFailed as failed:
                logger.warning("relay to %s: %s; syncing with the stream again in %.1f s", self.stream, failed, pause)
                await _wait(stop, pause)
                pause = min(pause * 2, 2.0)
            else:
                pause = 0.1

    async def _relay_session(self, lock: psycopg.Connection, stop: asyncio.Event) -> None:
        """From the stream's true state, publish until stopped or a batch fails (PublishFailed)."""
        await self._sync()
        logger.info("relaying to stream %s (%s) from position %d", self.stream, self.subjects, self.position)
        log = EventLog(self.app.event_recorder, after=self.position)
        reported_at, reported = time.monotonic(), self.published
        ahead: asyncio.Future | None = None

        def read_ahead() -> None:
            # The next batch is read and made while JetStream acknowledges this one.
            nonlocal ahead
            ahead = asyncio.ensure_future(asyncio.to_thread(self._next_batch, log))

        try:
            while not stop.is_set():
                # Also the check that the session, and with it the lock, is still there: raises when not.
                await asyncio.to_thread(lock.execute, "SELECT 1")
                if ahead is not None:
                    batch, ahead = await ahead, None
                else:
                    batch = await asyncio.to_thread(self._next_batch, log)
                if batch:
                    await self._publish(batch, read_ahead if len(batch) == self.batch_size else None)
                else:
                    await _wait(stop, self.poll_s)
                if time.monotonic() - reported_at >= self.progress_every_s:
                    if self.published != reported:
                        head = await asyncio.to_thread(self.app.event_recorder.max_notification_id) or 0
                        logger.info("relayed %d events in %.0f s; position %d, head %d, lag %d",
                                    self.published - reported, time.monotonic() - reported_at, self.position, head,
                                    max(0, head - self.position))
                    reported_at, reported = time.monotonic(), self.published
        finally:
            if ahead is not None:  # made for a session that ends: dropped, its error (if any) with it
                ahead.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _next_batch(self, log: Any) -> list[Outgoing]:
        return outgoing(self.app, self.subject_prefix, log.read(self.batch_size))

    async def _sync(self) -> None:
        """Read the stream's last message and the checkpoint; what the stream holds beyond the
        checkpoint was acknowledged before the relay could record it: the checkpoint moves up."""
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            logger.error("stream %s is gone (deleted?); creating it again: consumers will see only events after"
                         " the checkpoint", self.stream)
            await self.ensure_stream()
            info = await self.js.stream_info(self.stream)
        except (nats.errors.Error, TimeoutError) as error:
            raise PublishFailed(f"cannot read stream {self.stream}'s state: {type(error).__name__}: {error}") from None
        self._last_seq = info.state.last_seq
        self._last_id, stored = await self._last_message(info.state.last_seq)
        checkpoint = await asyncio.to_thread(read_checkpoint, self.datastore, self.stream, self.subject_prefix)
        if stored is not None and stored > checkpoint:
            logger.warning("stream %s already holds the events up to position %d (acknowledged after the"
                           " checkpoint %d was recorded): moving the checkpoint there", self.stream, stored, checkpoint)
            await asyncio.to_thread(save_checkpoint, self.datastore, self.stream, self.subject_prefix, stored)
            checkpoint = stored
        self.position = checkpoint

    async def _last_message(self, sequence: int) -> tuple[str | None, int | None]:
        """The stream's last message: its Nats-Msg-Id and position, as far as it says."""
        if sequence == 0:
            return None, None
        try:
            message = await self.js.get_msg(self.stream, seq=sequence)
        except nats.js.errors.NotFoundError:
            return None, None  # deleted from the stream: the relay goes on from its checkpoint
        except (nats.errors.Error, TimeoutError) as error:
            raise PublishFailed(f"cannot read stream {self.stream}'s last message: {type(error).__name__}:"
                                f" {error}") from None
        headers = message.headers or {}
        position = headers.get(POSITION_HEADER)
        return headers.get(MSG_ID), int(position) if position and position.isdigit() else None

    async def _publish(self, batch: Sequence[Outgoing], sent: Callable[[], None] | None = None) -> None:
        """Publish the batch, chained to the stream's last message, await the acknowledgements,
        and move the checkpoint over the acknowledged run from its start. `sent` is called once
        every message is on its way, before the acknowledgements are awaited."""
        assert self.acks is not None
        acks = self.acks.expect(len(batch))
        previous = self._last_id
        sending: BaseException | None = None
        try:
            for n, message in enumerate(batch):
                headers = {MSG_ID: message.event_id, POSITION_HEADER: str(message.position)}
                if previous is None:
                    headers[EXPECTED_LAST_SEQUENCE] = str(self._last_seq)
                else:
                    headers[EXPECTED_LAST_MSG_ID] = previous
                await self.nc.publish(message.subject, message.body, reply=acks.reply_to(n), headers=headers)
                previous = message.event_id
            if sent is not None:
                sent()
        except (nats.errors.Error, OSError) as error:
            sending = error
        acked, error = await acks.settled(self.ack_timeout_s)
        error = error or sending
        if acked:
            await asyncio.to_thread(save_checkpoint, self.datastore, self.stream, self.subject_prefix,
                                    batch[acked - 1].position)
            self.position = batch[acked - 1].position
            self.published += acked
            self._last_id = batch[acked - 1].event_id
        if acked < len(batch):
            raise PublishFailed(f"JetStream acknowledged {acked} of {len(batch)} messages (positions"
                                f" {batch[0].position}-{batch[-1].position}); at position {batch[acked].position}:"
                                f" {type(error).__name__}: {error}")


class Refused(Exception):
    """JetStream answered a publish with an error (a wrong expected last message, no stream)."""


class AckInbox:
    """The acknowledgements of asynchronous JetStream publishes, a batch at a time: message n
    of a batch asks for its acknowledgement on `<inbox>.<batch>.<n>` under one subscription.

    nats-py's `publish_async` cannot serve here: when JetStream refuses a message (as it must
    when the expected last message does not match) its handler raises instead of failing the
    message's future, which then never completes (nats-io/nats.py#985, open in 2.16). Counting
    a batch's answers also spares a future per message."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.prefix = ""
        self.batch: _Batch | None = None
        self._batches = 0

    async def start(self) -> None:
        self.prefix = f"{self.nc.new_inbox()}."
        await self.nc.subscribe(f"{self.prefix}>", cb=self._on_reply)

    def expect(self, size: int) -> _Batch:
        """A new batch of `size` messages; answers to an earlier one are ignored from now on."""
        self._batches += 1
        self.batch = _Batch(f"{self.prefix}{self._batches}.", size)
        return self.batch

    async def _on_reply(self, reply: Any) -> None:
        batch = self.batch
        if batch is None or not reply.subject.startswith(batch.reply_prefix):
            return  # an earlier batch's, given up already
        answer: Refused | None = None
        if reply.headers and reply.headers.get("Status") == "503":
            answer = Refused("no stream takes this subject (no responders)")
        elif b'"error"' in reply.data:  # an acknowledgement is {"stream":…,"seq":…[,"duplicate":true]}
            try:
                error = json.loads(reply.data)["error"]
                answer = Refused(f"{error.get('description')} (code {error.get('code')}, err_code"
                                 f" {error.get('err_code')})")
            except (ValueError, KeyError, TypeError, AttributeError):
                answer = Refused(f"not a JetStream acknowledgement: {reply.data[:200]!r}")
        batch.answer(int(reply.subject[len(batch.reply_prefix):]), answer)


class _Batch:
    def __init__(self, reply_prefix: str, size: int) -> None:
        self.reply_prefix = reply_prefix
        self.answers: list[Refused | bool | None] = [None] * size  # True: stored (or a duplicate)
        self.missing = size
        self.done = asyncio.Event()

    def reply_to(self, n: int) -> str:
        return f"{self.reply_prefix}{n}"

    def answer(self, n: int, refused: Refused | None) -> None:
        if not 0 <= n < len(self.answers) or self.answers[n] is not None:
            return
        self.answers[n] = refused or True
        self.missing -= 1
        if refused is not None or self.missing == 0:
            self.done.set()  # a refusal ends the run: later messages are refused too (they are chained)

    async def settled(self, timeout_s: float) -> tuple[int, BaseException | None]:
        """How many were acknowledged from the first on, and what stopped the run, once every
        message is answered or one refused, or after `timeout_s`."""
        try:
            await asyncio.wait_for(self.done.wait(), timeout=timeout_s)
        except TimeoutError:
            pass
        acked = 0
        for answer in self.answers:
            if answer is True:
                acked += 1
            elif answer is None:
                return acked, TimeoutError(f"no acknowledgement within {timeout_s:g} s")
            else:
                return acked, answer
        return acked, None


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
