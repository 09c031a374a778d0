"""Webhook subscriptions: which URL gets which events, the secret their signatures use, where
delivery has got to, and who changed what (api.md, "Events for integration clients").

A subscription is delivery state, not a business fact, so it is kept in tables of its own
(migration 0022), never in the event log: its secret must not reach the immutable, exported
log, and its position moves with every delivery. Every change a person makes is written to
`webhook_changes` (actor, roles, correlation id, time) in the transaction of the change;
that table refuses updates and deletes, as `events` does.

Where a subscription may send is checked when it is created and again at every connection the
delivery makes (`UrlPolicy`; `webhooks.VettingBackend` connects to the very addresses it
vetted): an API client must not be able to make the server call its own network.

A subscription belongs to the integration actor that created it: another integration actor
neither sees nor manages it (it is "not found" to them, so its existence is not revealed);
auditors read all of them.
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import json
import logging
import os
import secrets
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from channel_domain.errors import DomainError, IdempotencyKeyReused, NotFound, refusal
from channel_domain.store.log import settled_head
from channel_domain.store.recorder import EVENTS_TABLE

logger = logging.getLogger(__name__)

ALLOWED_HOSTS_VARIABLE = "CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS"
PUBLIC = "public"  # in the allowed hosts: any host whose every address is a public one
MAX_ATTEMPTS = 8  # failures of a record's first waiting event before the record is parked
SHOWN_PER_RECORD = 100  # positions listed per waiting or parked record in a status
SHOWN_RECORDS = 100  # waiting (and parked) records listed in a status, oldest first; `records_total` counts all
# NAT64 prefixes (RFC 6052, RFC 8215): an address in them is the IPv4 address in its last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # the embedded address's place varies: never public


class WebhookUrlNotAllowed(DomainError):
    code = "webhook_url_not_allowed"


def embedded_ipv4(address: Any) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, where it embeds one a packet reaches: mapped
    (::ffff:0:0/96), 6to4 (2002::/16) and NAT64 (64:ff9b::/96). `2002:7f00:1::` is 127.0.0.1."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public_address(address: Any) -> bool:
    """Reachable on the public internet, and only there: not loopback, private, link-local,
    multicast, reserved or unspecified — judged by the IPv4 address an IPv6 form embeds."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return is_public_address(embedded)
    if address.version == 6 and address in _LOCAL_NAT64:
        return False
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs a subscription may name: `http`/`https` only, to a host matching one of
    `patterns` (shell-style, `*.example.com`), or — for the pattern `public` — any host whose
    every address is public (`is_public_address`).

    Unset, the policy is `public`: an API client cannot make the server call localhost, the
    cloud metadata service (169.254.169.254) or anything on the private network. An operator
    who lists a host trusts it, whatever its addresses (tests list 127.0.0.1).

    A refusal names its reason, never an address the host resolved to: the answer goes to an
    API client, who must not learn the internal DNS from it (the addresses are logged)."""

    patterns: tuple[str, ...] = (PUBLIC,)
    resolve: Any = field(default=socket.getaddrinfo, compare=False, repr=False)
    public: Any = field(default=is_public_address, compare=False, repr=False)  # tests widen it

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
        self.addresses_to_connect(host, parts.port or (443 if parts.scheme == "https" else 80))

    def addresses_to_connect(self, host: str, port: int) -> list[str] | None:
        """Where a connection to `host` may go: None for a listed host (trusted: connect by its
        name), else the addresses it resolves to, every one of them public — the caller
        connects to these, not to a second resolution that could answer otherwise (DNS
        rebinding). Refuses (`WebhookUrlNotAllowed`) a host that is neither."""
        host = host.lower().strip("[]")
        if any(pattern != PUBLIC and fnmatch.fnmatchcase(host, pattern) for pattern in self.patterns):
            return None
        if PUBLIC not in self.patterns:
            raise WebhookUrlNotAllowed(f"host {host} is not among the allowed hosts ({ALLOWED_HOSTS_VARIABLE})",
                                       reason="host")
        addresses = self._addresses(host, port)
        refused = sorted(str(a) for a in addresses if not self.public(a))
        if not addresses or refused:
            # One reason for both: telling "does not resolve" from "resolves inside" would let a
            # client map internal names.
            logger.warning("webhook host %s refused: %s", host,
                           f"non-public address(es) {', '.join(refused)}" if refused else "it does not resolve")
            raise WebhookUrlNotAllowed(f"host {host} does not resolve to public addresses only; an operator may list"
                                       f" it in {ALLOWED_HOSTS_VARIABLE}", reason="address")
        return [str(a) for a in addresses]

    def _addresses(self, host: str, port: int) -> list[Any]:
        try:
            found = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in self.resolve(host, port)]
        except (OSError, UnicodeError, ValueError):
            return []
        return list(dict.fromkeys(found))  # getaddrinfo's order (its preference), once each


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
    """The subscriptions of one database (`recorder`: the department's event recorder).

    `owner` scopes every call to the subscriptions one actor created (None: all of them, for
    auditors); another's subscription is `NotFound`, as one that does not exist."""

    def __init__(self, recorder: Any, policy: UrlPolicy | None = None) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore
        self.policy = policy or UrlPolicy.from_environment()

    def create(self, actor: Actor, url: str, types: Sequence[str] = (), stream_types: Sequence[str] = (),
               from_position: int | None = None, idempotency_key: str | None = None) -> Created:
        """A new active subscription delivering the events after `from_position` (default:
        the settled head, so only new events — and every one of them, a late commit below the
        head included). With an `idempotency_key`, a repeat by the same actor with the same
        request answers the first subscription — without its secret, which is shown once —
        and the same key with another request is refused. Raises `WritersStillOpen` when the
        head does not settle in time."""
        fingerprint = json.dumps([url, sorted(types), sorted(stream_types), from_position])
        if idempotency_key is not None:
            earlier = self._created_with(actor.name, idempotency_key, fingerprint)
            if earlier is not None:
                return Created(earlier, None, True)
        self.policy.check(url)
        # Not max(position): a writer that drew a lower position may still commit, and a start
        # above it would never deliver that event.
        start = settled_head(self.recorder) if from_position is None else from_position
        subscription_id = uuid.uuid4()
        secret = new_secret()
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            head = _head(curs)
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
        return Created(self.get(subscription_id, actor.name), secret, False)

    def _created_with(self, actor: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT id, request_fingerprint FROM webhook_subscriptions"
                         " WHERE created_by = %s AND idempotency_key = %s", (actor, key))
            row = curs.fetchone()
        if row is None:
            return None
        if row["request_fingerprint"] != fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another request")
        return self.get(row["id"], actor, include_deleted=True)

    def get(self, subscription_id: uuid.UUID, owner: str | None, *, include_deleted: bool = False) -> dict[str, Any]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            found = self._states(curs, [subscription_id], include_deleted)
        if not found or (owner is not None and found[0]["created_by"] != owner):
            raise NotFound(f"no webhook subscription {subscription_id}")
        return found[0]

    def list(self, after: uuid.UUID | None, limit: int, owner: str | None) -> tuple[list[dict[str, Any]],
                                                                                    uuid.UUID | None]:
        """A page in id order, and the cursor of the next page (None on the last)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT id FROM webhook_subscriptions WHERE status <> 'deleted' AND id > %s"
                         " AND (%s::text IS NULL OR created_by = %s) ORDER BY id LIMIT %s",
                         (after or uuid.UUID(int=0), owner, owner, limit + 1))
            ids = [row["id"] for row in curs.fetchall()]
            page = self._states(curs, ids[:limit], False)
        return page, (ids[limit - 1] if len(ids) > limit else None)

    def changes(self, subscription_id: uuid.UUID, owner: str | None) -> list[dict[str, Any]]:
        self.get(subscription_id, owner, include_deleted=True)
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
            was = self._lock(curs, subscription_id, actor.name)
            if was != status:  # pausing a paused subscription changes nothing, and records nothing
                curs.execute("UPDATE webhook_subscriptions SET status = %s WHERE id = %s", (status, subscription_id))
                _record_change(curs, subscription_id, "paused" if status == "paused" else "resumed", actor)
        return self.get(subscription_id, actor.name)

    def delete(self, subscription_id: uuid.UUID, actor: Actor) -> None:
        """Stops delivery for good and forgets the secret and the waiting lines; the row and
        its change log stay for auditors."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock(curs, subscription_id, actor.name)
            curs.execute("UPDATE webhook_subscriptions SET status = 'deleted', secret = NULL WHERE id = %s",
                         (subscription_id,))
            curs.execute("DELETE FROM webhook_lines WHERE subscription_id = %s", (subscription_id,))
            _record_change(curs, subscription_id, "deleted", actor, {"dropped_waiting_events": curs.rowcount})

    def replay_parked(self, subscription_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
        """Every parked record's events are tried again at once, in order, with their
        attempts counted afresh. Recorded only when something was parked.

        A delivery whose failure was being counted while this commits cannot undo it: the
        worker records a failure only on a line still as it read it (its attempts unchanged,
        not parked), so the replay wins."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._lock(curs, subscription_id, actor.name)
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
        return self.get(subscription_id, actor.name)

    @staticmethod
    def _lock(curs: Any, subscription_id: uuid.UUID, owner: str) -> str:
        curs.execute("SELECT status FROM webhook_subscriptions WHERE id = %s AND status <> 'deleted'"
                     " AND created_by = %s FOR UPDATE", (subscription_id, owner))
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
            " (array_agg(last_error_at ORDER BY position))[1] AS last_error_at,"
            " (array_agg(parked_at ORDER BY position))[1] AS parked_at"
            " FROM webhook_lines WHERE subscription_id = ANY(%s) GROUP BY subscription_id, stream_id",
            (list(rows),))
        lines: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for line in curs.fetchall():
            lines.setdefault(line["subscription_id"], []).append(line)
        return [_state(rows[i], lines.get(i, [])) for i in ids if i in rows]


def _state(row: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """A subscription's status as api.md defines it. The stored `position` is the reader's
    checkpoint (every event up to it delivered, filtered out or in a record's line); the
    answered `position` stops below the oldest event still in a line, so `lag` counts every
    event not yet delivered, and `attempts`/`last_error` are that event's."""

    def described(line: dict[str, Any]) -> dict[str, Any]:
        positions = line["positions"]
        return {"stream_id": line["stream_id"], "events": len(positions), "positions": positions[:SHOWN_PER_RECORD],
                "attempts": line["attempts"], "last_error": line["last_error"],
                **({"parked_at": line["parked_at"]} if line["parked_at"] is not None
                   else {"next_attempt_at": line["next_attempt_at"]})}

    by_age = sorted(lines, key=lambda line: line["positions"][0])
    waiting = [line for line in by_age if line["parked_at"] is None]
    parked = [line for line in by_age if line["parked_at"] is not None]
    oldest = by_age[0] if by_age else None
    position = row["position"] if oldest is None else min(row["position"], oldest["positions"][0] - 1)
    return {
        "id": row["id"],
        "url": row["url"],
        "types": row["types"],
        "stream_types": row["stream_types"],
        "status": row["status"],
        "position": position,
        "head": row["head"],
        "lag": max(0, row["head"] - position),
        "attempts": oldest["attempts"] if oldest else 0,
        "last_error": oldest["last_error"] if oldest else None,
        "last_error_at": oldest["last_error_at"] if oldest else None,
        "last_delivered_at": row["last_delivered_at"],
        # Bounded: a receiver down for a day leaves tens of thousands of records waiting, and
        # the status is what a client polls to diagnose it.
        "waiting": {"events": sum(len(line["positions"]) for line in waiting), "records_total": len(waiting),
                    "records": [described(line) for line in waiting[:SHOWN_RECORDS]]},
        "parked": {"events": sum(len(line["positions"]) for line in parked), "records_total": len(parked),
                   "records": [described(line) for line in parked[:SHOWN_RECORDS]]},
        "created_at": row["created_at"],
        "created_by": row["created_by"],
    }


@dataclass(frozen=True)
class DeliveryFigures:
    """Every subscription's delivery, in totals (/metrics): subscriptions are made by clients,
    as many as they like, so a label per subscription could grow a scrape without bound;
    `GET /v1/webhooks/{id}` has each one's figures."""

    active: int
    paused: int
    waiting_events: int  # in lines not parked: being sent or waiting for a retry
    parked_events: int
    max_lag: int  # events the furthest-behind active subscription has not delivered (api.md's lag)


def delivery_figures(conn: Any) -> DeliveryFigures:
    """One statement of index probes and an index-only count: no aggregation of the lines."""
    with conn.cursor(row_factory=dict_row) as curs:
        curs.execute(
            "SELECT (SELECT count(*) FROM webhook_subscriptions WHERE status = 'active') AS active,"
            " (SELECT count(*) FROM webhook_subscriptions WHERE status = 'paused') AS paused,"
            " (SELECT count(*) FROM webhook_lines) AS undelivered,"
            " (SELECT coalesce(sum((SELECT count(*) FROM webhook_lines line WHERE line.subscription_id"
            "  = first.subscription_id AND line.stream_id = first.stream_id)), 0) FROM webhook_lines first"
            "  WHERE first.parked_at IS NOT NULL) AS parked,"
            f" (SELECT coalesce(max(position), 0) FROM {EVENTS_TABLE}) AS head,"  # noqa: S608 - a constant
            " (SELECT min(least(s.position, coalesce((SELECT min(line.position) - 1 FROM webhook_lines line"
            "  WHERE line.subscription_id = s.id), s.position))) FROM webhook_subscriptions s"
            "  WHERE s.status = 'active') AS furthest_behind")
        row = curs.fetchone()
    behind = row["furthest_behind"]
    return DeliveryFigures(row["active"], row["paused"], row["undelivered"] - row["parked"], row["parked"],
                           0 if behind is None else max(0, row["head"] - behind))
