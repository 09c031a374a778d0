"""`audit_events`: one row per event — who (actor, roles), what (type, data), when (recorded
time, effective date), why (correlation and causation) — for auditors and BI tools."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.aggregate import effective_on, event_data, event_type_of
from channel_domain.aggregate import event_id as event_id_of
from channel_domain.store.copying import copy_rows
from channel_domain.values import json_default, plain_json


# Each projection asks for the ids of the same batch.
event_id = functools.lru_cache(maxsize=1 << 16)(event_id_of)


_COLUMNS = ("position", "event_id", "stream_id", "stream_type", "version", "type", "actor", "roles", "recorded_at",
            "effective_on", "correlation_id", "causation_id", "command_id", "data")


def _json(data: dict[str, Any]) -> str:
    try:
        return json.dumps(data, default=json_default)
    except TypeError:  # keys that are not strings (a UUID, a date)
        return json.dumps(plain_json(data))


class AuditTrail:
    name = "audit_events"
    weight = 1.3  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = ("audit_events",)

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        rows = []
        for notification, event in events:
            stream_type, event_type = event_type_of(notification.topic)
            meta = event.meta
            data = event_data(event)
            rows.append((
                notification.id,
                event_id(notification.originator_id, notification.originator_version),
                notification.originator_id,
                stream_type,
                notification.originator_version,
                event_type,
                meta["actor"],
                meta["roles"],
                event.timestamp,
                effective_on(event),
                meta["correlation_id"],
                meta["causation_id"],
                meta.get("command_id"),
                _json(data),
            ))
        copy_rows(cursor, "audit_events", _COLUMNS, rows)
