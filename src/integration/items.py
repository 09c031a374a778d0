"""The feed item: the one form in which an event leaves the service for integration clients —
the feed, its Server-Sent Events, webhook bodies and NATS messages all carry exactly this.

Personal data never leaves in plaintext, nor as ciphertext: an employee's personal fields
(`PERSONAL_FIELDS`) are replaced by the marker `"redacted"`, or `"erased"` once the person's
key has been destroyed (PIPL erasure), whatever the event held. A field that was empty stays
`null`: there is nothing to hide. The marker reflects the moment the item is made, so an event
delivered again after an erasure says `"erased"` where it said `"redacted"` before.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from channel_domain.aggregate import effective_on, event_data, event_id, event_type_of
from channel_domain.employee import PERSONAL_FIELDS, Employee
from channel_domain.operations import ProjectionRetry, ProjectionSkip
from channel_domain.values import plain_json

REDACTED = "redacted"
ERASED = "erased"
# Only an employee's fields are a person's: a partner's `name` is a company's.
PERSONAL_STREAM_TYPE = Employee.__name__

# The service's own operations (an operator skipping or retrying a read model's event) are in
# the log for auditors, who read them at /v1/audit/*; they name the operator's machine and
# quote error texts, and are nothing an integration client acts on. No channel carries them.
OPERATIONAL_STREAM_TYPES = frozenset({ProjectionSkip.__name__, ProjectionRetry.__name__})


def for_integration_clients(notification: Notification) -> bool:
    return event_type_of(notification.topic)[0] not in OPERATIONAL_STREAM_TYPES


@dataclass(frozen=True)
class EventFilter:
    """Which events a client asked for; empty means all (of those integration clients get:
    never the operational ones). Decided from the stored topic and record id alone, so
    filtering never decodes an event it drops."""

    types: frozenset[str] = frozenset()  # e.g. "Partner.Registered"
    stream_types: frozenset[str] = frozenset()  # e.g. "Partner"
    stream_id: UUID | None = None

    @classmethod
    def of(cls, types: Collection[str] = (), stream_types: Collection[str] = (),
           stream_id: UUID | None = None) -> EventFilter:
        return cls(frozenset(types), frozenset(stream_types), stream_id)

    def __call__(self, notification: Notification) -> bool:
        if self.stream_id is not None and notification.originator_id != self.stream_id:
            return False
        stream_type, type_ = event_type_of(notification.topic)
        if stream_type in OPERATIONAL_STREAM_TYPES:
            return False
        return (not self.types or type_ in self.types) and (not self.stream_types or stream_type in self.stream_types)


def feed_items(app: Any, notifications: Sequence[Notification]) -> list[dict[str, Any]]:
    """The feed items of `notifications`, in their order. `app` is the `ChannelDepartment`
    (its mapper decodes, upcasting old versions; its datastore knows whose key is erased).
    Costs one query per call, and only when an event carries personal fields."""
    events = [app.mapper.to_domain_event(notification) for notification in notifications]
    with_personal = {n.originator_id for n, e in zip(notifications, events, strict=True)
                     if _carries_personal_data(n) and PERSONAL_FIELDS & vars(e).keys()}
    erased = _erased(app.event_recorder.datastore, with_personal) if with_personal else set()
    return [_item(n, e, n.originator_id in erased) for n, e in zip(notifications, events, strict=True)]


def _item(notification: Notification, event: Any, erased: bool) -> dict[str, Any]:
    stream_type, type_ = event_type_of(notification.topic)
    meta = event.meta
    data = event_data(event)
    if stream_type == PERSONAL_STREAM_TYPE:
        for name in PERSONAL_FIELDS & data.keys():
            if data[name] is not None:
                data[name] = ERASED if erased else REDACTED
    return plain_json({
        "position": notification.id,
        "event_id": event_id(notification.originator_id, notification.originator_version),
        "stream_id": notification.originator_id,
        "stream_type": stream_type,
        "version": notification.originator_version,
        "type": type_,
        "recorded_at": event.timestamp,
        "effective_on": effective_on(event),
        "actor": meta["actor"],
        "correlation_id": meta["correlation_id"],
        "causation_id": meta["causation_id"],
        "data": data,
    })


def _carries_personal_data(notification: Notification) -> bool:
    return event_type_of(notification.topic)[0] == PERSONAL_STREAM_TYPE


def _erased(datastore: Any, subject_ids: set[UUID]) -> set[UUID]:
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute("SELECT subject_id FROM personal_data_keys WHERE subject_id = ANY(%s) AND key IS NULL",
                     (list(subject_ids),), prepare=True)
        return {row["subject_id"] for row in curs.fetchall()}
