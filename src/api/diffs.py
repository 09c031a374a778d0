"""Diffs for auditors (api.md, "Proof for auditors"): a record between two versions or times,
and a statement between two "as known at" times, each change with the events that made it.

The HTTP routes (`routes/diffs.py`) and the auditor workspace (`workspace/`) both answer from
here, so a diff reads the same in JSON and on the page.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from api.errors import ApiProblem
from api.tokens import Principal
from api.views import record_view
from channel_domain.aggregate import ChannelAggregate
from channel_domain.application import ChannelDepartment, HistoryEntry
from channel_domain.errors import NotFound
from channel_domain.values import plain_json
from projections.commissions import statement

# A field changed by more events than this lists the first ones and counts them all (a
# contract's `gross_sales` over a year of sales): the answer stays small.
EVENTS_LISTED = 1000
MAX_VERSION = 2**62

_VERSION = re.compile(r"[0-9]{1,19}")
# RFC 3339 §5.6 date-time: a date, T, a time, an offset (Z or ±hh:mm). Nothing else is a time.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NO_OFFSET = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")
_SPACE_FOR_PLUS = re.compile(r".*[0-9] [0-9]{2}:[0-9]{2}")


def moment(name: str, text: str) -> int | datetime:
    """`from` / `to` of a record diff: a version (decimal digits only) or an RFC 3339 time with
    its offset. What could be read either way, or as a time in an unknown zone, is refused
    (422 `ambiguous_moment`) rather than guessed: a date alone (which zone's midnight?), a
    time without offset (UTC or Beijing?), eight digits that spell a date (20260301: version
    20 260 301, or ISO 8601's basic date?)."""
    text = text.strip()
    if _VERSION.fullmatch(text):
        if len(text) == 8 and _is_basic_date(text):
            raise ApiProblem(422, "ambiguous_moment",
                             f"{name}={text} reads as a version and as a date (YYYYMMDD): give the version"
                             " with a leading zero, or the time as RFC 3339 with its offset")
        version = int(text)
        if version > MAX_VERSION:
            raise ApiProblem(422, "validation_error", f"{name}: a version is at most {MAX_VERSION}")
        return version
    if _TIME.fullmatch(text):
        try:
            return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        except ValueError:
            raise ApiProblem(422, "validation_error", f"{name}={text} is no valid time") from None
    if _DATE_ONLY.fullmatch(text) or _NO_OFFSET.fullmatch(text):
        raise ApiProblem(422, "ambiguous_moment",
                         f"{name}={text} names no single moment: give a time with its offset,"
                         " e.g. 2026-03-01T00:00:00+08:00 (send + as %2B), or a version number")
    if _SPACE_FOR_PLUS.match(text):
        raise ApiProblem(422, "ambiguous_moment",
                         f"{name}={text}: a '+' of an offset arrives as a space unless sent as %2B")
    raise ApiProblem(422, "validation_error",
                     f"{name}={text}: a version (digits) or an RFC 3339 time with offset, e.g. 2026-03-01T00:00:00Z")


def _is_basic_date(text: str) -> bool:
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return 1900 <= int(text[:4]) <= 2999


def _version_at(app: ChannelDepartment, record_id: UUID, given: int | datetime, latest: int,
                noun: str, name: str) -> int:
    if isinstance(given, int):
        if given > latest:
            raise NotFound(f"{noun} {record_id} has no version {given} (its latest is {latest})")
        return given
    # Before the record's first event: version 0, the record not yet there.
    return app.event_recorder.version_as_of(record_id, given) or 0


def event_ref(entry: HistoryEntry) -> dict[str, Any]:
    """An event as a diff names it: where, what, who, when, and the request it belongs to."""
    return {"position": entry.position, "version": entry.version, "type": entry.type, "actor": entry.actor,
            "recorded_at": entry.recorded_at, "correlation_id": entry.correlation_id}


def _state(app: ChannelDepartment, record: ChannelAggregate | None, viewer: Principal) -> dict[str, Any]:
    if record is None:
        return {}
    state = record_view(app, record, viewer)  # the record read's own rules: personal fields for hr only
    state.pop("id", None)
    state.pop("version", None)
    return state


def record_diff(app: ChannelDepartment, record_type: type[ChannelAggregate], record_id: UUID, noun: str,
                from_: int | datetime, to: int | datetime, viewer: Principal) -> dict[str, Any]:
    """The fields that differ between the record at `from_` and at `to`, each with its old and
    new value and the events between them that changed it. The record is stepped through those
    events and looked at as the record read shows it to `viewer` after each: a diff can show
    nothing a read of either version would not (an employee's personal fields only to hr, and
    to nobody once erased), and an event counts for a field only if the field's value moved."""
    # 404 for no such record, or one of another kind: told by its first event, not by loading it.
    if not app.history(record_id, 0, 1)[0].type.startswith(f"{record_type.__name__}."):
        raise NotFound(f"no {noun} {record_id}")
    latest = app.event_recorder.latest_version(record_id) or 0
    first = _version_at(app, record_id, from_, latest, noun, "from")
    last = _version_at(app, record_id, to, latest, noun, "to")
    if first > last:
        raise ApiProblem(422, "validation_error", f"from (version {first}) is after to (version {last})")
    start, steps = app.replay(record_type, record_id, first, last)
    before = _state(app, start, viewer)
    seen = dict(before)
    touched: dict[str, list[dict[str, Any]]] = {}
    counted: dict[str, int] = {}
    between = 0
    for entry, record in steps:
        between += 1
        now = _state(app, record, viewer)
        for field in seen.keys() | now.keys():
            if seen.get(field) != now.get(field):
                counted[field] = counted.get(field, 0) + 1
                listed = touched.setdefault(field, [])
                if len(listed) < EVENTS_LISTED:
                    listed.append(event_ref(entry))
        seen = now
    after = seen
    changes = [
        {"field": field, "old": before.get(field), "new": after.get(field), "events": touched.get(field, []),
         "events_total": counted.get(field, 0)}
        for field in sorted(before.keys() | after.keys())
        if before.get(field) != after.get(field)
    ]
    return plain_json({
        "id": record_id,
        "from": {"given": _given(from_), "version": first},
        "to": {"given": _given(to), "version": last},
        "events_between": between,
        "changes": changes,
    })


def _given(value: int | datetime) -> Any:
    return value if isinstance(value, int) else plain_json(value)


# --- statements ---------------------------------------------------------------------------

FIGURES = ("gross_sales", "returns", "net_sales", "commission", "adjustments", "adjusted_sales", "carried_in",
           "total_due", "carried_out", "fees", "remittance_due", "remitted", "remittance_outstanding",
           "payout_status", "payout_amount", "housing_subsidy", "period_status")

_LINE_COLUMNS = ("position", "line_no", "event_id", "contract_id", "order_id", "kind", "business_date", "amount",
                 "rate", "commission", "corrects_period", "moved_kind", "dispute_id", "recorded_at")


def statement_diff(curs: Any, partner_id: UUID, period: str, from_: datetime, to: datetime) -> dict[str, Any]:
    """What a statement gained between two "as known at" times. A ledger only adds lines (a
    correction is a line of its own), so the difference is the lines recorded after `from_` up
    to `to`, each with the event that wrote it; and the figures as known at each time. Reads
    the commission and audit read models."""
    if from_ > to:
        raise ApiProblem(422, "validation_error", "from is after to")
    before = statement(curs, partner_id, period, from_, with_lines=False)
    after = statement(curs, partner_id, period, to, with_lines=False)
    if after is None:
        raise NotFound(f"no partner {partner_id} in the commission read model")
    curs.execute(
        "SELECT " + ", ".join(f"l.{column}" for column in _LINE_COLUMNS) + ","
        " a.type, a.actor, a.correlation_id, a.stream_id, a.recorded_at AS event_recorded_at"
        " FROM commission_lines l LEFT JOIN audit_events a ON a.position = l.position"
        " WHERE l.partner_id = %(partner)s AND l.period = %(period)s"
        " AND l.recorded_at > %(from)s AND l.recorded_at <= %(to)s ORDER BY l.position, l.line_no",
        {"partner": partner_id, "period": period, "from": from_, "to": to},
    )
    lines = []
    for row in curs.fetchall():
        line = {column: row[column] for column in _LINE_COLUMNS}
        line["event"] = None if row["type"] is None else {
            "position": row["position"], "type": row["type"], "actor": row["actor"], "stream_id": row["stream_id"],
            "recorded_at": row["event_recorded_at"], "correlation_id": row["correlation_id"]}
        lines.append(line)
    figures_before = {name: (before or {}).get(name) for name in FIGURES}
    figures_after = {name: after.get(name) for name in FIGURES}
    changed = [{"figure": name, "old": figures_before[name], "new": figures_after[name]}
               for name in FIGURES if figures_before[name] != figures_after[name]]
    disputes_before = {d["dispute_id"]: d for d in (before or {}).get("disputes", [])}
    disputes = [d for d in after["disputes"] if disputes_before.get(d["dispute_id"]) != d]
    return plain_json({
        "partner_id": partner_id, "period": period, "from": from_, "to": to,
        "before": figures_before, "after": figures_after, "changed": changed,
        "lines": lines, "disputes": disputes,
    })
