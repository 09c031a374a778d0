"""Decisions operators take about the service itself, recorded in the log like any business
event so that auditors see them beside what they affect.

`ProjectionSkip`: an operator decided that one read model passes over one event it cannot
apply (a poison event). The read model then lacks what that event would have written, so the
decision names who took it, why, and exactly which event — its position, id and type — and
it is never taken automatically (docs/reliability.md).
"""

from __future__ import annotations

import uuid
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


def skip_decision_id(projection: str, position: int) -> UUID:
    return uuid.uuid5(_SKIP_NAMESPACE, f"{projection}:{position}")


class ProjectionSkip(ChannelAggregate):
    record_name = "projection skip"

    @classmethod
    def decide(cls, *, projection: str, position: int, event_id: UUID, event_type: str, reason: str) -> ProjectionSkip:
        if not isinstance(position, int) or position < 1:
            raise ValidationFailed("position", "a position in the log (1 or more)")
        return cls(
            projection=require_text(projection, "projection"),
            position=position,
            event_id=event_id,
            event_type=require_text(event_type, "event_type"),
            reason=require_text(reason, "reason"),
            decided_by=current_command().actor,
        )

    @staticmethod
    def create_id(projection: str, position: int, **_: Any) -> UUID:
        return skip_decision_id(projection, position)

    @event("Decided")
    def __init__(self, projection: str, position: int, event_id: UUID, event_type: str, reason: str,
                 decided_by: str) -> None:
        self.projection = projection
        self.position = position
        self.event_id = event_id
        self.event_type = event_type
        self.reason = reason
        self.decided_by = decided_by
        self.status = "decided"
