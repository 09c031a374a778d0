"""An RFC 9162 verifier written from the RFC alone, with the standard library only: it imports
nothing of the service, so a bug shared by the tree and its check cannot hide.

`mth` is the Merkle Tree Hash of 2.1.1, computed from the leaf inputs; the two verifiers are the
algorithms of 2.1.3.2 (inclusion) and 2.1.4.2 (consistency), step by step."""

from __future__ import annotations

import hashlib


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(leaf_input: bytes) -> bytes:
    return _hash(b"\x00" + leaf_input)


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over the leaf inputs (the raw event hashes)."""
    n = len(leaves)
    if n == 0:
        return _hash(b"")
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _hash(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def verify_inclusion(leaf_index: int, tree_size: int, leaf_input: bytes, inclusion_path: list[bytes],
                     root_hash: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if leaf_index >= tree_size:  # 1
        return False
    fn, sn = leaf_index, tree_size - 1  # 2
    r = leaf_hash(leaf_input)  # 3
    for p in inclusion_path:  # 4
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _hash(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _hash(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash  # 5


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       consistency_path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2 (for first < second; equal sizes prove themselves by equal roots)."""
    if not consistency_path:  # 1
        return False
    path = list(consistency_path)
    if first & (first - 1) == 0:  # 2: first is an exact power of 2
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # 3
    while fn & 1:  # 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # 5
    for c in path[1:]:  # 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _hash(b"\x01" + c + fr)
            sr = _hash(b"\x01" + c + sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _hash(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0  # 7
