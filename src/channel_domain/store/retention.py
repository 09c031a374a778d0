"""How long per-request records are kept, and trimming what is older (`channel-domain purge`).

Two tables grow with every request rather than with the business: `command_outcomes` (the
answer each `Idempotency-Key` replays) and `keyed_import_lines` (the lines a keyed import cut
short had booked, so that its retry books only the rest). Both exist only to make a repeat of a
request safe, so both are kept for the idempotency window and no longer: a repeat after the
window is a new command. Everything else is kept for ever on purpose: the events and seals are
the record; `personal_data_keys`, `employee_logins`, `selling_gates` and the registries of
contracts in force are what rules read; `api_tokens` says who could act; snapshots and read
models are rebuilt from the log, not trimmed.

The purge is safe beside running servers. Each batch is its own short transaction that skips
rows another transaction has locked; an outcome whose key a command is running with right now
(the session advisory lock of `RecorderWithFences.key_in_flight`) is left for the next purge.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from channel_domain.store.recorder import idempotency_lock_key

RETENTION_VARIABLE = "CHANNEL_DOMAIN_OUTCOME_RETENTION_DAYS"
DEFAULT_WINDOW = timedelta(days=30)
# api.md promises a repeat within 24 hours of the answer its first answer. An outcome's
# `recorded_at` is its transaction's start, a little before the answer; the extra hour is that
# margin, with room for a slow command and a client's clock.
SHORTEST_WINDOW = timedelta(hours=25)
LONGEST_WINDOW = timedelta(days=365 * 100)  # beyond it, dates overflow; nobody needs more
TABLES = ("command_outcomes", "keyed_import_lines")

# The key of `key_in_flight`'s advisory lock, computed in SQL from the row.
_KEY_LOCK = f"pg_try_advisory_xact_lock({idempotency_lock_key('actor', 'idempotency_key')})"


class WindowTooShort(ValueError):
    """A window under 25 hours could drop answers api.md promises to replay for 24."""


def parse_window(text: str) -> timedelta:
    """`30` or `30d` (days), `36h` (hours), `2w` (weeks); at least 25 hours, at most 100 years."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (say 30d, 36h or 2w)")
    amount, unit = float(match.group(1)), match.group(2) or "d"
    hours = amount * {"h": 1, "d": 24, "w": 24 * 7}[unit]
    if hours > LONGEST_WINDOW / timedelta(hours=1):
        raise ValueError(f"a retention window of {text.strip()} is over 100 years")
    window = timedelta(hours=hours)
    if window < SHORTEST_WINDOW:
        raise WindowTooShort(f"a retention window of {text.strip()} is under 25 hours: api.md promises that a "
                             f"repeat within 24 hours replays its first answer")
    return window


def retention_window(environ: Mapping[str, str] = os.environ) -> timedelta:
    """The window configured by `CHANNEL_DOMAIN_OUTCOME_RETENTION_DAYS` (days), 30 by default."""
    configured = environ.get(RETENTION_VARIABLE, "").strip()
    if not configured:
        return DEFAULT_WINDOW
    if not re.fullmatch(r"\d+(?:\.\d+)?", configured):
        raise ValueError(f"{RETENTION_VARIABLE}={configured!r}: give a number of days")
    return parse_window(f"{configured}d")


@dataclass(frozen=True)
class Purge:
    cutoff: Any  # the database's time: rows recorded before it go
    rows: dict[str, int]  # table -> rows older than the cutoff (counted, or deleted)


def count(conn: Any, window: timedelta) -> Purge:
    """What a purge with this window would delete now (`conn` in autocommit)."""
    cutoff = conn.execute("SELECT now() - %s::interval", (window,)).fetchone()[0]
    rows = {table: conn.execute(f"SELECT count(*) FROM {table} WHERE recorded_at < %s",  # noqa: S608
                                (cutoff,)).fetchone()[0] for table in TABLES}
    return Purge(cutoff, rows)


def purge(conn: Any, window: timedelta, batch_size: int = 1000,
          progress: Callable[[str, int], None] = lambda _table, _deleted: None, cutoff: Any = None) -> Purge:
    """Delete what is older than the window, oldest first, `batch_size` rows a transaction
    (`conn` in autocommit). `progress` is told each batch's table and rows deleted; `cutoff`
    (the one a `count` found) makes the purge delete exactly what was counted."""
    if window < SHORTEST_WINDOW:
        raise WindowTooShort(f"a retention window of {window} is under 25 hours")
    if cutoff is None:
        cutoff = conn.execute("SELECT now() - %s::interval", (window,)).fetchone()[0]
    deleted = {table: 0 for table in TABLES}
    for table, step in (("command_outcomes", _outcomes_batch), ("keyed_import_lines", _import_lines_batch)):
        after: tuple[Any, ...] | None = None
        while True:
            with conn.transaction():
                # Never queue behind a command's transaction: its rows are skipped, not waited for.
                conn.execute("SET LOCAL lock_timeout = '1s'")
                done, after = step(conn, cutoff, batch_size, after)
            deleted[table] += done
            progress(table, done)
            if after is None:
                break
    return Purge(cutoff, deleted)


def _outcomes_batch(conn: Any, cutoff: Any, batch_size: int, after: tuple[Any, ...] | None
                    ) -> tuple[int, tuple[Any, ...] | None]:
    # Rows it skips (locked, or their key in flight) stay behind the cursor, so a batch never
    # meets them again and the purge ends; the next purge takes them.
    row = conn.execute(
        "WITH oldest AS MATERIALIZED ("
        "  SELECT actor, idempotency_key, recorded_at FROM command_outcomes"
        "  WHERE recorded_at < %(cutoff)s"
        "  AND (%(after)s::boolean IS NULL OR (recorded_at, actor, idempotency_key)"
        "       > (%(at)s::timestamptz, %(actor)s::text, %(key)s::text))"
        "  ORDER BY recorded_at, actor, idempotency_key LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
        f" free AS MATERIALIZED (SELECT actor, idempotency_key FROM oldest WHERE {_KEY_LOCK}),"
        " gone AS (DELETE FROM command_outcomes o USING free"
        "  WHERE o.actor = free.actor AND o.idempotency_key = free.idempotency_key RETURNING 1)"
        " SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM oldest) AS seen,"
        " (SELECT ARRAY[recorded_at::text, actor, idempotency_key] FROM oldest"
        "  ORDER BY recorded_at DESC, actor DESC, idempotency_key DESC LIMIT 1) AS last",
        {"cutoff": cutoff, "n": batch_size, "after": None if after is None else True,
         "at": after[0] if after else None, "actor": after[1] if after else None, "key": after[2] if after else None},
    ).fetchone()
    deleted, seen, last = row
    return deleted, (tuple(last) if seen == batch_size else None)


def _import_lines_batch(conn: Any, cutoff: Any, batch_size: int, after: tuple[Any, ...] | None
                        ) -> tuple[int, tuple[Any, ...] | None]:
    # No key: rows are told apart by (recorded_at, ctid), stable within the purge since
    # nothing else updates them.
    row = conn.execute(
        "WITH oldest AS MATERIALIZED ("
        "  SELECT ctid AS at, actor, idempotency_key, recorded_at FROM keyed_import_lines"
        "  WHERE recorded_at < %(cutoff)s"
        "  AND (%(after)s::boolean IS NULL OR (recorded_at, ctid) > (%(at)s::timestamptz, %(tid)s::tid))"
        "  ORDER BY recorded_at, ctid LIMIT %(n)s FOR UPDATE SKIP LOCKED),"
        f" free AS MATERIALIZED (SELECT at FROM oldest WHERE {_KEY_LOCK}),"
        " gone AS (DELETE FROM keyed_import_lines k USING free WHERE k.ctid = free.at RETURNING 1)"
        " SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM oldest) AS seen,"
        " (SELECT ARRAY[recorded_at::text, at::text] FROM oldest ORDER BY recorded_at DESC, at DESC LIMIT 1) AS last",
        {"cutoff": cutoff, "n": batch_size, "after": None if after is None else True,
         "at": after[0] if after else None, "tid": after[1] if after else None},
    ).fetchone()
    deleted, seen, last = row
    return deleted, (tuple(last) if seen == batch_size else None)
