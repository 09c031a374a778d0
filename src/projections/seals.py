"""`event_seals`: every event hash chained in global position order, one row per event, so
a deletion, insertion or reordering anywhere in the log shows at its position.

Run as a projection, the seals inherit its guarantees: the reader never passes a position a
running transaction could still fill, so every event is sealed once, in order, and a batch of
seals commits with its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.store.integrity import GENESIS, seal_chain
from channel_domain.store.projecting import EVIDENCE_LANE


class AuditSeals:
    name = "audit_seals"
    tables = ("event_seals",)
    rebuildable = False  # seals are evidence: built again from a tampered log they would vouch for it
    weight = 0.6  # 100k instructions an event, with its share of its lane's one reading of the log (bench/read_model_costs.py)
    lane = EVIDENCE_LANE  # kept up on its own, whatever the read models' pace (P11)
    decodes = False  # reads the events' hashes from the table, never their data

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        cursor.execute("SELECT chain FROM event_seals ORDER BY position DESC LIMIT 1")
        last = cursor.fetchone()
        chain = bytes(last["chain"]) if last else GENESIS
        cursor.execute("SELECT position, hash FROM events WHERE position = ANY(%s) ORDER BY position",
                       ([notification.id for notification, _ in events],))
        rows = cursor.fetchall()
        with cursor.copy("COPY event_seals (position, event_hash, chain) FROM STDIN") as copy:
            for row in rows:
                chain = seal_chain(chain, row["position"], bytes(row["hash"]))
                copy.write_row((row["position"], bytes(row["hash"]), chain))
