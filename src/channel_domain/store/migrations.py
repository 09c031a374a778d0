"""Create or upgrade the schema from `migrations/`, idempotently (yoyo-migrations)."""

from __future__ import annotations

from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def _yoyo_url(url: str) -> str:
    params = conninfo_to_dict(url)
    user = params.get("user") or "postgres"
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or "postgres"
    if str(host).startswith("/"):  # a Unix socket directory, as the embedded server uses
        return f"postgresql+psycopg://{user}{password}@/{dbname}?host={host}&port={port}"
    return f"postgresql+psycopg://{user}{password}@{host}:{port}/{dbname}"


def migrate(url: str) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now."""
    backend = get_backend(_yoyo_url(url))
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        with backend.lock():  # an advisory lock: concurrent `migrate` runs wait, then no-op
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [migration.id for migration in pending]
    finally:
        backend.connection.close()
