"""Create or upgrade the schema from `migrations/`, idempotently (yoyo-migrations).

The migrations are written in the repository's top-level `migrations/`; the package reaches
them as `channel_domain/migrations`, a symlink to that folder, so an editable install, a
checkout on `PYTHONPATH` and a built wheel (where setuptools copies the files in as package
data, see pyproject.toml) all read them the same way, from beside the code that runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from yoyo import default_migration_table, read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import DatabaseURI

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

# The session advisory lock every `migrate` takes, on the key of this name. PostgreSQL frees it
# when the session ends, however it ends: yoyo's own lock is a row in `yoyo_lock` that a killed
# `migrate` leaves behind, after which every command failed with LockTimeout until removed by hand.
MIGRATION_LOCK = "channel_domain.migrate"

logger = logging.getLogger(__name__)


class MigrationsNotFound(RuntimeError):
    """No migrations where the package keeps them: a broken install, never an up-to-date schema."""


class SchemaBehind(RuntimeError):
    """The database lacks migrations this code needs; only `migrate` applies them."""


class _WholeConninfoBackend(PostgresqlPsycopgBackend):
    """yoyo's psycopg backend, connecting with the connection string exactly as configured.
    yoyo's own URL parsing rebuilds the connection from pieces: it lower-cases the host, cannot
    take a socket directory as host, and leaves a percent-encoded database name encoded."""

    def connect(self, dburi: DatabaseURI) -> object:
        return self.driver.connect(dburi.args["conninfo"], autocommit=True)

    def create_lock_table(self) -> None:
        """`yoyo_lock` is not used (see `lock`); a database migrated before keeps an idle one."""

    @contextmanager
    def lock(self, timeout: float = 0) -> Iterator[None]:  # noqa: ARG002 - yoyo's signature; waits for as long as it takes
        """Hold the migration lock on this backend's connection. Waits for a `migrate` in progress
        however long it takes (a migration may rewrite a large table); a dead one holds nothing."""
        if self._is_locked:  # yoyo re-enters its lock (upgrading its own tables inside ours)
            yield
            return
        conn = self.connection
        got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (MIGRATION_LOCK,)).fetchone()[0]
        if not got:
            holders = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) AND "
                "((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)", (MIGRATION_LOCK,))]
            logger.warning("another migrate is running (PostgreSQL backend %s); waiting for it to finish",
                           ", ".join(map(str, holders)) or "?")
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))
        self._is_locked = True
        try:
            yield
        finally:
            self._is_locked = False
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))
            except psycopg.Error:
                pass  # the session is broken or gone: PostgreSQL has let go of the lock with it


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
        # Everything under the lock, yoyo's own tables included: a second `migrate` waits, then no-ops.
        with backend.lock():
            backend.init_database()
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            _grant_reporting(backend.connection)
        return [migration.id for migration in pending]
    finally:
        backend.connection.close()


def _grant_reporting(conn: psycopg.Connection) -> None:
    """Give this database's reporting group (`channel-domain reporting-role`) SELECT on every view
    of the `reporting` schema, the ones a migration just added included, and take another
    database's group off them (this one was copied from it). A no-op until a reporting role was
    made here, and before migration 0029. Never fails a migrate: a migrating user that may not
    grant leaves the grants to the next `reporting-role`, and says so."""
    try:
        if conn.execute("SELECT to_regprocedure('public.reporting_grant_access()')").fetchone()[0] is None:
            return
        granted = conn.execute("SELECT public.reporting_grant_access()").fetchone()[0]
    except psycopg.Error as error:
        logger.warning("could not grant the reporting views to this database's reporting group (%s);"
                       " run channel-domain reporting-role as a role that may", error)
        return
    if granted:
        logger.info("granted SELECT on %d new reporting view(s) to this database's reporting group", granted)


def not_applied(url: str, *, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The ids of the migrations not applied yet, found by reading only: commands that only read
    (`verify`, `export`) must run as a read-only role and against a standby, where `migrate` cannot."""
    migrations = _migrations(directory)
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (default_migration_table,)).fetchone()[0] is None:
            applied: set[str] = set()
        else:
            applied = {row[0] for row in conn.execute(
                sql.SQL("SELECT migration_hash FROM {}").format(sql.Identifier(default_migration_table)))}
    return [migration.id for migration in migrations if migration.hash not in applied]


def require_current(url: str, *, directory: Path = MIGRATIONS_DIR) -> None:
    """Raise `SchemaBehind` unless every migration is applied."""
    behind = not_applied(url, directory=directory)
    if behind:
        raise SchemaBehind(f"the schema is behind; run channel-domain migrate (not applied: {', '.join(behind)})")
