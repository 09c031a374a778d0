"""Targets as they stand, for attainment: amount after approved revisions, KPI weights and goals,
the results entered at closing (proposed until someone else confirms them). Actual net sales
come from the partner activity tables (`partner_orders`, `partner_returns`), joined when
attainment is read; what the other computed KPIs count is kept here: partners recruited by an
employee and when they were approved (`target_recruitments`), trainings with their trainer
(`target_trainings`), and who reported to whom from which day (`target_reporting_lines`), for
teams."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.company_time import local_date
from channel_domain.employee import Employee
from channel_domain.partner import Partner
from channel_domain.sales_target import SalesTarget
from channel_domain.values import Period, plain_json
from projections.audit import event_id
from projections.handled import Handles

# Every class the chain in `apply` matches.
_HANDLES = Handles((SalesTarget.Set, SalesTarget.RevisionApproved, SalesTarget.ResultsEntered,  # type: ignore[attr-defined]
                    SalesTarget.Closed, Employee.Hired, Employee.Transferred, Partner.Applied,  # type: ignore[attr-defined]
                    Partner.Reviewed, Partner.TrainingRecorded))  # type: ignore[attr-defined]


class TargetAttainment:
    name = "target_attainment"
    weight = 0.05  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = ("targets", "target_recruitments", "target_trainings", "target_reporting_lines")

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        for notification, event in events:
            if not _HANDLES(event):
                continue
            source = (notification.id, event_id(notification.originator_id, notification.originator_version))
            if isinstance(event, SalesTarget.Set):  # type: ignore[attr-defined]
                period = Period.parse(event.period)
                cursor.execute(
                    "INSERT INTO targets (target_id, assignee_type, assignee_id, period, starts_on, ends_on, amount,"
                    " kpis, kpi_goals, parent_id, status, position, event_id) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                    " %s, %s, %s, 'open', %s, %s)",
                    (event.originator_id, event.assignee_type, event.assignee_id, period.text, period.starts_on,
                     period.ends_on, event.amount, json.dumps(plain_json(event.kpis)),
                     json.dumps(plain_json(getattr(event, "kpi_goals", None) or {})), event.parent_id, *source),
                )
            elif isinstance(event, SalesTarget.RevisionApproved):  # type: ignore[attr-defined]
                cursor.execute(
                    "UPDATE targets SET amount = %s, position = %s, event_id = %s WHERE target_id = %s",
                    (event.amount, *source, event.originator_id),
                )
            elif isinstance(event, SalesTarget.ResultsEntered):  # type: ignore[attr-defined]
                cursor.execute(
                    "UPDATE targets SET status = 'closing', kpi_results = %s, results_entered_by = %s,"
                    " position = %s, event_id = %s WHERE target_id = %s",
                    (json.dumps(plain_json(event.kpi_results)), event.entered_by, *source, event.originator_id),
                )
            elif isinstance(event, SalesTarget.Closed):  # type: ignore[attr-defined]
                cursor.execute(
                    "UPDATE targets SET status = 'closed', kpi_results = %s, position = %s, event_id = %s"
                    " WHERE target_id = %s",
                    (json.dumps(plain_json(event.kpi_results)), *source, event.originator_id),
                )
            elif isinstance(event, Employee.Hired):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO target_reporting_lines (employee_id, from_on, manager_id, position, event_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (event.originator_id, event.hired_on, event.manager_id, *source),
                )
            elif isinstance(event, Employee.Transferred):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO target_reporting_lines (employee_id, from_on, manager_id, position, event_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (event.originator_id, event.on, event.manager_id, *source),
                )
            elif isinstance(event, Partner.Applied):  # type: ignore[attr-defined]
                if event.recruited_by is not None:
                    cursor.execute(
                        "INSERT INTO target_recruitments (partner_id, recruited_by, position, event_id)"
                        " VALUES (%s, %s, %s, %s)",
                        (event.originator_id, event.recruited_by, *source),
                    )
            elif isinstance(event, Partner.Reviewed):  # type: ignore[attr-defined]
                if event.decision == "approve":
                    cursor.execute(
                        "UPDATE target_recruitments SET approved_on = %s, position = %s, event_id = %s"
                        " WHERE partner_id = %s",
                        (local_date(event.timestamp), *source, event.originator_id),
                    )
            elif isinstance(event, Partner.TrainingRecorded):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO target_trainings (position, event_id, partner_id, training_id, held_on, trainer_id,"
                    " attendees, passed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (*source, event.originator_id, event.training_id, event.held_on, event.trainer_id,
                     event.attendees, event.passed),
                )
