"""Webhook subscriptions: which URL gets which events, the secret their signatures use, where
delivery has got to, and who changed what (api.md, "Events for integration clients").

A subscription is delivery state, not a business fact, so it is kept in tables of its own
(migration 0022), never in the event log: its secret must not reach the immutable, exported
log, and its position moves with every delivery. Every change a person makes is written to
`webhook_changes` (actor, roles, correlation id, time) in the transaction of the change;
that table refuses updates and deletes, as `events` does.

Where a subscription may send is checked when it is created and again before every delivery
(`UrlPolicy`): an API client must not be able to make the server call its own network.
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from psycopg.types.json import Jsonb

from channel_domain.errors import DomainError, IdempotencyKeyReused, NotFound, refusal
from channel_domain.store.recorder import EVENTS_TABLE

ALLOWED_HOSTS_VARIABLE = "CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS"
PUBLIC = "public"  # in the allowed hosts: any host whose every address is a public one
MAX_ATTEMPTS = 8  # failures of a record's first waiting event before the record is parked
SHOWN_PER_RECORD = 100  # positions listed per waiting or parked record in a status


class WebhookUrlNotAllowed(DomainError):
    code = "webhook_url_not_allowed"


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs a subscription may name: `http`/`https` only, to a host matching one of
    `patterns` (shell-style, `*.example.com`), or — for the pattern `public` — any host whose
    every address is public (not loopback, private, link-local, multicast or reserved).

    Unset, the policy is `public`: an API client cannot make the server call localhost, the
    cloud metadata service (169.254.169.254) or anything on the private network. An operator
    who lists a host trusts it, whatever its addresses (tests list 127.0.0.1)."""

    patterns: tuple[str, ...] = (PUBLIC,)
    resolve: Any = field(default=socket.getaddrinfo, compare=False, repr=False)

    @classmethod
    def from_environment(cls) -> UrlPolicy:
        given = os.environ.get(ALLOWED_HOSTS_VARIABLE, "")
        patterns = tuple(part.strip().lower() for part in given.split(",") if part.strip())
        return cls(patterns or (PUBLIC,))

    def check(self, url: str) -> None:
        """Refuses (`WebhookUrlNotAllowed`, with a `reason`) a URL this policy does not allow."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise WebhookUrlNotAllowed("the url cannot be parsed", reason="malformed") from None
        if parts.scheme not in ("http", "https"):
            raise WebhookUrlNotAllowed("a webhook url is http:// or https://", reason="scheme")
        if not host:
            raise WebhookUrlNotAllowed("the url names no host", reason="malformed")
        if parts.username is not None or parts.password is not None:
            # They would be sent in clear in every log that quotes the url.
            raise WebhookUrlNotAllowed("credentials in the url are not allowed; verify the signature instead",
                                       reason="credentials")
        if any(pattern != PUBLIC and fnmatch.fnmatchcase(host, pattern) for pattern in self.patterns):
            return
        if PUBLIC not in self.patterns:
            raise WebhookUrlNotAllowed(f"host {host} is not among the allowed hosts ({ALLOWED_HOSTS_VARIABLE})",
                                       reason="host")
        addresses = self._addresses(host, parts.port or (443 if parts.scheme == "https" else 80))
        if not addresses:
            raise WebhookUrlNotAllowed(f"host {host} does not resolve", reason="unresolvable")
        private = sorted(str(a) for a in addresses if not a.is_global or a.is_multicast)
        if private:
            raise WebhookUrlNotAllowed(f"host {host} has a non-public address ({', '.join(private)}); list it in"
                                       f" {ALLOWED_HOSTS_VARIABLE} to allow it", reason="address")

    def _addresses(self, host: str, port: int) -> set[Any]:
        try:
            return {ipaddress.ip_address(info[4][0].split("%")[0]) for info in self.resolve(host, port)}
        except (OSError, UnicodeError, ValueError):
            return set()


class CachedUrlPolicy:
    """The policy as the delivery worker applies it before each request: a URL's verdict is
    kept a few seconds, so a busy subscription does not resolve its host for every event,
    and a host whose DNS moves to a private address is refused within that time."""

    def __init__(self, policy: UrlPolicy, keep_s: float = 10.0) -> None:
        self.policy = policy
        self.keep_s = keep_s
        self._verdicts: dict[str, tuple[float, str | None]] = {}
        self._guard = threading.Lock()

    def why_refused(self, url: str) -> str | None:
        """Why `url` may not be called now, or None."""
        now = time.monotonic()
        with self._guard:
            kept = self._verdicts.get(url)
        if kept is not None and now - kept[0] < self.keep_s:
            return kept[1]
        try:
            self.policy.check(url)
            verdict = None
        except WebhookUrlNotAllowed as refused:
            verdict = f"url not allowed: {refused.message}"
        with self._guard:
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            self._verdicts[url] = (now, verdict)
        return verdict


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Actor:
    """Who asks for a change, as the change log records them."""

    name: str
    roles: tuple[str, ...]
    correlation_id: str | None = None


@dataclass(frozen=True)
class Created:
    subscription: dict[str, Any]
    secret: str | None  # None on an idempotent replay: the secret is shown once
    replayed: bool


def _head(curs: Any) -> int:
    curs.execute(f"SELECT coalesce(max(position), 0) AS head FROM {EVENTS_TABLE}")  # noqa: S608
    return curs.fetchone()["head"]


def _record_change(curs: Any, subscription_id: uuid.UUID, action: str, actor: Actor,
                   details: dict[str, Any] | None = None) -> None:
    curs.execute("INSERT INTO webhook_changes (subscription_id, action, actor, roles, correlation_id, details)"
                 " VALUES (%s, %s, %s, %s, %s, %s)",
                 (subscription_id, action, actor.name, list(actor.roles), actor.correlation_id, Jsonb(details or {})))


class Subscriptions:
    """The subscriptions of one database (`datastore`: the department's)."""

    def __init__(self, datastore: Any, policy: UrlPolicy | None = None) -> None:
        self.datastore = datastore
        self.policy = policy or UrlPolicy.from_environment()

    def create(self, actor: Actor, url: str, types: Sequence[str] = (), stream_types: Sequence[str] = (),
               from_position: int | None = None, idempotency_key: str | None = None) -> Created:
        """A new active subscription delivering the events after `from_position` (default:
        the head, so only new events). With an `idempotency_key`, a repeat by the same actor
        with the same request answers the first subscription — without its secret, which is
        shown once — and the same key with another request is refused."""
        fingerprint = json.dumps([url, sorted(types), sorted(stream_types), from_position])
        if idempotency_key is not None:
            earlier = self._created_with(actor.name, idempotency_key, fingerprint)
            if earlier is not None:
                return Created(earlier, None, True)
        self.policy.check(url)
        subscription_id = uuid.uuid4()
        secret = new_secret()
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            head = _head(curs)
            start = head if from_position is None else from_position
            if start > head:
                raise refusal("from_position_beyond_head", f"from_position {start} is beyond the log's head ({head})",
                              head=head)
            curs.execute(
                "INSERT INTO webhook_subscriptions (id, url, types, stream_types, secret, status, position, created_by,"
                " idempotency_key, request_fingerprint) VALUES (%s, %s, %s, %s, %s, 'active', %s, %s, %s, %s)"
                " ON CONFLICT (created_by, idempotency_key) DO NOTHING",
                (subscription_id, url, sorted(set(types)), sorted(set(stream_types)), secret, start, actor.name,
                 idempotency_key, fingerprint if idempotency_key else None))
            inserted = curs.rowcount == 1
            if inserted:
                _record_change(curs, subscription_id, "created", actor,
                               {"url": url, "types": sorted(set(types)), "stream_types": sorted(set(stream_types)),
                                "from_position": start})
        if not inserted:  # the same key committed meanwhile, by a request racing this one: a repeat
            earlier = self._created_with(actor.name, idempotency_key or "", fingerprint)
            assert earlier is not None
            return Created(earlier, None, True)
        return Created(self.get(subscription_id), secret, False)

    def _created_with(self, actor: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT id, request_fingerprint FROM webhook_subscriptions"
                         " WHERE created_by = %s AND idempotency_key = %s", (actor, key))
            row = curs.fetchone()
        if row is None:
            return None
        if row["request_fingerprint"] != fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another request")
        return self.get(row["id"], include_deleted=True)

    def get(self, subscription_id: uuid.UUID, *, include_deleted: bool = False) -> dict[str, Any]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            found = self._states(curs, [subscription_id], include_deleted)
        if not found:
            raise NotFound(f"no webhook subscription {subscription_id}")
        return found[0]

    def list(self, after: uuid.UUID | None, limit: int) -> tuple[list[dict[str, Any]], uuid.UUID | None]:
        """A page in id order, and the cursor of the next page (None on the last)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT id FROM webhook_subscriptions WHERE status <> 'deleted' AND id > %s"
                         " ORDER BY id LIMIT %s", (after or uuid.UUID(int=0), limit + 1))
            ids = [row["id"] for row in curs.fetchall()]
            page = self._states(curs, ids[:limit], False)
        return page, (ids[limit - 1] if len(ids) > limit else None)

    def changes(self, subscription_id: uuid.UUID) -> list[dict[str, Any]]:
        self.get(subscription_id, include_deleted=True)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT action, actor, roles, correlation_id, at, details FROM webhook_changes"
                         " WHERE subscription_id = %s ORDER BY seq", (subscription_id,))
            return [dict(row) for row in curs.fetchall()]

    def pause(self, subscription_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
        return self._set_status(subscription_id, actor, "paused")

    def resume(self, subscription_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
        return self._set_status(subscription_id, actor, "active")

    def _set_status(self, subscription_id: uuid.UUID, actor: Actor, status: str) -> dict[str, Any]:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            was = self._lock(curs, subscription_id)
            if was != status:  # pausing a paused subscription changes nothing, and records nothing
                curs.execute("UPDATE webhook_subscriptions SET status = %s WHERE id = %s", (status, subscription_id))
                _record_change(curs, subscription_id, "paused" if status == "paused" else "resumed", actor)
        return self.get(subscription_id)

    def delete(self, subscription_id: uuid.UUID, actor: Actor) -> None:
        """Stops delivery for good and forgets the secret and the waiting lines; the row and
        its change log stay for auditors."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock(curs, subscription_id)
            curs.execute("UPDATE webhook_subscriptions SET status = 'deleted', secret = NULL WHERE id = %s",
                         (subscription_id,))
            curs.execute("DELETE FROM webhook_lines WHERE subscription_id = %s", (subscription_id,))
            _record_change(curs, subscription_id, "deleted", actor, {"dropped_waiting_events": curs.rowcount})

    def replay_parked(self, subscription_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
        """Every parked record's events are tried again at once, in order, with their
        attempts counted afresh. Recorded only when something was parked."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock(curs, subscription_id)
            curs.execute(
                "UPDATE webhook_lines SET parked_at = NULL, attempts = 0, next_attempt_at = now()"
                " WHERE subscription_id = %s AND parked_at IS NOT NULL RETURNING stream_id, position",
                (subscription_id,))
            heads = curs.fetchall()
            if heads:
                curs.execute("SELECT count(*) AS n FROM webhook_lines WHERE subscription_id = %s"
                             " AND stream_id = ANY(%s)", (subscription_id, [h["stream_id"] for h in heads]))
                _record_change(curs, subscription_id, "replayed", actor, {
                    "records": sorted(str(h["stream_id"]) for h in heads), "events": curs.fetchone()["n"]})
        return self.get(subscription_id)

    @staticmethod
    def _lock(curs: Any, subscription_id: uuid.UUID) -> str:
        curs.execute("SELECT status FROM webhook_subscriptions WHERE id = %s AND status <> 'deleted' FOR UPDATE",
                     (subscription_id,))
        row = curs.fetchone()
        if row is None:
            raise NotFound(f"no webhook subscription {subscription_id}")
        return row["status"]

    @staticmethod
    def _states(curs: Any, ids: Sequence[uuid.UUID], include_deleted: bool) -> list[dict[str, Any]]:
        if not ids:
            return []
        curs.execute(
            f"SELECT s.*, (SELECT coalesce(max(position), 0) FROM {EVENTS_TABLE}) AS head"  # noqa: S608
            " FROM webhook_subscriptions s WHERE id = ANY(%s)" + ("" if include_deleted else
                                                                    " AND status <> 'deleted'"),
            (list(ids),))
        rows = {row["id"]: row for row in curs.fetchall()}
        curs.execute(
            "SELECT subscription_id, stream_id, array_agg(position ORDER BY position) AS positions,"
            " (array_agg(attempts ORDER BY position))[1] AS attempts,"
            " (array_agg(next_attempt_at ORDER BY position))[1] AS next_attempt_at,"
            " (array_agg(last_error ORDER BY position))[1] AS last_error,"
            " (array_agg(parked_at ORDER BY position))[1] AS parked_at"
            " FROM webhook_lines WHERE subscription_id = ANY(%s) GROUP BY subscription_id, stream_id",
            (list(rows),))
        lines: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for line in curs.fetchall():
            lines.setdefault(line["subscription_id"], []).append(line)
        return [_state(rows[i], lines.get(i, [])) for i in ids if i in rows]


def _state(row: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    def described(line: dict[str, Any]) -> dict[str, Any]:
        positions = line["positions"]
        return {"stream_id": line["stream_id"], "events": len(positions), "positions": positions[:SHOWN_PER_RECORD],
                "attempts": line["attempts"], "last_error": line["last_error"],
                **({"parked_at": line["parked_at"]} if line["parked_at"] is not None
                   else {"next_attempt_at": line["next_attempt_at"]})}

    waiting = sorted((line for line in lines if line["parked_at"] is None), key=lambda line: line["positions"][0])
    parked = sorted((line for line in lines if line["parked_at"] is not None), key=lambda line: line["positions"][0])
    return {
        "id": row["id"],
        "url": row["url"],
        "types": row["types"],
        "stream_types": row["stream_types"],
        "status": row["status"],
        "position": row["position"],
        "head": row["head"],
        "lag": max(0, row["head"] - row["position"]),
        # The record waiting longest decides: its first event's failures so far.
        "attempts": waiting[0]["attempts"] if waiting else 0,
        "last_error": row["last_error"],
        "last_error_at": row["last_error_at"],
        "last_delivered_at": row["last_delivered_at"],
        "waiting": {"events": sum(len(line["positions"]) for line in waiting),
                    "records": [described(line) for line in waiting]},
        "parked": {"events": sum(len(line["positions"]) for line in parked),
                   "records": [described(line) for line in parked]},
        "created_at": row["created_at"],
        "created_by": row["created_by"],
    }

