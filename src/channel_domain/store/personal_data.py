"""Sealing personal data with a key per person, so that destroying the key erases it.

A sealed value is `pii:v1:` + base64(nonce ‖ AES-256-GCM ciphertext), bound to its subject
by the associated data: a value sealed for one employee cannot be opened as another's.
Keys live in `personal_data_keys`; erasure sets the key to NULL in the same transaction as
the erasure event (see `append_events`). Keys are not cached: an erasure in one process is
effective in every other at once.
"""

from __future__ import annotations

import base64
import os
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pii:v1:"
NONCE_BYTES = 12


class PersonalDataVault:
    def __init__(self, datastore) -> None:  # noqa: ANN001 - the library's PostgresDatastore
        self.datastore = datastore

    def key(self, subject_id: UUID) -> bytes | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT key FROM personal_data_keys WHERE subject_id = %s", (subject_id,), prepare=True)
            row = curs.fetchone()
        return None if row is None or row["key"] is None else bytes(row["key"])

    def keys(self, subject_ids: list[UUID]) -> dict[UUID, bytes]:
        """The keys of those of `subject_ids` that still have one, in one query (a page of a
        list reveals many people's fields at once)."""
        if not subject_ids:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT subject_id, key FROM personal_data_keys WHERE subject_id = ANY(%s)"
                         " AND key IS NOT NULL", (subject_ids,))
            return {row["subject_id"]: bytes(row["key"]) for row in curs.fetchall()}


def new_key() -> bytes:
    """A fresh key; it is stored with the events that first use it (`append_events`)."""
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, subject_id: UUID, value: str | None) -> str | None:
    if value is None:
        return None
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, value.encode(), subject_id.bytes)
    return PREFIX + base64.b64encode(nonce + ciphertext).decode()


def unseal(key: bytes | None, subject_id: UUID, sealed: str | None) -> str | None:
    """The plaintext, or None when there is nothing to open or the key was destroyed."""
    if sealed is None or key is None or not sealed.startswith(PREFIX):
        return None
    raw = base64.b64decode(sealed[len(PREFIX):])
    return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subject_id.bytes).decode()
