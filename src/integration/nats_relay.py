"""The NATS JetStream relay (`channel-domain relay nats`): every event of the log, in position
order, to a JetStream stream, as the feed item (personal data as markers).

Subjects are `<prefix>.<stream type>.<event name>` — the feed item's `type` already reads
`<stream type>.<event name>` (`Partner.Registered`), so a partner's registration goes to
`channel-domain.Partner.Registered`. Each message carries `Nats-Msg-Id` = the event id (a
message sent twice within the stream's duplicate window is stored once),
`Channel-Domain-Position` = its position in the log and `Channel-Domain-Source` = who sent it
(`<cluster's system identifier>/<database>/<prefix>`).

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
  the duplicate window has passed. Only a message of its own source moves it, and never above
  the log's head: a last message from another database or prefix, or beyond the head, stops
  the relay (RelayRefused, exit code 2) — trusting it would skip events.
- One relay at a time per stream and prefix: a session advisory lock, checked on every pass. A
  standby asks for it every `lock_poll_s` (0.5 s) with its NATS connection already open, so a
  relay that dies (PostgreSQL releases its lock with its session) is taken over within a second;
  one whose host vanishes, once the lock session's keepalives give up (about 12 s).
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
from urllib.parse import unquote

import nats
import nats.errors
import nats.js.errors
import psycopg
from eventsourcing.persistence import Notification
from nats.js.api import StorageType, StreamConfig
from psycopg.conninfo import conninfo_to_dict

from channel_domain.aggregate import event_id
from channel_domain.store.log import EventLog
from channel_domain.store.recorder import EVENTS_TABLE
from integration.items import feed_items, for_integration_clients

logger = logging.getLogger(__name__)

DEFAULT_STREAM = "CHANNEL_DOMAIN"
DEFAULT_SUBJECT_PREFIX = "channel-domain"
URL_VARIABLE = "CHANNEL_DOMAIN_NATS_URL"
DUPLICATE_WINDOW_S = 120.0

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
POSITION_HEADER = "Channel-Domain-Position"
SOURCE_HEADER = "Channel-Domain-Source"

# Stream names must not hold `.`, `*`, `>`, whitespace or path separators; this is stricter,
# and keeps the lock's name (`nats-relay:STREAM:PREFIX`) unambiguous.
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SUBJECT_TOKEN = re.compile(r"^[^\s.*>]+$")
_POSITION = re.compile(r"[0-9]{1,18}")  # not str.isdigit(): it takes "²", which int() refuses


class RelayConfigError(ValueError):
    """A stream name or subject prefix NATS would refuse, or a stream that cannot take them."""


class RelayRefused(RelayConfigError):
    """Going on would skip events: the stream's last message was not published by this relay
    (this database and prefix), or it or the checkpoint is beyond this log's head. The
    operator decides."""


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


def servers(url: str) -> list[str]:
    """The servers of a `--url`: one URL, or several separated by commas (as the `nats` CLI
    takes them); nats-py wants several as a list."""
    return [server.strip() for server in url.split(",") if server.strip()]


def shown_url(url: str) -> str:
    """The URL(s) without their secrets, for messages and logs: `nats://user:***@host` for a
    password, `nats://***@host` for a token (NATS token auth puts it where a user name goes)."""
    return ",".join(_shown_server(server) for server in servers(url))


def _parts(server: str) -> tuple[str, str | None, str]:
    """`scheme://`, the user info (None without `@`), and the rest."""
    scheme, separator, rest = server.partition("://")
    if not separator:
        scheme, rest = "", server
    userinfo, at, host = rest.rpartition("@")
    return scheme + separator, (userinfo if at else None), host


def _shown_server(server: str) -> str:
    scheme, userinfo, host = _parts(server)
    if userinfo is None:
        return server
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}{f'{user}:***' if colon else '***'}@{host}"


# Shorter ones are not looked for in free text: masking every "a" would garble the message more
# than it protects (a secret that short protects nothing anyway).
MIN_MASKED_SECRET = 4


def _secrets(url: str) -> list[str]:
    """The tokens and passwords in the URL(s), as written and percent-decoded, longest first
    (one may contain another)."""
    found: set[str] = set()
    for server in servers(url):
        userinfo = _parts(server)[1]
        if userinfo is not None:
            user, colon, password = userinfo.partition(":")
            secret = password if colon else user
            found |= {secret, unquote(secret)}
    return sorted((secret for secret in found if len(secret) >= MIN_MASKED_SECRET), key=len, reverse=True)


def masked(text: str, url: str) -> str:
    """`text` (an exception's, a library's) with the URL's secrets replaced by `***`."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Outgoing:
    """One event as it leaves: subject, id and the feed item's JSON."""

    position: int
    event_id: str
    subject: str
    body: bytes


def outgoing(app: Any, subject_prefix: str, notifications: Sequence[Notification]) -> list[Outgoing]:
    """The messages of `notifications`, the service's own operations left out as on every channel."""
    carried = [notification for notification in notifications if for_integration_clients(notification)]
    return [Outgoing(item["position"], item["event_id"], f"{subject_prefix}.{item['type']}",
                     json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
            for item in feed_items(app, carried)]


def relay_source(datastore: Any, subject_prefix: str) -> str:
    """Who publishes: `<cluster's system identifier>/<database>/<prefix>`. The identifier is
    the cluster's own (initdb makes it), so two clusters' databases of the same name differ,
    and a stream's last message says whether this relay may go on from it."""
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT (SELECT system_identifier FROM pg_control_system()) AS cluster, current_database() AS db")
        row = curs.fetchone()
    return f"{row['cluster']}/{row['db']}/{subject_prefix}"


# The lock session's keepalives. PostgreSQL frees a session's advisory lock when the session
# ends; a relay process that dies closes its socket, but a host that vanishes (power, network)
# closes nothing, and the server would hold the lock until its system-wide keepalive gives up
# (about 2 h by default). These make the server drop the session after about 11 s of silence
# (5 s idle, then 3 probes 2 s apart) or 10 s of data unacknowledged, and the relay notice the
# same of the server (its next `SELECT 1` fails) — so a standby takes over in about 12 s.
LOCK_KEEPALIVE_IDLE_S = 5
LOCK_KEEPALIVE_INTERVAL_S = 2
LOCK_KEEPALIVE_COUNT = 3
LOCK_TCP_USER_TIMEOUT_MS = 10_000


def lock_session(database_url: str, application_name: str) -> psycopg.Connection:
    """A session for an advisory lock that is freed soon after its holder's host vanishes:
    TCP keepalives and a user timeout on both ends (libpq's for the client, the session's
    settings for the server; both ignored over a Unix socket, where no host can vanish)."""
    server_side = (f"-c tcp_keepalives_idle={LOCK_KEEPALIVE_IDLE_S} -c tcp_keepalives_interval="
                   f"{LOCK_KEEPALIVE_INTERVAL_S} -c tcp_keepalives_count={LOCK_KEEPALIVE_COUNT}"
                   f" -c tcp_user_timeout={LOCK_TCP_USER_TIMEOUT_MS}")
    given = conninfo_to_dict(database_url).get("options")
    return psycopg.connect(database_url, autocommit=True, application_name=application_name,
                           options=f"{given} {server_side}" if given else server_side,
                           keepalives=1, keepalives_idle=LOCK_KEEPALIVE_IDLE_S,
                           keepalives_interval=LOCK_KEEPALIVE_INTERVAL_S, keepalives_count=LOCK_KEEPALIVE_COUNT,
                           tcp_user_timeout=LOCK_TCP_USER_TIMEOUT_MS)


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

    @property
    def beyond_head(self) -> bool:
        """The checkpoint is past the log's end: it was not this log's (a database restored
        from an older backup under a kept checkpoint, or moved by hand) — events are skipped."""
        return self.position > self.head


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
                 progress_every_s: float = 10.0, continue_from: Sequence[str] = ()) -> None:
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
        # Sources, besides this relay's own, whose last message this relay may go on from: the
        # operator's word that this database continues that one's log (restored or upgraded
        # into a new cluster, renamed).
        self.continue_from = frozenset(continue_from)
        self.source = ""  # set by connect(): relay_source()
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
        self.source = await asyncio.to_thread(relay_source, self.datastore, self.subject_prefix)

        async def on_error(error: BaseException) -> None:
            seen.append(error)
            text = masked(f"{type(error).__name__}: {error}", self.url)
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
                servers(self.url), name=f"channel-domain relay {self.stream}", connect_timeout=2, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5, ping_interval=10, max_outstanding_pings=2,
                error_cb=on_error, disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
                # Every subject is the checked prefix and an event type (Python names): nats-py need
                # not match three patterns per message (a fifth of the publishing time).
                skip_subject_validation=True,
            ), timeout=self.connect_timeout_s)
        except (TimeoutError, OSError, nats.errors.Error) as error:
            cause = seen[-1] if seen else error
            raise NatsUnavailable(f"cannot reach NATS at {shown_url(self.url)} within {self.connect_timeout_s:g} s:"
                                  + masked(f" {type(cause).__name__}: {cause}", self.url)) from None
        self.js = self.nc.jetstream(timeout=5)
        self.acks = AckInbox(self.nc)
        await self.acks.start()
        await self.ensure_stream()
        # Refused here already, not only once the lock is had: a standby says so at start too.
        try:
            info = await self.js.stream_info(self.stream)
            await self._trusted_last_message(info.state.last_seq)
        except (PublishFailed, nats.errors.Error, TimeoutError) as error:
            raise NatsUnavailable(masked(f"NATS at {shown_url(self.url)} does not tell stream {self.stream}'s last"
                                         f" message: {type(error).__name__}: {error}", self.url)) from None

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
            except RelayRefused as refused:
                logger.error("relay to %s stops: %s", self.stream, refused)
                raise
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
        return lock_session(self.database_url, f"channel-domain relay nats {self.stream}")

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
                logger.warning("relay to %s: %s; syncing with the stream again in %.1f s", self.stream,
                               masked(str(failed), self.url), pause)
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
        checkpoint was acknowledged before the relay could record it: the checkpoint moves up —
        only from a message this relay published, and never above the log's head."""
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
        last = await self._trusted_last_message(info.state.last_seq)
        self._last_id = last.event_id if last else None
        checkpoint = await asyncio.to_thread(read_checkpoint, self.datastore, self.stream, self.subject_prefix)
        if last is not None and last.position is not None and last.position > checkpoint:
            logger.warning("stream %s already holds the events up to position %d (acknowledged after the"
                           " checkpoint %d was recorded): moving the checkpoint there", self.stream, last.position,
                           checkpoint)
            await asyncio.to_thread(save_checkpoint, self.datastore, self.stream, self.subject_prefix, last.position)
            checkpoint = last.position
        head = await asyncio.to_thread(self.app.event_recorder.max_notification_id) or 0
        if checkpoint > head:
            raise RelayRefused(f"the checkpoint of stream {self.stream} ({self.subjects}) is at position {checkpoint},"
                               f" beyond this log's head {head}: it is not this log's (moved by hand?), and going on"
                               " from it would skip events. Set it back (nats_relay_checkpoints) to the stream's last"
                               " position, or give the relay a new stream.")
        self.position = checkpoint

    async def _trusted_last_message(self, sequence: int) -> LastMessage | None:
        """The stream's last message, if this relay may go on from it; RelayRefused when
        another database or prefix (or anyone else) published it, or when its position is
        beyond this log's head: going on from there would skip this log's events."""
        last = await self._last_message(sequence)
        if last is None:
            return None
        if last.source != self.source and last.source not in self.continue_from:
            found = f"comes from {last.source}" if last.source else f"carries no {SOURCE_HEADER} header"
            raise RelayRefused(
                f"stream {self.stream}'s last message (sequence {last.sequence}) {found}, not from this relay"
                f" ({self.source}): another database or subject prefix publishes to it, and going on from its"
                f" position would skip events. Give each relay a stream of its own (--stream), or, if this"
                f" database continues that one's log (restored or upgraded into a new cluster), start once"
                f" with --continue-from '{last.source}'.")
        if last.position is not None:
            head = await asyncio.to_thread(self.app.event_recorder.max_notification_id) or 0
            if last.position > head:
                raise RelayRefused(
                    f"stream {self.stream}'s last message (sequence {last.sequence}, from {last.source}) is at"
                    f" position {last.position}, beyond this log's head {head}: the database is behind the stream"
                    " (restored from an older backup?). The relay does not move its checkpoint there; give it a"
                    " new stream (--stream), or delete this one, once the consumers are told.")
            here = await asyncio.to_thread(self._event_id_at, last.position)
            if last.event_id is not None and here != last.event_id:
                # The same source, the position within the head, another event: a database
                # restored into the same cluster and written past where the stream stopped.
                raise RelayRefused(
                    f"stream {self.stream}'s last message (sequence {last.sequence}) is event {last.event_id} at"
                    f" position {last.position}, but this log holds {here or 'no event'} there: the log is not the"
                    " one the stream was published from (restored from a backup and written to since?). The relay"
                    " does not go on from it; give it a new stream (--stream), or delete this one, once the"
                    " consumers are told.")
        return last

    def _event_id_at(self, position: int) -> str | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(f"SELECT originator_id, originator_version FROM {EVENTS_TABLE} WHERE position = %s",  # noqa: S608
                         (position,))
            row = curs.fetchone()
        return None if row is None else str(event_id(row["originator_id"], row["originator_version"]))

    async def _last_message(self, sequence: int) -> LastMessage | None:
        """The stream's last message as far as its headers say (None: empty, or deleted)."""
        if sequence == 0:
            return None
        try:
            message = await self.js.get_msg(self.stream, seq=sequence)
        except nats.js.errors.NotFoundError:
            return None  # deleted from the stream: the relay goes on from its checkpoint
        except (nats.errors.Error, TimeoutError) as error:
            raise PublishFailed(f"cannot read stream {self.stream}'s last message: {type(error).__name__}:"
                                f" {error}") from None
        headers = message.headers or {}
        position = headers.get(POSITION_HEADER)
        return LastMessage(sequence, headers.get(MSG_ID), int(position) if position and _POSITION.fullmatch(position)
                           else None,
                           headers.get(SOURCE_HEADER, ""))

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
                headers = {MSG_ID: message.event_id, POSITION_HEADER: str(message.position),
                           SOURCE_HEADER: self.source}
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


@dataclass(frozen=True)
class LastMessage:
    sequence: int
    event_id: str | None
    position: int | None
    source: str  # "" when the header is missing


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
