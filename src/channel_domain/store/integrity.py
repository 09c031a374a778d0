"""Proof that the history replayed is the history written (docs/audit.md).

Every event carries `hash` = SHA-256(prev_hash ‖ header ‖ state), chained per stream by the
inserting transaction (migration 0011). `event_seals` chains every event hash in global
position order, one row per event, written after the fact by the `audit_seals` projection.

`verify()` recomputes all of it here, in Python, from the stored bytes — never trusting a hash
or a function found in the database — and names the first position where the log and its
proofs disagree. `export()` writes the log as NDJSON with the hashes and the latest seal, so an
auditor can do the same offline with the standard library alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

GENESIS = bytes(32)
HEADER_TAG = "channel-domain/event/v1"


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(prev_hash: bytes, position: int, stream_id: UUID | str, version: int, topic: str,
               recorded_at: str, effective_on: str, state: bytes) -> bytes:
    """`recorded_at` as `utc_text` gives it; `effective_on` as YYYY-MM-DD or empty."""
    header = f"{HEADER_TAG}\n{position}\n{stream_id}\n{version}\n{topic}\n{recorded_at}\n{effective_on}\n"
    return hashlib.sha256(prev_hash + header.encode() + state).digest()


def seal_chain(previous_chain: bytes, position: int, hash_: bytes) -> bytes:
    return hashlib.sha256(previous_chain + position.to_bytes(8, "big") + hash_).digest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    verified_through: int  # the last position whose event and seal both check
    head_hash: str | None  # the seal chain at verified_through, hex
    events: int
    unsealed: int  # events after the last seal: their stream chains check, no seal yet covers them
    first_bad_position: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _day(value: date | None) -> str:
    return value.isoformat() if value is not None else ""


def verify(datastore: Any, progress: Callable[[int], None] = lambda _: None, batch: int = 10_000) -> Verification:
    """Checks every event and every seal in one pass in position order; `progress` is called
    with the position reached every `batch` rows."""
    streams: dict[UUID, tuple[int, bytes]] = {}
    chain, through, events, unsealed = GENESIS, 0, 0, 0
    last_sealed = _last_sealed(datastore)

    def failed(position: int, problem: str) -> Verification:
        return Verification(False, through, chain.hex() if through else None, events, unsealed, position, problem)

    for row in _log_with_seals(datastore, batch):
        position = row["position"]
        if events % batch == 0:
            progress(position)
        if row["hash"] is None:
            return failed(position, "sealed event is missing from the log")
        events += 1
        stream, version = row["originator_id"], row["originator_version"]
        seen_version, previous = streams.get(stream, (0, GENESIS))
        if version != seen_version + 1:
            missing = f"version {seen_version + 1}" if version > seen_version + 1 else f"a repeat of version {version}"
            return failed(position, f"stream {stream} jumps to version {version}: {missing} is missing")
        if bytes(row["prev_hash"]) != previous:
            return failed(position, "prev_hash does not match the hash of the stream's previous event")
        computed = event_hash(previous, position, stream, version, row["topic"], utc_text(row["recorded_at"]),
                              _day(row["effective_on"]), bytes(row["state"]))
        if computed != bytes(row["hash"]):
            return failed(position, "content does not match its hash: the event was altered")
        streams[stream] = (version, computed)
        if row["chain"] is None:
            if position <= last_sealed:
                return failed(position, "event is not covered by the seals around it: it was inserted afterwards")
            unsealed += 1
            continue
        if bytes(row["event_hash"]) != computed:
            return failed(position, "event differs from the one sealed at this position")
        chain = seal_chain(chain, position, computed)
        if chain != bytes(row["chain"]):
            return failed(position, "seal chain broken: the seals were altered")
        through = position
    progress(through)
    return Verification(True, through, chain.hex() if through else None, events, unsealed)


def _last_sealed(datastore: Any) -> int:
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT coalesce(max(position), 0) AS position FROM event_seals")
        return curs.fetchone()["position"]


def _log_with_seals(datastore: Any, batch: int, *, orphan_seals: bool = True) -> Iterator[dict[str, Any]]:
    """Events and their seals side by side in position order, read in one snapshot through a
    server-side cursor; with `orphan_seals`, also seals whose event is gone."""
    join = "FULL JOIN" if orphan_seals else "LEFT JOIN"
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor(name="integrity") as curs:
        curs.itersize = batch
        curs.execute(
            "SELECT coalesce(e.position, s.position) AS position, e.originator_id, e.originator_version, e.topic,"  # noqa: S608
            " e.state, e.recorded_at, e.effective_on, e.hash, e.prev_hash, s.event_hash, s.chain"
            f" FROM events e {join} event_seals s ON s.position = e.position ORDER BY 1"
        )
        yield from curs


def export(datastore: Any, batch: int = 10_000) -> Iterator[str]:
    """The whole log as NDJSON lines in position order, then the latest seal."""
    last: dict[str, Any] | None = None
    for row in _log_with_seals(datastore, batch, orphan_seals=False):
        if row["chain"] is not None:
            last = row
        yield json.dumps({
            "position": row["position"],
            "stream_id": str(row["originator_id"]),
            "version": row["originator_version"],
            "topic": row["topic"],
            "recorded_at": utc_text(row["recorded_at"]),
            "effective_on": row["effective_on"].isoformat() if row["effective_on"] else None,
            "state": base64.b64encode(bytes(row["state"])).decode(),
            "prev_hash": bytes(row["prev_hash"]).hex(),
            "hash": bytes(row["hash"]).hex(),
            "seal": bytes(row["chain"]).hex() if row["chain"] is not None else None,
        }, separators=(",", ":")) + "\n"
    checkpoint = {"through_position": last["position"], "head_hash": bytes(last["chain"]).hex()} if last else None
    yield json.dumps({"checkpoint": checkpoint}, separators=(",", ":")) + "\n"
