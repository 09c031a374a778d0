"""Decisions operators take about the service itself, recorded in the log like any business
event so that auditors see them beside what they affect.

`ProjectionSkip`: an operator decided that one read model passes over one event it cannot
apply (a poison event). The read model then lacks what that event would have written, so the
decision names who took it, why, and exactly which event — its position, id and type — and
it is never taken automatically (docs/reliability.md).

`ProjectionRetry`: an operator cleared a read model's stopped state, so its workers try the
event again (after a fix). Without it, the only trace of a stop ending would be a log line.

Both are taken from a command line, not through the API, so the actor is what the operator
typed. Each event therefore also holds who really ran it — the database role of the session
(`session_user`), the OS user and the host — which the operator cannot choose
(docs/audit.md, "Operator actions").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.context import current_command
from channel_domain.errors import ValidationFailed
from channel_domain.values import require_text

# Decision ids are derived from (read model, position): one decision per event and read model,
# so a repeated or interrupted `skip` finds the decision already taken instead of taking another.
_SKIP_NAMESPACE = uuid.UUID("6f0c2a52-3a57-4c1e-9d0e-7e1f54c6a1b3")
# A retry clears one stop (read model, position, since when): a repeat after an interruption
# finds it, while a later stop at the same event is another stop, and another retry.
_RETRY_NAMESPACE = uuid.UUID("0b7e5d3c-9a41-4f6e-8c2d-51a3f08e7b94")

OPERATOR_ROLE = "operator"


def skip_decision_id(projection: str, position: int) -> UUID:
    return uuid.uuid5(_SKIP_NAMESPACE, f"{projection}:{position}")


def retry_id(projection: str, position: int, since: datetime) -> UUID:
    return uuid.uuid5(_RETRY_NAMESPACE, f"{projection}:{position}:{since.isoformat()}")


def _operator() -> str:
    """The actor an operator named. Typed by hand, so held to more than "not blank": a name
    padded with spaces, or holding control characters, would look like another operator's in
    a listing while being a different string to `?actor=`."""
    actor = current_command().actor
    if actor != actor.strip() or not actor or any(ord(c) < 32 or ord(c) == 127 for c in actor):
        raise ValidationFailed("actor", "a name without surrounding spaces or control characters")
    return actor


def _require_position(position: int) -> None:
    if not isinstance(position, int) or position < 1:
        raise ValidationFailed("position", "a position in the log (1 or more)")


def _ran_by(session_user: str, os_user: str, host: str) -> dict[str, str]:
    return {"session_user": require_text(session_user, "session_user"), "os_user": require_text(os_user, "os_user"),
            "host": require_text(host, "host")}


class ProjectionSkip(ChannelAggregate):
    record_name = "projection skip"

    @classmethod
    def decide(cls, *, projection: str, position: int, event_id: UUID, event_type: str, reason: str,
               session_user: str, os_user: str, host: str) -> ProjectionSkip:
        _require_position(position)
        return cls(
            projection=require_text(projection, "projection"),
            position=position,
            event_id=event_id,
            event_type=require_text(event_type, "event_type"),
            reason=require_text(reason, "reason"),
            decided_by=_operator(),
            **_ran_by(session_user, os_user, host),
        )

    @staticmethod
    def create_id(projection: str, position: int, **_: Any) -> UUID:
        return skip_decision_id(projection, position)

    # The three "ran by" fields default to None only so that decisions recorded before they
    # existed still load; every new decision has them (`decide`).
    @event("Decided")
    def __init__(self, projection: str, position: int, event_id: UUID, event_type: str, reason: str,
                 decided_by: str, session_user: str | None = None, os_user: str | None = None,
                 host: str | None = None) -> None:
        self.projection = projection
        self.position = position
        self.event_id = event_id
        self.event_type = event_type
        self.reason = reason
        self.decided_by = decided_by
        self.session_user = session_user
        self.os_user = os_user
        self.host = host
        self.status = "decided"


class ProjectionRetry(ChannelAggregate):
    record_name = "projection retry"

    @classmethod
    def order(cls, *, projection: str, position: int, since: datetime, event_id: UUID, event_type: str, error: str,
              reason: str | None, skip_decision: UUID | None, session_user: str, os_user: str,
              host: str) -> ProjectionRetry:
        _require_position(position)
        return cls(
            projection=require_text(projection, "projection"),
            position=position,
            since=since,
            event_id=event_id,
            event_type=require_text(event_type, "event_type"),
            error=error,
            reason=None if reason is None else require_text(reason, "reason"),
            skip_decision=skip_decision,
            ordered_by=_operator(),
            **_ran_by(session_user, os_user, host),
        )

    @staticmethod
    def create_id(projection: str, position: int, since: datetime, **_: Any) -> UUID:
        return retry_id(projection, position, since)

    @event("Ordered")
    def __init__(self, projection: str, position: int, since: datetime, event_id: UUID, event_type: str, error: str,
                 reason: str | None, skip_decision: UUID | None, ordered_by: str, session_user: str, os_user: str,
                 host: str) -> None:
        self.projection = projection
        self.position = position  # the event the read model was stopped at
        self.since = since  # when it stopped there
        self.event_id = event_id
        self.event_type = event_type
        self.error = error
        self.reason = reason
        # A skip of that event decided earlier whose index an interruption left unwritten: the
        # decision is in the log, so the retry completes it rather than contradict it.
        self.skip_decision = skip_decision
        self.ordered_by = ordered_by
        self.session_user = session_user
        self.os_user = os_user
        self.host = host
