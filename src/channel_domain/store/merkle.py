"""An RFC 9162 Merkle tree over the event hashes in position order (docs/audit.md, "Signed
checkpoints and Merkle proofs").

Leaf i is the i-th event in position order; its input is the raw 32-byte event hash. Leaf hash
= SHA-256(0x00 ‖ input), node = SHA-256(0x01 ‖ left ‖ right) (RFC 9162, 2.1.1).

`merkle_nodes` holds the hash of every perfect subtree once it is complete: node (level, j)
covers leaves [j·2^level, (j+1)·2^level). Every tree of size n ≤ the leaves stored is made of
such subtrees, so a root, an inclusion proof (2.1.3.1) or a consistency proof (2.1.4.1) of any
size reads O(log n) stored nodes in one query, never the log.

The algorithms below are written against a `node(level, index)` lookup. They ask for the same
nodes whatever the hashes are, so each is run once with a lookup that only records what it is
asked (`_needed`), the nodes are read in one query, and then run again on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Node = Callable[[int, int], bytes]
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}), RFC 9162 2.1.1


def leaf_hash(event_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + event_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_below(n: int) -> int:
    """The largest power of two smaller than n (n > 1): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree(node: Node, start: int, end: int) -> bytes:
    """MTH(D[start:end]) where `start` is a multiple of the largest power of two ≤ end - start,
    as every range the RFC's recursions make is: perfect ranges are stored, others split."""
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return node(level, start >> level)
    k = _largest_power_below(size)
    return node_hash(_subtree(node, start, start + k), _subtree(node, start + k, end))


def root(node: Node, tree_size: int) -> bytes:
    return EMPTY_ROOT if tree_size == 0 else _subtree(node, 0, tree_size)


def inclusion_path(node: Node, leaf_index: int, tree_size: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1, leaf-side first."""
    path: list[bytes] = []
    start, end, m = 0, tree_size, leaf_index
    while end - start > 1:
        k = _largest_power_below(end - start)
        if m < k:
            path.append(_subtree(node, start + k, end))
            end = start + k
        else:
            path.append(_subtree(node, start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(node: Node, first: int, second: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 2.1.4.1 (0 < m ≤ n; empty when m = n)."""
    proof: list[bytes] = []
    start, end, m, complete = 0, second, first, True
    while True:
        if m == end - start:
            if not complete:
                proof.append(_subtree(node, start, end))
            break
        k = _largest_power_below(end - start)
        if m <= k:
            proof.append(_subtree(node, start + k, end))
            end = start + k
        else:
            proof.append(_subtree(node, start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def _needed(compute: Callable[[Node], Any]) -> set[tuple[int, int]]:
    asked: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        asked.add((level, index))
        return bytes(32)

    compute(record)
    return asked


def _with_stored_nodes(cursor: Any, compute: Callable[[Node], Any]) -> Any:
    keys = sorted(_needed(compute))
    if not keys:
        return compute(lambda level, index: bytes(32))
    cursor.execute(
        "SELECT n.level, n.node_index, n.hash FROM unnest(%s::smallint[], %s::bigint[]) AS k(level, node_index)"
        " JOIN merkle_nodes n USING (level, node_index)",
        ([level for level, _ in keys], [index for _, index in keys]),
    )
    stored = {(row["level"], row["node_index"]): bytes(row["hash"]) for row in cursor.fetchall()}
    missing = [key for key in keys if key not in stored]
    if missing:
        raise TreeDamaged(f"the Merkle tree lacks stored node(s) {missing[:5]}: its tables were altered")
    return compute(lambda level, index: stored[(level, index)])


class TreeDamaged(RuntimeError):
    """A node the tree's size says is stored is not there."""


class OutOfRange(ValueError):
    """A tree size or leaf outside the tree built so far."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def tree_size(cursor: Any) -> int:
    """How many leaves the tree has now."""
    cursor.execute("SELECT coalesce(max(leaf_index) + 1, 0) AS size FROM merkle_leaves")
    return cursor.fetchone()["size"]


def root_of(cursor: Any, size: int) -> bytes:
    return _with_stored_nodes(cursor, lambda node: root(node, size))


@dataclass(frozen=True)
class InclusionProof:
    position: int
    leaf_index: int
    tree_size: int
    event_hash: bytes
    root_hash: bytes
    audit_path: list[bytes]


def _check_size(size: int, built: int, name: str = "tree_size") -> None:
    if size < 1 or size > built:
        raise OutOfRange("tree_size_out_of_range",
                         f"{name} {size} is outside the tree, which has {built} leaves (1 to {built} are provable)")


# The sizes a proof is checked against, with the leaf it is about, in one round trip (P11: a
# proof served over HTTP is a handful of round trips; each saved is a good part of its time).
# `signed` is the latest checkpoint's size, the default; no transaction is needed around this
# and the nodes' read: leaves and nodes only ever grow, each batch with its nodes at once.
_SIZES = ("SELECT (SELECT coalesce(max(leaf_index) + 1, 0) FROM merkle_leaves) AS built,"
          " (SELECT tree_size FROM merkle_checkpoints ORDER BY id DESC LIMIT 1) AS signed")


def _signed_size(found: dict[str, Any], given: int | None) -> int:
    if given is not None:
        return given
    if found["signed"] is None:
        raise OutOfRange("no_checkpoint", "no checkpoint has been signed yet")
    return found["signed"]


def prove_inclusion(cursor: Any, position: int, size: int | None = None) -> InclusionProof:
    """The event at `position` is leaf `leaf_index` of the tree of `size` leaves (None: the
    latest checkpoint's). Refusals in api.md's order: no checkpoint to default to, then a
    position that is no leaf at all (existence), then a size out of range."""
    cursor.execute(f"SELECT s.built, s.signed, l.leaf_index, l.event_hash FROM ({_SIZES}) AS s"  # noqa: S608
                   " LEFT JOIN merkle_leaves l ON l.position = %s", (position,))
    found = cursor.fetchone()
    size = _signed_size(found, size)
    if found["leaf_index"] is None:
        raise OutOfRange("position_not_in_tree", f"no event at position {position} is in the tree")
    _check_size(size, found["built"])
    if found["leaf_index"] >= size:
        raise OutOfRange("position_not_in_tree",
                         f"no event at position {position} is among the {size} leaves of that tree")
    index = found["leaf_index"]
    path, top = _with_stored_nodes(cursor, lambda node: (inclusion_path(node, index, size), root(node, size)))
    return InclusionProof(position, index, size, bytes(found["event_hash"]), top, path)


def prove_inclusions(cursor: Any, positions: Sequence[int], size: int) -> dict[int, tuple[int, bytes, list[bytes]]]:
    """Position -> (leaf index, event hash, audit path) in the tree of `size` leaves, for every
    one of `positions` among its leaves (the others are left out: not yet in that tree). Two
    queries whatever the number — the leaves, then every node their paths need — so a
    statement of hundreds of lines costs two round trips, not one per line."""
    wanted = sorted(set(positions))
    if not wanted or size < 1:
        return {}
    cursor.execute("SELECT position, leaf_index, event_hash FROM merkle_leaves"
                   " WHERE position = ANY(%s) AND leaf_index < %s", (wanted, size))
    leaves = {row["position"]: (row["leaf_index"], bytes(row["event_hash"])) for row in cursor.fetchall()}
    if not leaves:
        return {}
    return _with_stored_nodes(cursor, lambda node: {
        position: (index, digest, inclusion_path(node, index, size)) for position, (index, digest) in leaves.items()})


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


def prove_consistency(cursor: Any, first: int, second: int | None = None) -> ConsistencyProof:
    """The tree of `second` leaves (None: the latest checkpoint's) extends the tree of `first`
    leaves (1 ≤ first ≤ second)."""
    cursor.execute(_SIZES)
    found = cursor.fetchone()
    second = _signed_size(found, second)
    _check_size(second, found["built"], "second")
    if first < 1 or first > second:
        raise OutOfRange("tree_sizes_out_of_order", f"first ({first}) must be from 1 to second ({second})")
    proof, first_root, second_root = _with_stored_nodes(
        cursor, lambda node: (consistency_proof(node, first, second), root(node, first), root(node, second)))
    return ConsistencyProof(first, second, first_root, second_root, proof)


def append(cursor: Any, leaves: Sequence[tuple[int, bytes]]) -> None:
    """Append `leaves` — (position, event hash), in position order after every leaf stored —
    and every perfect subtree they complete. Reads only the nodes the new ones join: the
    roots of the perfect subtrees the tree of the current size is made of."""
    if not leaves:
        return
    size = tree_size(cursor)
    frontier = {}  # (level, index) -> hash: the stored nodes new ones are joined to
    wanted = [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]
    if wanted:
        cursor.execute(
            "SELECT n.level, n.node_index, n.hash FROM unnest(%s::smallint[], %s::bigint[]) AS k(level, node_index)"
            " JOIN merkle_nodes n USING (level, node_index)",
            ([level for level, _ in wanted], [index for _, index in wanted]),
        )
        frontier = {(row["level"], row["node_index"]): bytes(row["hash"]) for row in cursor.fetchall()}
        if len(frontier) != len(wanted):
            raise TreeDamaged(f"the Merkle tree of {size} leaves lacks some of its nodes {wanted}")
    made: dict[tuple[int, int], bytes] = {}
    with cursor.copy("COPY merkle_leaves (leaf_index, position, event_hash) FROM STDIN") as copy:
        for offset, (position, event_hash) in enumerate(leaves):
            index = size + offset
            copy.write_row((index, position, event_hash))
            level, at, digest = 0, index, leaf_hash(event_hash)
            made[(0, at)] = digest
            while at & 1:  # a right child completes its parent
                left = made.get((level, at - 1)) or frontier[(level, at - 1)]
                level, at = level + 1, at >> 1
                digest = node_hash(left, digest)
                made[(level, at)] = digest
    with cursor.copy("COPY merkle_nodes (level, node_index, hash) FROM STDIN") as copy:
        for (level, index), digest in made.items():
            copy.write_row((level, index, digest))
