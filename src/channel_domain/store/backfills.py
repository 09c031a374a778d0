"""Data the read models passed before a migration gave it a table, copied in by that
migration (yoyo runs these as Python steps: the rows carry the event ids the read models give
every event, uuid5 of the record id and version, which SQL cannot compute without an extension)."""

from __future__ import annotations

import json
import uuid
from typing import Any

GRANTED = "channel_domain.partner:Partner.HousingSubsidyGranted"


def copy_housing_subsidy_grants(conn: Any) -> None:
    """0019: the one-step grants of before 0013 that the commissions read model had already
    passed, into `commission_housing_subsidies` as prepared — the way it reads them now — so
    their months' statements show them. Copies each grant once."""
    cursor = conn.cursor()
    cursor.execute("SELECT position FROM projection_checkpoints WHERE name = 'commissions'")
    row = cursor.fetchone()
    if row is None:
        return  # never projected: it will read every grant itself
    cursor.execute(
        "SELECT e.position, e.originator_id, e.originator_version, e.state, e.recorded_at FROM events e"
        " WHERE e.topic = %s AND e.position <= %s"
        " AND NOT EXISTS (SELECT 1 FROM commission_housing_subsidies s WHERE s.position = e.position)",
        (GRANTED, row[0]),
    )
    for position, record_id, version, state, recorded_at in cursor.fetchall():
        data = json.loads(bytes(state))
        amount = data["amount"]["_data_"] if isinstance(data["amount"], dict) else data["amount"]
        cursor.execute(
            "INSERT INTO commission_housing_subsidies"
            " (position, event_id, partner_id, period, step, amount, account, recorded_at)"
            " VALUES (%s, %s, %s, %s, 'prepared', %s, NULL, %s)",
            (position, uuid.uuid5(record_id, str(version)), record_id, data["period"], amount, recorded_at),
        )
