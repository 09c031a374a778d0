"""Partner activity: visits against the grade's monthly minimum, second-tier agents that are
active — those that placed at least one order in the period, not merely signed — and every
order and return, credited to its partner and employee."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.contract import Contract
from channel_domain.partner import Partner
from projections.audit import event_id


class PartnerActivity:
    name = "partner_activity"
    tables = ("partner_directory", "contract_directory", "partner_visits", "partner_orders", "partner_returns")

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        for notification, event in events:
            source = (notification.id, event_id(notification.originator_id, notification.originator_version))
            if isinstance(event, Partner.Applied):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO partner_directory (partner_id, kind, grade, parent_partner_id, position, event_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (event.originator_id, event.kind, event.grade, event.parent_partner_id, *source),
                )
            elif isinstance(event, Partner.Visited):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO partner_visits (position, event_id, partner_id, visited_on, employee_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (*source, event.originator_id, event.visited_on, event.employee_id),
                )
            elif isinstance(event, Contract.Drafted):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO contract_directory (contract_id, partner_id, position, event_id)"
                    " VALUES (%s, %s, %s, %s)",
                    (event.originator_id, event.partner_id, *source),
                )
            elif isinstance(event, Contract.SaleRecorded):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO partner_orders"
                    " (position, event_id, partner_id, contract_id, order_id, sold_on, amount, employee_id)"
                    " SELECT %s, %s, partner_id, contract_id, %s, %s, %s, %s"
                    " FROM contract_directory WHERE contract_id = %s",
                    (*source, event.order_id, event.sold_on, event.amount, event.employee_id, event.originator_id),
                )
            elif isinstance(event, Contract.ReturnRecorded):  # type: ignore[attr-defined]
                # Credited like the order it returns: same partner, same employee.
                cursor.execute(
                    "INSERT INTO partner_returns"
                    " (position, event_id, partner_id, contract_id, order_id, returned_on, amount, employee_id)"
                    " SELECT %s, %s, partner_id, contract_id, order_id, %s, %s, employee_id"
                    " FROM partner_orders WHERE contract_id = %s AND order_id = %s",
                    (*source, event.returned_on, event.amount, event.originator_id, event.order_id),
                )
