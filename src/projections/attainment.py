"""Targets as they stand, for attainment: amount after approved revisions, KPI weights, the
results given at closing. Actual net sales come from the partner activity tables
(`partner_orders`, `partner_returns`), joined when attainment is read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.sales_target import SalesTarget
from channel_domain.values import Period, plain_json
from projections.audit import event_id


class TargetAttainment:
    name = "target_attainment"
    weight = 0.1  # its cost per event against the others, measured (rebuilds share read models out by it)
    tables = ("targets",)

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        for notification, event in events:
            source = (notification.id, event_id(notification.originator_id, notification.originator_version))
            if isinstance(event, SalesTarget.Set):  # type: ignore[attr-defined]
                period = Period.parse(event.period)
                cursor.execute(
                    "INSERT INTO targets (target_id, assignee_type, assignee_id, period, starts_on, ends_on, amount,"
                    " kpis, parent_id, status, position, event_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " 'open', %s, %s)",
                    (event.originator_id, event.assignee_type, event.assignee_id, period.text, period.starts_on,
                     period.ends_on, event.amount, json.dumps(plain_json(event.kpis)), event.parent_id, *source),
                )
            elif isinstance(event, SalesTarget.RevisionApproved):  # type: ignore[attr-defined]
                cursor.execute(
                    "UPDATE targets SET amount = %s, position = %s, event_id = %s WHERE target_id = %s",
                    (event.amount, *source, event.originator_id),
                )
            elif isinstance(event, SalesTarget.Closed):  # type: ignore[attr-defined]
                cursor.execute(
                    "UPDATE targets SET status = 'closed', kpi_results = %s, position = %s, event_id = %s"
                    " WHERE target_id = %s",
                    (json.dumps(plain_json(event.kpi_results)), *source, event.originator_id),
                )
