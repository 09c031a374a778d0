"""Record lists: every partner, contract, employee and target as it stands, one row each, for
`GET /v1/partners`, `/v1/contracts`, `/v1/employees` and `/v1/targets` — served from here,
never by loading aggregates.

Each row follows its record's events: the fields a list shows and filters on, the record's
`version` after its last event (the version `GET /v1/{record}/{id}` answers), when and at which
position its first event was recorded (the lists' order: a record never moves in it) and its
last (`updated_at`, `position`, `event_id`). Each event type changes what the aggregate's own
event method changes, and nothing else; every event moves the version.

A batch is written with one statement per table: the rows it touches are read once, brought
up to date in memory event by event, and upserted together, so a contract with a thousand
sales in a batch is written once. Nothing is kept between batches.

No personal data in clear: an employee's name stays sealed (`pii:v1:…`) as the event holds it,
and is dropped when the employee's personal data is erased.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from channel_domain.aggregate import event_type_of
from channel_domain.employee import contract_end
from channel_domain.values import plain_json, term_end
from projections.audit import event_id

# table -> (key column, [(column, SQL type)]) in the order of the table's columns.
_TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "partner_list": ("partner_id", [
        ("partner_id", "uuid"), ("version", "bigint"), ("status", "text"), ("kind", "text"), ("name", "text"),
        ("region", "text"), ("grade", "text"), ("commission_rate", "numeric"), ("parent_partner_id", "uuid"),
        ("recruited_by", "uuid"), ("terminated_on", "date"),
    ]),
    "contract_list": ("contract_id", [
        ("contract_id", "uuid"), ("version", "bigint"), ("status", "text"), ("partner_id", "uuid"),
        ("partner_kind", "text"), ("starts_on", "date"), ("ends_on", "date"), ("signed_on", "date"),
        ("terminated_on", "date"), ("territory", "text"), ("commission", "jsonb"), ("amendments", "jsonb"),
        ("fee_rate", "numeric"), ("exclusive", "boolean"), ("products", "jsonb"), ("renewals", "integer"),
    ]),
    "employee_list": ("employee_id", [
        ("employee_id", "uuid"), ("version", "bigint"), ("status", "text"), ("role", "text"), ("hired_on", "date"),
        ("manager_id", "uuid"), ("login", "text"), ("probation_ends_on", "date"), ("contract_starts_on", "date"),
        ("contract_ends_on", "date"), ("left_on", "date"), ("personal_data_erased", "boolean"),
        ("name_sealed", "text"),
    ]),
    "target_list": ("target_id", [
        ("target_id", "uuid"), ("version", "bigint"), ("status", "text"), ("assignee_type", "text"),
        ("assignee_id", "text"), ("period", "text"), ("amount", "numeric"), ("kpis", "jsonb"), ("parent_id", "uuid"),
    ]),
}
_TRAILER = [("created_position", "bigint"), ("created_at", "timestamptz"), ("updated_at", "timestamptz"),
            ("position", "bigint"), ("event_id", "uuid")]
_TABLE_OF = {"Partner": "partner_list", "Contract": "contract_list", "Employee": "employee_list",
             "SalesTarget": "target_list"}
_EMPLOYEE_LEFT = {"ProbationFailed": "probation_failed", "Dismissed": "dismissed", "DismissalApproved": "dismissed",
                  "Separated": "separated"}


def _upsert_sql(table: str) -> str:
    key, columns = _TABLES[table]
    every = [*columns, *_TRAILER]
    names = ", ".join(name for name, _ in every)
    # Sent as text arrays and cast here: one statement per table and batch, whatever the types.
    casts = ", ".join(f"c{n}::{kind}" for n, (_, kind) in enumerate(every))
    arrays = ", ".join("%s::text[]" for _ in every)
    aliases = ", ".join(f"c{n}" for n in range(len(every)))
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name, _ in every if name != key)
    return (f"INSERT INTO {table} ({names}) SELECT {casts} FROM unnest({arrays}) AS r({aliases})"  # noqa: S608
            f" ON CONFLICT ({key}) DO UPDATE SET {updates}")


_UPSERT = {table: _upsert_sql(table) for table in _TABLES}
_JSON_COLUMNS = {name for _, columns in _TABLES.values() for name, kind in columns if kind == "jsonb"}


def _text(column: str, value: Any) -> str | None:
    if value is None:
        return None
    if column in _JSON_COLUMNS:
        return json.dumps(plain_json(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class RecordLists:
    name = "record_lists"
    weight = 0.8  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = tuple(_TABLES)

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        mine = []
        for notification, event in events:
            table = _TABLE_OF.get(event_type_of(notification.topic)[0])
            if table is not None:
                mine.append((table, notification, event))
        if not mine:
            return
        rows = self._load(cursor, mine)
        touched: dict[str, dict[UUID, dict[str, Any]]] = {table: {} for table in _TABLES}
        for table, notification, event in mine:
            record_id = notification.originator_id
            kind = type(event).__name__
            row = rows[table].get(record_id)
            if row is None:
                if notification.originator_version != 1:
                    continue  # a record whose first event this model never applied (an operator's skip)
                row = rows[table][record_id] = {
                    "created_position": notification.id, "created_at": event.timestamp,
                    **_created(table, record_id, event),
                }
            else:
                _changed(table, kind, row, event)
            row.update(version=notification.originator_version, updated_at=event.timestamp,
                       position=notification.id,
                       event_id=event_id(notification.originator_id, notification.originator_version))
            touched[table][record_id] = row
        for table, written in touched.items():
            if written:
                every = [name for name, _ in (*_TABLES[table][1], *_TRAILER)]
                cursor.execute(_UPSERT[table], [[_text(name, row[name]) for row in written.values()]
                                                for name in every])

    @staticmethod
    def _load(cursor: Any, mine: list[tuple[str, Notification, Any]]) -> dict[str, dict[UUID, dict[str, Any]]]:
        """The rows of the records this batch changes but did not create, read once."""
        wanted: dict[str, set[UUID]] = {table: set() for table in _TABLES}
        for table, notification, _ in mine:
            if notification.originator_version != 1:
                wanted[table].add(notification.originator_id)
        rows: dict[str, dict[UUID, dict[str, Any]]] = {table: {} for table in _TABLES}
        for table, ids in wanted.items():
            if ids:
                key = _TABLES[table][0]
                cursor.execute(f"SELECT * FROM {table} WHERE {key} = ANY(%s)", (list(ids),))  # noqa: S608
                for row in cursor.fetchall():
                    rows[table][row[key]] = dict(row)
        return rows


def _created(table: str, record_id: UUID, event: Any) -> dict[str, Any]:
    if table == "partner_list":
        return {"partner_id": record_id, "status": "applied", "kind": event.kind, "name": event.name,
                "region": event.region, "grade": event.grade, "commission_rate": event.commission_rate,
                "parent_partner_id": event.parent_partner_id, "recruited_by": event.recruited_by,
                "terminated_on": None}
    if table == "contract_list":
        return {"contract_id": record_id, "status": "draft", "partner_id": event.partner_id,
                "partner_kind": event.partner_kind, "starts_on": event.starts_on, "ends_on": event.ends_on,
                "signed_on": None, "terminated_on": None, "territory": event.territory,
                "commission": event.commission, "amendments": [], "fee_rate": event.fee_rate,
                "exclusive": event.exclusive, "products": event.products, "renewals": 0}
    if table == "employee_list":
        return {"employee_id": record_id, "status": "probation" if event.probation_months else "regular",
                "role": event.role, "hired_on": event.hired_on, "manager_id": event.manager_id,
                "login": getattr(event, "login", None),
                "probation_ends_on": term_end(event.hired_on, event.probation_months) if event.probation_months
                else None,
                "contract_starts_on": event.hired_on, "contract_ends_on": contract_end(event.hired_on,
                                                                                        event.contract_months),
                "left_on": None, "personal_data_erased": False, "name_sealed": event.name}
    return {"target_id": record_id, "status": "open", "assignee_type": event.assignee_type,
            "assignee_id": event.assignee_id, "period": event.period, "amount": event.amount, "kpis": event.kpis,
            "parent_id": event.parent_id}


def _changed(table: str, kind: str, row: dict[str, Any], event: Any) -> None:
    """What `kind` changes in a record's row, as the aggregate's event method changes its state."""
    if table == "partner_list":
        if kind == "Reviewed":
            row["status"] = "rejected" if event.decision == "reject" else (
                "active" if row["kind"] == "broker" else "approved")
        elif kind in ("Activated", "Reinstated"):
            row["status"] = "active"
        elif kind == "Suspended":
            row["status"] = "suspended"
        elif kind == "Terminated":
            row.update(status="terminated", terminated_on=event.on)
    elif table == "contract_list":
        if kind == "Submitted":
            row["status"] = "submitted"
        elif kind == "Approved":
            row["status"] = "approved"
        elif kind == "Signed":
            row.update(status="signed", signed_on=event.signed_on)
        elif kind == "Amended":
            amendments = [*row["amendments"], {"effective_on": event.effective_on, "commission": event.commission}]
            # As the aggregate keeps them: by effective date, those of one day in recording order.
            row["amendments"] = sorted(amendments, key=lambda amendment: str(amendment["effective_on"]))
        elif kind == "Terminated":
            row.update(status="terminated", terminated_on=event.effective_on)
        elif kind == "Renewed":
            row.update(ends_on=event.ends_on, renewals=row["renewals"] + 1)
    elif table == "employee_list":
        if kind == "Regularized":
            row["status"] = "regular"
        elif kind in _EMPLOYEE_LEFT:
            row.update(status=_EMPLOYEE_LEFT[kind], left_on=event.on)
        elif kind == "Promoted":
            row["role"] = event.role
        elif kind == "Transferred":
            row["manager_id"] = event.manager_id
        elif kind == "ContractReviewed":
            if event.decision == "renew" and event.contract_months is not None and row["contract_ends_on"]:
                # The renewal starts the day after the current contract ends (the aggregate's arithmetic).
                starts_on = row["contract_ends_on"] + timedelta(days=1)
                row.update(contract_starts_on=starts_on, contract_ends_on=contract_end(starts_on,
                                                                                       event.contract_months))
        elif kind == "PersonalDataErased":
            row.update(personal_data_erased=True, name_sealed=None)
    elif kind == "RevisionApproved":
        row["amount"] = event.amount
    elif kind == "ResultsEntered":
        row["status"] = "closing"
    elif kind == "Closed":
        row["status"] = "closed"
