"""Partner activity: visits against the grade's monthly minimum, second-tier agents that are
active — those that placed at least one order in the period, not merely signed — and every
order and return, credited to its partner and employee."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from channel_domain.contract import Contract
from channel_domain.partner import Partner
from channel_domain.store.copying import copy_rows
from projections.audit import event_id

_COLUMNS = {
    "partner_directory": ("partner_id", "kind", "grade", "parent_partner_id", "position", "event_id"),
    "contract_directory": ("contract_id", "partner_id", "position", "event_id"),
    "partner_visits": ("position", "event_id", "partner_id", "visited_on", "employee_id"),
    "partner_orders": ("position", "event_id", "partner_id", "contract_id", "order_id", "sold_on", "amount",
                       "employee_id"),
    "partner_returns": ("position", "event_id", "partner_id", "contract_id", "order_id", "returned_on", "amount",
                        "employee_id"),
}


class PartnerActivity:
    name = "partner_activity"
    weight = 0.55  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = tuple(_COLUMNS)  # in the order they are written: directories before what they credit

    def __init__(self) -> None:
        # Each contract's partner never changes once drafted: remembered rather than joined
        # for every order, so a batch is written with one COPY per table.
        self._partner_of: dict[UUID, UUID] = {}

    def reset(self) -> None:
        self._partner_of.clear()

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        rows: dict[str, list[tuple]] = {table: [] for table in self.tables}
        sold: dict[tuple[UUID, str], tuple[UUID, UUID | None]] = {}  # orders of this batch
        for notification, event in events:
            if isinstance(event, Partner.Applied):  # type: ignore[attr-defined]
                rows["partner_directory"].append(
                    (event.originator_id, event.kind, event.grade, event.parent_partner_id, *_source(notification)))
            elif isinstance(event, Partner.Visited):  # type: ignore[attr-defined]
                rows["partner_visits"].append(
                    (*_source(notification), event.originator_id, event.visited_on, event.employee_id))
            elif isinstance(event, Contract.Drafted):  # type: ignore[attr-defined]
                self._partner_of[event.originator_id] = event.partner_id
                rows["contract_directory"].append((event.originator_id, event.partner_id, *_source(notification)))
            elif isinstance(event, Contract.SaleRecorded):  # type: ignore[attr-defined]
                partner = self._partner(cursor, event.originator_id)
                if partner is None:
                    continue  # a contract this model never saw drafted
                sold[(event.originator_id, event.order_id)] = (partner, event.employee_id)
                rows["partner_orders"].append((*_source(notification), partner, event.originator_id, event.order_id,
                                               event.sold_on, event.amount, event.employee_id))
            elif isinstance(event, Contract.ReturnRecorded):  # type: ignore[attr-defined]
                # Credited like the order it returns: same partner, same employee.
                order = sold.get((event.originator_id, event.order_id)) or _order(cursor, event.originator_id,
                                                                                 event.order_id)
                if order is None:
                    continue
                rows["partner_returns"].append((*_source(notification), order[0], event.originator_id,
                                                event.order_id, event.returned_on, event.amount, order[1]))
        for table, written in rows.items():
            copy_rows(cursor, table, _COLUMNS[table], written)

    def _partner(self, cursor: Any, contract_id: UUID) -> UUID | None:
        partner = self._partner_of.get(contract_id)
        if partner is None:
            cursor.execute("SELECT partner_id FROM contract_directory WHERE contract_id = %s", (contract_id,))
            row = cursor.fetchone()
            if row is None:
                return None
            partner = self._partner_of[contract_id] = row["partner_id"]
        return partner


def _source(notification: Notification) -> tuple[int, UUID]:
    return notification.id, event_id(notification.originator_id, notification.originator_version)


def _order(cursor: Any, contract_id: UUID, order_id: str) -> tuple[UUID, UUID | None] | None:
    cursor.execute("SELECT partner_id, employee_id FROM partner_orders WHERE contract_id = %s AND order_id = %s",
                   (contract_id, order_id))
    row = cursor.fetchone()
    return None if row is None else (row["partner_id"], row["employee_id"])
