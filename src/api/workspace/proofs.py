"""Each statement line's proof against the latest signed checkpoint, checked here as an auditor's
own script would (docs/audit.md, `verify_proof.py`): the event's stored bytes give its hash,
the hash is the tree's leaf, the inclusion path leads from the leaf to the checkpoint's root,
and the root is what the checkpoint's Ed25519 signature signs. The service's stored hashes
and roots are not taken on trust; only the path is read from the tree's stored nodes
(`store/merkle.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from channel_domain.store import checkpoints, integrity, merkle

VERIFIED = "verified"
PENDING = "pending"  # not yet in a checkpoint
FAILED = "failed"


@dataclass(frozen=True)
class CheckpointCheck:
    checkpoint: checkpoints.Checkpoint | None
    signature_ok: bool
    problem: str | None


@dataclass(frozen=True)
class LineProof:
    status: str
    leaf_index: int | None = None
    path_length: int | None = None
    detail: str = ""


def check_latest(curs: Any) -> CheckpointCheck:
    """The latest checkpoint and whether its signature, body and key id check."""
    latest = checkpoints.latest(curs)
    if latest is None:
        return CheckpointCheck(None, False, "no checkpoint has been signed yet")
    keys, _ = checkpoints.public_keys(curs)
    key = next((k for k in keys if k.key_id == latest.key_id), None)
    if key is None:
        return CheckpointCheck(latest, False, f"no published key {latest.key_id}")
    if hashlib.sha256(key.raw).hexdigest()[:16] != latest.key_id:
        return CheckpointCheck(latest, False, "the published key does not hash to its key id")
    expected_body = checkpoints.body(latest.tree_size, latest.root_hash, latest.timestamp)
    if latest.body != expected_body:
        return CheckpointCheck(latest, False, "the signed body does not say the checkpoint's fields")
    try:
        Ed25519PublicKey.from_public_bytes(key.raw).verify(latest.signature, latest.body.encode())
    except InvalidSignature:
        return CheckpointCheck(latest, False, "the signature does not verify")
    return CheckpointCheck(latest, True, None)


def _root_from_path(leaf_index: int, tree_size: int, event_hash: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root an inclusion path leads to, or None if it is malformed."""
    if leaf_index >= tree_size:
        return None
    fn, sn = leaf_index, tree_size - 1
    r = hashlib.sha256(b"\x00" + event_hash).digest()
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def _recomputed_hashes(curs: Any, positions: list[int]) -> dict[int, bytes]:
    """Each event's hash recomputed from its stored bytes and its record's previous hash."""
    curs.execute(
        "SELECT position, originator_id, originator_version, topic, recorded_at, effective_on, state, prev_hash"
        " FROM events WHERE position = ANY(%s)",
        (positions,),
    )
    found = {}
    for row in curs.fetchall():
        found[row["position"]] = integrity.event_hash(
            bytes(row["prev_hash"]), row["position"], row["originator_id"], row["originator_version"], row["topic"],
            integrity.utc_text(row["recorded_at"]), row["effective_on"].isoformat() if row["effective_on"] else "",
            bytes(row["state"]))
    return found


def line_proofs(curs: Any, positions: list[int], check: CheckpointCheck) -> dict[int, LineProof]:
    """A proof status for each position: verified, pending (not yet in a checkpoint) or failed."""
    if check.checkpoint is None:
        return {position: LineProof(PENDING, detail=check.problem or "") for position in positions}
    checkpoint = check.checkpoint
    recomputed = _recomputed_hashes(curs, sorted(set(positions)))
    proofs: dict[int, LineProof] = {}
    for position in sorted(set(positions)):
        try:
            proof = merkle.prove_inclusion(curs, position, checkpoint.tree_size)
        except merkle.OutOfRange as out:
            status = PENDING if out.code == "position_not_in_tree" else FAILED
            proofs[position] = LineProof(status, detail=str(out))
            continue
        except merkle.TreeDamaged as damaged:
            proofs[position] = LineProof(FAILED, detail=str(damaged))
            continue
        where = {"leaf_index": proof.leaf_index, "path_length": len(proof.audit_path)}
        if recomputed.get(position) != proof.event_hash:
            proofs[position] = LineProof(FAILED, **where, detail="the event's stored bytes do not hash to its leaf")
        elif _root_from_path(proof.leaf_index, proof.tree_size, proof.event_hash,
                             proof.audit_path) != checkpoint.root_hash:
            proofs[position] = LineProof(FAILED, **where, detail="the path does not lead to the checkpoint's root")
        elif not check.signature_ok:
            proofs[position] = LineProof(FAILED, **where, detail=f"the checkpoint: {check.problem}")
        else:
            proofs[position] = LineProof(VERIFIED, **where)
    return proofs
