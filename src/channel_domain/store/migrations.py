"""Create or upgrade the schema from `migrations/`, idempotently (yoyo-migrations).

The migrations are written in the repository's top-level `migrations/`; the package reaches
them as `channel_domain/migrations`, a symlink to that folder, so an editable install, a
checkout on `PYTHONPATH` and a built wheel (where setuptools copies the files in as package
data, see pyproject.toml) all read them the same way, from beside the code that runs.
"""

from __future__ import annotations

from pathlib import Path

from yoyo import default_migration_table, read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import DatabaseURI

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


class MigrationsNotFound(RuntimeError):
    """No migrations where the package keeps them: a broken install, never an up-to-date schema."""


class _WholeConninfoBackend(PostgresqlPsycopgBackend):
    """yoyo's psycopg backend, connecting with the connection string exactly as configured.
    yoyo's own URL parsing rebuilds the connection from pieces: it lower-cases the host, cannot
    take a socket directory as host, and leaves a percent-encoded database name encoded."""

    def connect(self, dburi: DatabaseURI) -> object:
        return self.driver.connect(dburi.args["conninfo"], autocommit=True)


def _migrations(directory: Path) -> object:
    if not directory.is_dir():
        raise MigrationsNotFound(f"no migrations folder at {directory}: the installation is incomplete")
    migrations = read_migrations(str(directory))
    if not migrations:
        raise MigrationsNotFound(f"the migrations folder {directory} holds no migrations: the installation is incomplete")
    return migrations


def migrate(url: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied; returns the ids applied now. Raises
    `MigrationsNotFound` when there are none to read, before touching the database."""
    migrations = _migrations(directory)
    # yoyo keys a per-process cache on the URI (pickled), so it carries the whole conninfo.
    uri = DatabaseURI("postgresql+psycopg", None, None, None, None, None, {"conninfo": url})
    backend = _WholeConninfoBackend(uri, default_migration_table)
    try:
        backend.init_database()
        with backend.lock():  # concurrent `migrate` runs wait, then no-op
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [migration.id for migration in pending]
    finally:
        backend.connection.close()
