"""Bearer tokens: issued once by the CLI, stored as a digest, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row, tuple_row

ROLES = (
    "channel_manager",
    "channel_specialist",
    "finance",
    "hr",
    "general_manager",
    "integration",
    "reporting",
    "auditor",
)
TOKEN_PREFIX = "cd_"


@dataclass(frozen=True)
class Principal:
    actor: str
    roles: tuple[str, ...]
    token_id: uuid.UUID


@dataclass(frozen=True)
class TokenInfo:
    token_id: uuid.UUID
    actor: str
    roles: list[str]
    created_at: datetime
    revoked_at: datetime | None


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_token(conn: psycopg.Connection, actor: str, roles: list[str]) -> tuple[uuid.UUID, str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not actor.strip() or not roles:
        raise ValueError("a token names an actor and at least one role")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO api_tokens (token_id, token_sha256, actor, roles) VALUES (%s, %s, %s, %s)",
        (token_id, token_digest(token), actor.strip(), sorted(set(roles))),
    )
    return token_id, token


def authenticate(conn: psycopg.Connection, token: str) -> Principal | None:
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(
            "SELECT token_id, actor, roles FROM api_tokens"
            " WHERE token_sha256 = %s AND revoked_at IS NULL",
            (token_digest(token),),
            prepare=True,
        ).fetchone()
    return None if row is None else Principal(actor=row[1], roles=tuple(row[2]), token_id=row[0])


def standing(conn: psycopg.Connection, token_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `token_ids` that are neither revoked nor gone: one query for any number of them."""
    with conn.cursor(row_factory=tuple_row) as cursor:
        rows = cursor.execute(
            "SELECT token_id FROM api_tokens WHERE token_id = ANY(%s) AND revoked_at IS NULL", (token_ids,),
        ).fetchall()
    return {row[0] for row in rows}


def list_tokens(conn: psycopg.Connection) -> list[TokenInfo]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "SELECT token_id, actor, roles, created_at, revoked_at FROM api_tokens ORDER BY created_at"
        ).fetchall()
    return [TokenInfo(**row) for row in rows]


def revoke_token(conn: psycopg.Connection, token_id: uuid.UUID) -> bool:
    cursor = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s AND revoked_at IS NULL",
        (token_id,),
    )
    return cursor.rowcount == 1
