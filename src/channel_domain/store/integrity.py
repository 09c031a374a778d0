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

from channel_domain.store.log import SNAPSHOT_FACTS, Snapshot, WritersStillOpen, wait_for_writers

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


def _log_with_seals(datastore: Any, batch: int) -> Iterator[dict[str, Any]]:
    """Events and their seals side by side in position order, read in one snapshot through a
    server-side cursor, with the seals whose event is gone."""
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor(name="integrity") as curs:
        curs.itersize = batch
        curs.execute(
            "SELECT coalesce(e.position, s.position) AS position, e.originator_id, e.originator_version, e.topic,"  # noqa: S608
            " e.state, e.recorded_at, e.effective_on, e.hash, e.prev_hash, s.event_hash, s.chain"
            " FROM events e FULL JOIN event_seals s ON s.position = e.position ORDER BY 1"
        )
        yield from curs


class ExportFailed(RuntimeError):
    """The log could not be read to its end: what was written so far is incomplete."""


class ExportUnsettled(ExportFailed):
    """The end of the export could not be fixed: nothing has been written yet."""


@dataclass(frozen=True)
class ExportBounds:
    head: int  # every position up to here is final: committed, or never to be
    sealed_through: int  # the last seal in the same snapshot


def export(datastore: Any, batch: int = 1000, settle_s: float = 30.0,
           bounds: ExportBounds | None = None) -> Iterator[str]:
    """The whole log as NDJSON in position order, then the latest seal as a checkpoint; one
    string per page of up to `batch` events.

    The end is fixed first (`export_bounds`; a caller that must answer before writing — HTTP —
    fixes it itself and passes it in). Each page is then read in a short transaction of its
    own and handed over only once that transaction has ended, so a reader however slow never
    holds one open (PostgreSQL's `idle_in_transaction_session_timeout` used to end the export
    mid-way). Events and seals are never changed or removed, and every position up to the
    head is final, so the pages read one log, as of the start. A page that cannot be read
    raises: the file stops without its checkpoint line, and the HTTP answer is cut off rather
    than ended cleanly."""
    bounds = bounds or export_bounds(datastore, settle_s)
    head, sealed_through = bounds.head, bounds.sealed_through
    after, last_seal = 0, None
    while after < head:
        rows = _export_page(datastore, after, head, sealed_through, batch)
        if not rows:
            break
        lines = []
        for row in rows:
            if row["chain"] is not None:
                last_seal = row
            lines.append(_export_line(row))
        after = rows[-1]["position"]
        yield "".join(lines)
    checkpoint = (None if last_seal is None else
                  {"through_position": last_seal["position"], "head_hash": bytes(last_seal["chain"]).hex()})
    yield json.dumps({"checkpoint": checkpoint}, separators=(",", ":")) + "\n"


def _export_line(row: dict[str, Any]) -> str:
    return json.dumps({
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


def export_bounds(datastore: Any, settle_s: float = 30.0) -> ExportBounds:
    """The export's end: the highest position visible now, once no running transaction can
    still fill a position below it. Raises `ExportUnsettled` if one that could is still open
    after `settle_s`.

    Only a missing position can still be filled, and only by a transaction of this database
    that was open when the snapshot was taken (`store/log.py` explains why). So:
    - nothing up to the last seal is waited for: the seals are written by a projection whose
      reader (`EventLog`) never passes a position that could still be filled;
    - above it, if no position up to the head is missing, nothing is waited for;
    - else the wait is for the transactions `EventLog`'s fence names, less those seen to
      belong to another database: transaction ids are server-wide, and an idle session
      elsewhere on the server (a DBA's psql) used to hold every export up. A transaction that
      cannot be placed (a view hides it) is waited for, as before."""
    with datastore.get_connection() as conn:
        with conn.transaction(), conn.cursor() as curs:
            curs.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            curs.execute(SNAPSHOT_FACTS)
            facts = curs.fetchone()
            curs.execute(_BOUNDS)
            bounds = curs.fetchone()
        head, sealed = bounds["head"], bounds["sealed"]
        if not bounds["missing"]:
            return ExportBounds(head, sealed)
        try:
            wait_for_writers(conn, Snapshot(facts["xmin"], facts["xmax"], frozenset(facts["xip"])), settle_s)
        except WritersStillOpen as still:
            raise ExportUnsettled(
                f"cannot fix the end of the export: {bounds['missing']} position(s) between "
                f"{bounds['floor'] + 1} and {head} are not in the log, and {still}") from None
    return ExportBounds(head, sealed)


# The positions between the last seal (every position below is final) and the head that are
# not in the log, in one snapshot.
_BOUNDS = """
    SELECT head, sealed, floor,
           head - floor - (SELECT count(*) FROM events WHERE position > floor AND position <= head) AS missing
    FROM (SELECT head, sealed, least(sealed, head) AS floor
          FROM (SELECT (SELECT coalesce(max(position), 0) FROM events) AS head,
                       (SELECT coalesce(max(position), 0) FROM event_seals) AS sealed) AS b) AS f
"""


def _export_page(datastore: Any, after: int, head: int, sealed_through: int, batch: int) -> list[dict[str, Any]]:
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        # Seals past the start's last one are left out: the file's seals stop where its
        # checkpoint says, as if read in one snapshot.
        curs.execute(
            "SELECT e.position, e.originator_id, e.originator_version, e.topic, e.state, e.recorded_at,"
            " e.effective_on, e.hash, e.prev_hash, s.chain"
            " FROM events e LEFT JOIN event_seals s ON s.position = e.position AND s.position <= %s"
            " WHERE e.position > %s AND e.position <= %s ORDER BY e.position LIMIT %s",
            (sealed_through, after, head, batch),
        )
        return curs.fetchall()
