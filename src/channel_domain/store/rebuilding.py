"""Rebuilding a read model without downtime: build it again in shadow tables from position 0
while the live tables keep serving, check it, then switch in one transaction.

The projection's SQL names its tables without a schema, so the shadow build runs it with
`search_path` set to a schema of its own holding empty copies of those tables. The switch
locks the live tables (waiting for the live worker's batch in flight, and holding its next
one), applies the last events to the shadow, swaps the tables and moves the checkpoint — all
in one transaction, so readers see the old model or the new, never a mix.

What a DBA set on the live tables stays with them through the switch (`carry_settings`):
owner, privileges (table and column), comments, index and constraint names, storage
parameters, row security and its policies, triggers, replica identity, publications,
statistics targets and foreign keys. Views over the tables (`audit_findings`,
`commission_statements`, the `reporting` schema's views over those) follow them by object id, not
by name: each is replaced in place, in its own schema
(`CREATE OR REPLACE VIEW`) over the new tables, so they keep their own identity, grants and
comments. The switch then compares every one of those settings on the old and new tables and
drops the old ones without CASCADE: a setting it could not carry, or anything else that
depends on the old tables (a materialized view, a foreign key into them), stops the switch
with nothing changed.

One rebuild at a time (`REBUILD_LOCK`, a session advisory lock held for the whole rebuild): the
shadow schema has one name, and a second rebuild would drop the first one's. The switch waits at
most `switch_lock_timeout_s` for each lock it needs; behind a long reader (a BI query) it gives up
rather than make every reader queue behind its waiting lock, and tries again a few times.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from channel_domain.store.log import EventLog
from channel_domain.store.projecting import Projection, _forget_state, share_out

SHADOW = "rebuild_shadow"
RETIRED = "rebuild_retired"
REBUILD_LOCK = "channel_domain.rebuild"  # the advisory lock's key, hashed as the other locks' are
# Readers of the tables queue behind the switch's lock request while it waits: a few seconds at
# most, then it lets them through and tries again.
SWITCH_LOCK_TIMEOUT_S = 3.0
SWITCH_ATTEMPTS = 5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildReport:
    name: str
    position: int
    rows: dict[str, tuple[int, int]]  # table -> (rows before, rows after)


class NotRebuildable(Exception):
    """The projection keeps evidence (it says `rebuildable = False`): rebuilt from the log as it
    is now, it would vouch for whatever the log has become."""


class RebuildInProgress(Exception):
    """Another rebuild holds the rebuild lock; nothing was done."""


class SwitchBlocked(Exception):
    """The switch could not get its locks in any of its attempts (a long reader or writer holds the
    tables); the live read models are untouched and the shadow is dropped."""


class _LockWaitTooLong(Exception):
    pass


class SettingsNotCarried(Exception):
    """The switch could not give the new tables something the DBA set on the old ones; it was
    rolled back, and the live read models are untouched."""


class Rebuilder:
    """Rebuilds one read model, or several in one pass over the log: each batch is read and
    decoded once for all of them, and they switch together."""

    def __init__(self, app: Any, projection: Projection, *others: Projection, batch_size: int = 5000,
                 switch_lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S, switch_attempts: int = SWITCH_ATTEMPTS) -> None:
        self.projections = [projection, *others]
        for chosen in self.projections:
            if not getattr(chosen, "rebuildable", True):
                raise NotRebuildable(f"{chosen.name} is evidence, not a view: it is never rebuilt")
        self.app = app
        self.batch_size = batch_size
        self.switch_lock_timeout_s = switch_lock_timeout_s
        self.switch_attempts = switch_attempts

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(table for chosen in self.projections for table in chosen.tables)

    @property
    def datastore(self) -> Any:
        return self.app.event_recorder.datastore

    def head(self) -> int:
        return self.app.event_recorder.max_notification_id() or 0

    def rebuild(self, progress: Callable[[int], None] = lambda _: None, processes: int = 1) -> RebuildReport:
        """`progress` is called with the lowest position reached so far, as the build goes.

        With `processes` above 1 the read models are shared out among that many processes,
        each reading the log and building its share of the shadow tables: the work is Python,
        bound to one core per process, and read models do not depend on one another.

        Raises `RebuildInProgress` at once when another rebuild is running."""
        with self.datastore.get_connection() as lock_conn:
            got = lock_conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS got",
                                    (REBUILD_LOCK,)).fetchone()["got"]
            if not got:
                holders = [row["pid"] for row in lock_conn.execute(
                    f"SELECT pid FROM pg_locks WHERE {_IS_REBUILD_LOCK}", (REBUILD_LOCK,)).fetchall()]
                raise RebuildInProgress(
                    f"another rebuild is running (PostgreSQL backend {', '.join(map(str, holders)) or '?'}):"
                    " one at a time, they share the shadow tables; nothing was done")
            try:
                return self._rebuild(progress, processes, lock_conn.info.backend_pid)
            finally:
                with contextlib.suppress(Exception):  # a broken session has let go of the lock already
                    lock_conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (REBUILD_LOCK,))

    def _rebuild(self, progress: Callable[[int], None], processes: int, lock_pid: int) -> RebuildReport:
        self._create_shadow()
        try:
            # Another process can open the database only by its URL.
            groups = share_out(self.projections, processes if getattr(self.app, "database_url", None) else 1)
            if len(groups) == 1:
                log = EventLog(self.app.event_recorder)
                for batch in log.follow(self.batch_size):
                    self._apply(batch, SHADOW, groups[0])
                    progress(batch[-1].id)
                built = [(groups[0], log.position)]
            else:
                built = self._build_in_processes(groups, progress)
            return self._switch(built, progress, lock_pid)
        except BaseException:
            # A copy of the read models is no use once the switch is off; it only holds space.
            with contextlib.suppress(Exception):  # the first failure is the one to tell
                with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
                    curs.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
            raise

    def _build_in_processes(self, groups: list[list[Projection]], progress: Callable[[int], None]
                            ) -> list[tuple[list[Projection], int]]:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited pools
        reached = [context.Value("q", 0) for _ in groups]
        workers = [
            context.Process(target=_build_share, name=f"rebuild-{n}", daemon=True, args=(
                type(self.app), self.app.database_url, [type(p) for p in group], self.batch_size, reached[n]))
            for n, group in enumerate(groups)
        ]
        for worker in workers:
            worker.start()
        try:
            while any(worker.is_alive() for worker in workers):
                progress(min(value.value for value in reached))
                for worker in workers:
                    worker.join(timeout=0.2 / len(workers))
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
        failed = [worker.name for worker in workers if worker.exitcode != 0]
        if failed:
            raise RuntimeError(f"the shadow build failed in {', '.join(failed)}; the live read models are untouched")
        return [(group, value.value) for group, value in zip(groups, reached, strict=True)]

    def _create_shadow(self) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
            curs.execute(f"CREATE SCHEMA {SHADOW}")
            for table in self.tables:
                curs.execute(f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL)")
                _name_indexes_as_live(curs, table)

    def _apply(self, batch: list[Any], schema: str, projections: list[Projection], curs: Any = None) -> None:
        events = [(n, self.app.mapper.to_domain_event(n)) for n in batch]
        if curs is not None:
            for chosen in projections:
                chosen.apply(curs, events)
            return
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(f"SET LOCAL search_path = {schema}, public")
            for chosen in projections:
                chosen.apply(cursor, events)

    def _switch(self, built: list[tuple[list[Projection], int]], progress: Callable[[int], None],
                lock_pid: int) -> RebuildReport:
        for attempt in range(1, self.switch_attempts + 1):
            try:
                return self._switch_once(built, progress, lock_pid)
            except _LockWaitTooLong:
                # The tail applied in the rolled-back attempt is gone from the shadow tables:
                # whatever a read model remembers of it must go too.
                for chosen in self.projections:
                    _forget_state(chosen)
                holders = self._holders()
                if attempt == self.switch_attempts:
                    raise SwitchBlocked(
                        f"the switch waited {self.switch_lock_timeout_s:g} s for the read-model tables"
                        f" {self.switch_attempts} times; held by {holders or 'sessions since gone'};"
                        " the live read models are untouched: run the rebuild again when they are free") from None
                logger.warning("rebuild: the switch waited %g s for the read-model tables (held by %s);"
                               " trying again (attempt %d of %d)", self.switch_lock_timeout_s, holders or "?",
                               attempt + 1, self.switch_attempts)
                time.sleep(min(attempt, 5) * 0.5)
        raise AssertionError("unreachable")

    def _holders(self) -> str:
        """Who holds a lock on the tables now, for the operator: pid, user, application, since."""
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT a.pid, a.usename, a.application_name, a.state,"
                " date_trunc('second', now() - a.xact_start) AS open_for"
                " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.granted AND l.relation = ANY (%s::regclass[]) AND a.pid <> pg_backend_pid()"
                " ORDER BY a.pid", ([f"public.{table}" for table in self.tables],)).fetchall()
        return "; ".join(f"pid {r['pid']} ({r['usename']}, {r['application_name'] or 'no application_name'},"
                         f" {r['state']}, transaction open for {r['open_for']})" for r in rows)

    def _switch_once(self, built: list[tuple[list[Projection], int]], progress: Callable[[int], None],
                     lock_pid: int) -> RebuildReport:
        tables = self.tables
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{int(self.switch_lock_timeout_s * 1000)}ms")))
            try:
                curs.execute(f"LOCK TABLE {', '.join(f'public.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
                curs.execute(f"SELECT EXISTS (SELECT FROM pg_locks WHERE {_IS_REBUILD_LOCK} AND pid = %s) AS held",
                             (REBUILD_LOCK, lock_pid))
                if not curs.fetchone()["held"]:
                    raise RuntimeError("the rebuild lost its lock (its session ended): another rebuild may have"
                                       " taken the shadow tables; nothing was switched")
                return self._switch_locked(curs, built, progress)
            except psycopg.errors.LockNotAvailable:
                raise _LockWaitTooLong from None

    def _switch_locked(self, curs: Any, built: list[tuple[list[Projection], int]],
                       progress: Callable[[int], None]) -> RebuildReport:
        tables = self.tables
        views = _dependent_views(curs, tables)
        # The live worker is held now; bring the shadow up to what is safely readable.
        # Read models built in another process start here with nothing in memory: they
        # load what they need from the shadow tables, as after any restart.
        curs.execute(f"SET LOCAL search_path = {SHADOW}, public")
        positions = {}
        for group, position in built:
            log = EventLog(self.app.event_recorder, after=position)
            for batch in log.follow(self.batch_size):
                self._apply(batch, SHADOW, group, curs)
                progress(batch[-1].id)
            positions.update({chosen.name: log.position for chosen in group})
        rows = {}
        for table in tables:
            curs.execute(f"SELECT (SELECT count(*) FROM public.{table}) AS live,"  # noqa: S608
                         f" (SELECT count(*) FROM {SHADOW}.{table}) AS rebuilt")
            row = curs.fetchone()
            rows[table] = (row["live"], row["rebuilt"])
        curs.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
        curs.execute(f"CREATE SCHEMA {RETIRED}")
        for table in tables:
            curs.execute(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED}")
            curs.execute(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA public")
        curs.execute("SET LOCAL search_path = public")
        # Replaced, not dropped and created: a view keeps its oid, so its owner, grants,
        # comments, triggers and the views over it stay as they were.
        for view in views:
            options = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
                _option(option) for option in view.options)) if view.options else sql.SQL("")
            curs.execute(sql.SQL("CREATE OR REPLACE VIEW {}{} AS ").format(
                sql.Identifier(view.schema, view.name), options) + sql.SQL(view.definition))
        for table in tables:
            carry_settings(curs, table)
        for chosen in self.projections:
            curs.execute(
                "INSERT INTO public.projection_checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
                (chosen.name, positions[chosen.name]),
            )
        curs.execute(f"DROP SCHEMA {SHADOW}")
        # Without CASCADE: whatever still depends on an old table (a materialized view, a
        # foreign key into it) stops the switch here rather than being dropped with it.
        try:
            curs.execute(f"DROP TABLE {', '.join(f'{RETIRED}.{t}' for t in tables)}")
        except psycopg.errors.DependentObjectsStillExist as kept:
            detail = kept.diag.message_detail or ""
            raise SettingsNotCarried(
                f"other objects depend on the read model's tables and would be lost with them:"
                f" {detail.replace(RETIRED + '.', '')}; nothing was switched") from None
        curs.execute(f"DROP SCHEMA {RETIRED}")
        return RebuildReport(", ".join(chosen.name for chosen in self.projections), min(positions.values()), rows)


_IS_REBUILD_LOCK = ("locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database()) AND ((classid::bigint << 32) | objid::bigint)"
                    " = hashtextextended(%s, 0)")


def _build_share(app_type: type, url: str, projection_types: list[type], batch_size: int, reached: Any) -> None:
    """In a process of its own: build these read models' shadow tables from position 0."""
    app = app_type(url)
    try:
        projections = [kind() for kind in projection_types]
        rebuilder = Rebuilder(app, *projections, batch_size=batch_size)
        log = EventLog(app.event_recorder)
        for batch in log.follow(batch_size):
            rebuilder._apply(batch, SHADOW, projections)
            reached.value = batch[-1].id
            # What the read models keep in memory only grows while they build; left to the
            # cycle collector, it walked all of it again each time it grew by a quarter (a fifth
            # of a rebuild's time). This process ends with the build: what it freezes is freed then.
            gc.freeze()
        reached.value = log.position
    finally:
        app.close()


@dataclass(frozen=True)
class View:
    schema: str  # `public`, or `reporting` for the views BI tools read (migration 0029)
    name: str
    definition: str
    options: list[str]


def _dependent_views(curs: Any, tables: tuple[str, ...]) -> list[View]:
    """Views reading the tables, directly or through other views, in whatever schema, each after
    those it reads; definitions are taken with `public` alone on the search path, so they name
    tables bare (and views of other schemas qualified)."""
    curs.execute("SET LOCAL search_path = public")
    curs.execute(
        "WITH RECURSIVE reads (view, depth) AS ("
        "  SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        "  WHERE d.refobjid = ANY (%s::regclass[]) AND r.ev_class <> d.refobjid"
        "  UNION"
        "  SELECT r.ev_class, reads.depth + 1 FROM reads JOIN pg_depend d ON d.refobjid = reads.view"
        "  JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> reads.view)"
        " SELECT n.nspname AS schema, c.relname AS name, pg_get_viewdef(c.oid) AS definition,"
        " coalesce(c.reloptions, '{}') AS options, max(reads.depth) AS depth"
        " FROM reads JOIN pg_class c ON c.oid = reads.view AND c.relkind = 'v'"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " GROUP BY c.oid, n.nspname, c.relname, c.reloptions ORDER BY depth, n.nspname, c.relname",
        ([f"public.{table}" for table in tables],),
    )
    return [View(row["schema"], row["name"], row["definition"], row["options"]) for row in curs.fetchall()]


def _option(option: str) -> sql.Composable:
    """A storage parameter as `reloptions` keeps it (`name=value`), as SQL."""
    name, _, value = option.partition("=")
    return sql.SQL("{} = {}").format(sql.SQL(".").join(map(sql.Identifier, name.split("."))), sql.Literal(value))


_INDEX_SHAPES = (
    "SELECT ic.relname AS name, def,"
    " format('CREATE %%sINDEX %%s ON %%s.%%s ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,"
    "        quote_ident(ic.relname), quote_ident(n.nspname), quote_ident(tc.relname)) AS prefix"
    " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid"
    " JOIN pg_namespace n ON n.oid = tc.relnamespace, pg_get_indexdef(i.indexrelid) AS def"
    " WHERE i.indrelid = %s::regclass ORDER BY ic.relname"
)


def _index_shapes(curs: Any, table: str) -> list[tuple[str, str]]:
    """Each index of `table` (schema-qualified) as (name, definition without name and table)."""
    curs.execute(_INDEX_SHAPES, (table,))
    shapes = []
    for row in curs.fetchall():
        if not row["def"].startswith(row["prefix"]):
            raise SettingsNotCarried(f"cannot read the definition of index {row['name']}: {row['def']}")
        shapes.append((row["name"], row["def"][len(row["prefix"]):]))
    return shapes


def _name_indexes_as_live(curs: Any, table: str) -> None:
    """`CREATE TABLE … LIKE` names the copied indexes (and the constraints they back) by its own
    rules; migrations and DBAs name them by theirs. Give each shadow index the name of the live
    index of the same definition."""
    live = _index_shapes(curs, f"public.{table}")
    shadow = _index_shapes(curs, f"{SHADOW}.{table}")
    wanted: dict[str, list[str]] = {}
    for name, shape in live:
        wanted.setdefault(shape, []).append(name)
    renames = []
    for name, shape in shadow:
        if not wanted.get(shape):
            raise SettingsNotCarried(f"{table}: the shadow index {name} matches no live index")
        renames.append((name, wanted[shape].pop(0)))
    # Through names of our own first, so that no rename collides with a name not yet moved.
    for n, (name, _) in enumerate(renames):
        curs.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(SHADOW, name), sql.Identifier(f"rebuild_index_{n}")))
    for n, (_, final) in enumerate(renames):
        curs.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            sql.Identifier(SHADOW, f"rebuild_index_{n}"), sql.Identifier(final)))


def _acl(curs: Any, relation: sql.Composable, column: str | None = None) -> set[tuple[str, str, str, bool]]:
    """Privileges as (grantor, grantee, privilege, grantable); grantee '' is PUBLIC. A table's
    never-granted ACL reads as its default (the owner's), so NULL and explicit compare alike."""
    if column is None:
        source = sql.SQL("SELECT coalesce(relacl, acldefault('r', relowner)) AS acl FROM pg_class WHERE oid = {}::regclass")
        curs.execute(sql.SQL("SELECT (a).grantor::regrole::text AS grantor,"
                             " CASE WHEN (a).grantee = 0 THEN '' ELSE (a).grantee::regrole::text END AS grantee,"
                             " (a).privilege_type AS privilege, (a).is_grantable AS grantable"
                             " FROM (SELECT aclexplode(acl) AS a FROM ({}) s) e").format(
                                 source.format(sql.Literal(relation.as_string(curs)))))
    else:
        curs.execute(sql.SQL("SELECT (a).grantor::regrole::text AS grantor,"
                             " CASE WHEN (a).grantee = 0 THEN '' ELSE (a).grantee::regrole::text END AS grantee,"
                             " (a).privilege_type AS privilege, (a).is_grantable AS grantable"
                             " FROM (SELECT aclexplode(attacl) AS a FROM pg_attribute"
                             "       WHERE attrelid = {}::regclass AND attname = {}) e").format(
                                 sql.Literal(relation.as_string(curs)), sql.Literal(column)))
    return {(r["grantor"], r["grantee"], r["privilege"], r["grantable"]) for r in curs.fetchall()}


def _role(name: str) -> sql.Composable:
    # regrole::text quotes a name when it must; PUBLIC is the empty grantee.
    return sql.SQL("PUBLIC") if name == "" else sql.SQL(name)


def _grant(curs: Any, relation: sql.Composable, entries: set[tuple[str, str, str, bool]], owner: str,
           column: str | None = None) -> None:
    """Grant each entry as its grantor did: the owner's first, then those given through a grant
    option (as that grantor, which needs the rebuilder to be a member of it, as a superuser is)."""
    target = sql.SQL("({}) ON TABLE {}").format(sql.Identifier(column), relation) if column else \
        sql.SQL("ON TABLE {}").format(relation)
    for grantor, grantee, privilege, grantable in sorted(entries, key=lambda e: (e[0] != owner, e)):
        statement = sql.SQL("GRANT {} {} TO {}{}").format(
            sql.SQL(privilege), target, _role(grantee), sql.SQL(" WITH GRANT OPTION" if grantable else ""))
        if grantor == owner:
            curs.execute(statement)
        else:
            curs.execute(sql.SQL("SET LOCAL ROLE {}").format(_role(grantor)))
            curs.execute(statement)
            curs.execute("SET LOCAL ROLE NONE")


def settings(curs: Any, table: sql.Composable) -> dict[str, Any]:
    """What a DBA may set on a table, in a form that compares across two tables of one shape."""
    name = sql.Literal(table.as_string(curs))
    found: dict[str, Any] = {}
    curs.execute(sql.SQL("SELECT format('%I.%I', n.nspname, c.relname) AS qualified FROM pg_class c"
                         " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = {}::regclass").format(name))
    qualified = curs.fetchone()["qualified"]
    curs.execute(sql.SQL(
        "SELECT relowner::regrole::text AS owner, obj_description(oid, 'pg_class') AS comment,"
        " coalesce(reloptions, '{{}}') AS options, relrowsecurity AS row_security,"
        " relforcerowsecurity AS force_row_security, relreplident AS replica_identity,"
        " reltablespace AS tablespace FROM pg_class WHERE oid = {}::regclass").format(name))
    found.update(curs.fetchone())
    found["privileges"] = _acl(curs, table)
    curs.execute(sql.SQL(
        "SELECT attname AS name, attstattarget AS statistics, col_description(attrelid, attnum) AS comment,"
        " attacl IS NOT NULL AS granted FROM pg_attribute"
        " WHERE attrelid = {}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").format(name))
    columns = curs.fetchall()
    found["columns"] = [(c["name"], c["statistics"], c["comment"]) for c in columns]
    found["column_privileges"] = {c["name"]: _acl(curs, table, c["name"]) for c in columns if c["granted"]}
    found["indexes"] = _index_shapes(curs, table.as_string(curs))
    curs.execute(sql.SQL(
        "SELECT ic.relname AS name, obj_description(ic.oid, 'pg_class') AS comment, i.indisreplident AS replica,"
        " ic.reltablespace AS tablespace, coalesce(ic.reloptions, '{{}}') AS options"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = {}::regclass"
        " ORDER BY ic.relname").format(name))
    found["index_settings"] = [tuple(row.values()) for row in curs.fetchall()]
    curs.execute(sql.SQL(
        "SELECT conname AS name, contype AS kind, pg_get_constraintdef(oid) AS definition,"
        " obj_description(oid, 'pg_constraint') AS comment FROM pg_constraint"
        " WHERE conrelid = {}::regclass ORDER BY conname").format(name))
    found["constraints"] = [tuple(row.values()) for row in curs.fetchall()]
    curs.execute(sql.SQL(
        "SELECT polname AS name, polcmd AS command, polpermissive AS permissive,"
        " ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END FROM unnest(polroles) r ORDER BY 1)"
        " AS roles, pg_get_expr(polqual, polrelid) AS qual, pg_get_expr(polwithcheck, polrelid) AS with_check"
        " FROM pg_policy WHERE polrelid = {}::regclass ORDER BY polname").format(name))
    found["policies"] = [tuple(row.values()) for row in curs.fetchall()]
    curs.execute(sql.SQL(
        "SELECT tgname AS name, pg_get_triggerdef(oid) AS definition, tgenabled AS enabled FROM pg_trigger"
        " WHERE tgrelid = {}::regclass AND NOT tgisinternal ORDER BY tgname").format(name))
    found["triggers"] = [(t["name"], t["definition"].replace(f" ON {qualified} ", " ON . ", 1), t["enabled"])
                         for t in curs.fetchall()]
    curs.execute(sql.SQL(
        "SELECT p.pubname AS name, pg_get_expr(r.prqual, r.prrelid) AS row_filter, r.prattrs::text AS columns"
        " FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid"
        " WHERE r.prrelid = {}::regclass ORDER BY p.pubname").format(name))
    found["publications"] = [tuple(row.values()) for row in curs.fetchall()]
    return found


def carry_settings(curs: Any, table: str, old_schema: str = RETIRED, new_schema: str = "public") -> None:
    """Give the new `table` (just built to replace the old one, of the same shape, its indexes
    already named as the old ones) everything a DBA set on the old; then check nothing differs."""
    old, new = sql.Identifier(old_schema, table), sql.Identifier(new_schema, table)
    # Read with the old schema first on the path, what the old settings name among the tables
    # switched with this one (a foreign key, a policy's subquery) reads bare, so names the new.
    curs.execute(sql.SQL("SET LOCAL search_path = {}, {}").format(sql.Identifier(old_schema), sql.Identifier(new_schema)))
    was = settings(curs, old)
    curs.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(new_schema)))
    now = settings(curs, new)
    owner = was["owner"]
    if now["owner"] != owner:
        curs.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(new, _role(owner)))
        now = settings(curs, new)
    if now["privileges"] != was["privileges"]:
        for grantee in sorted({entry[1] for entry in now["privileges"]}):
            curs.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {} CASCADE").format(new, _role(grantee)))
        _grant(curs, new, was["privileges"], owner)
    for column, entries in was["column_privileges"].items():
        _grant(curs, new, entries, owner, column)
    if was["comment"] is not None:
        curs.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(was["comment"])))
    if was["options"]:
        curs.execute(sql.SQL("ALTER TABLE {} SET ({})").format(
            new, sql.SQL(", ").join(_option(option) for option in was["options"])))
    for (column, statistics, _), (_, fresh, _) in zip(was["columns"], now["columns"], strict=True):
        if statistics != fresh:
            curs.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                new, sql.Identifier(column), sql.Literal(-1 if statistics is None else statistics)))
    for index, _, _, _, options in was["index_settings"]:
        if options:
            curs.execute(sql.SQL("ALTER INDEX {} SET ({})").format(
                sql.Identifier(new_schema, index), sql.SQL(", ").join(_option(option) for option in options)))
    if was["row_security"]:
        curs.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new))
    if was["force_row_security"]:
        curs.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new))
    commands = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}
    for policy, command, permissive, roles, qual, with_check in was["policies"]:
        curs.execute(sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}{}{}").format(
            sql.Identifier(policy), new, sql.SQL("PERMISSIVE" if permissive else "RESTRICTIVE"),
            sql.SQL(commands[command]), sql.SQL(", ").join(_role("" if r == "public" else r) for r in roles),
            sql.SQL(f" USING ({qual})" if qual is not None else ""),
            sql.SQL(f" WITH CHECK ({with_check})" if with_check is not None else "")))
    for trigger, definition, enabled in was["triggers"]:
        # Joined, not formatted: a definition may hold braces (`WHEN (… = '{a}')`).
        before, after = definition.split(" ON . ", 1)
        curs.execute(sql.SQL(before) + sql.SQL(" ON ") + new + sql.SQL(" ") + sql.SQL(after))
        if enabled != "O":
            mode = {"D": "DISABLE TRIGGER {}", "R": "ENABLE REPLICA TRIGGER {}", "A": "ENABLE ALWAYS TRIGGER {}"}
            curs.execute(sql.SQL("ALTER TABLE {} ").format(new) + sql.SQL(mode[enabled]).format(sql.Identifier(trigger)))
    for constraint, kind, definition, _ in was["constraints"]:
        if kind == "f":  # `LIKE` copies no foreign key
            curs.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(new, sql.Identifier(constraint))
                         + sql.SQL(definition))
    replica = {"f": "FULL", "n": "NOTHING"}
    if was["replica_identity"] in replica:
        curs.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(new, sql.SQL(replica[was["replica_identity"]])))
    elif was["replica_identity"] == "i":
        index = next(row[0] for row in was["index_settings"] if row[2])
        curs.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(new, sql.Identifier(index)))
    for publication, row_filter, columns in was["publications"]:
        if columns is None and row_filter is None:
            curs.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(publication), new))
    now = settings(curs, new)
    lost = [key for key in was if was[key] != now[key]]
    if lost:
        raise SettingsNotCarried(
            f"{table}: the rebuilt table would lose its {', '.join(lost)} "
            f"(was {[was[k] for k in lost]!r}, would be {[now[k] for k in lost]!r}); nothing was switched")
