"""`merkle_leaves` and `merkle_nodes`: the RFC 9162 Merkle tree over the event hashes in
position order (`channel_domain.store.merkle`), from which checkpoints are signed and proofs
read.

Run as a projection, the tree inherits the seals' guarantees: the reader never passes a
position a running transaction could still fill, so each event becomes one leaf, in order,
and a batch of leaves and nodes commits with its checkpoint. It keeps nothing in memory: each
batch reads the few nodes it joins from the tables, so a crash or another worker taking over
leaves nothing stale behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.store import merkle
from channel_domain.store.projecting import EVIDENCE_LANE


class AuditMerkle:
    name = "audit_merkle"
    tables = ("merkle_leaves", "merkle_nodes")
    rebuildable = False  # evidence, like the seals: rebuilt from a tampered log it would vouch for it
    weight = 0.8  # 100k instructions an event, with its share of its lane's one reading of the log (bench/read_model_costs.py)
    lane = EVIDENCE_LANE  # kept up on its own, whatever the read models' pace (P11)
    decodes = False  # reads the events' hashes from the table, never their data

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        cursor.execute("SELECT position, hash FROM events WHERE position = ANY(%s) ORDER BY position",
                       ([notification.id for notification, _ in events],))
        merkle.append(cursor, [(row["position"], bytes(row["hash"])) for row in cursor.fetchall()])
