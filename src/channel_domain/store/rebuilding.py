"""Rebuilding a read model without downtime: build it again in shadow tables from position 0
while the live tables keep serving, check it, then switch in one transaction.

The projection's SQL names its tables without a schema, so the shadow build runs it with
`search_path` set to a schema of its own holding empty copies of those tables. The switch
locks the live tables (waiting for the live worker's batch in flight, and holding its next
one), applies the last events to the shadow, swaps the tables and moves the checkpoint — all
in one transaction, so readers see the old model or the new, never a mix. Views over the
tables (`audit_findings`, `commission_statements`) follow them by object id, not by name, so
the switch drops them and creates them again over the new tables.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from channel_domain.store.log import EventLog
from channel_domain.store.projecting import Projection, share_out

SHADOW = "rebuild_shadow"
RETIRED = "rebuild_retired"


@dataclass(frozen=True)
class RebuildReport:
    name: str
    position: int
    rows: dict[str, tuple[int, int]]  # table -> (rows before, rows after)


class NotRebuildable(Exception):
    """The projection keeps evidence (it says `rebuildable = False`): rebuilt from the log as it
    is now, it would vouch for whatever the log has become."""


class Rebuilder:
    """Rebuilds one read model, or several in one pass over the log: each batch is read and
    decoded once for all of them, and they switch together."""

    def __init__(self, app: Any, projection: Projection, *others: Projection, batch_size: int = 5000) -> None:
        self.projections = [projection, *others]
        for chosen in self.projections:
            if not getattr(chosen, "rebuildable", True):
                raise NotRebuildable(f"{chosen.name} is evidence, not a view: it is never rebuilt")
        self.app = app
        self.batch_size = batch_size

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
        bound to one core per process, and read models do not depend on one another."""
        self._create_shadow()
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
        return self._switch(built, progress)

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

    def _switch(self, built: list[tuple[list[Projection], int]], progress: Callable[[int], None]) -> RebuildReport:
        tables = self.tables
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(f"LOCK TABLE {', '.join(f'public.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
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
            for view in reversed(views):
                curs.execute(f"DROP VIEW public.{view.name}")
            for table in tables:
                curs.execute(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED}")
                curs.execute(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA public")
            curs.execute("SET LOCAL search_path = public")
            for view in views:
                curs.execute(f"CREATE VIEW public.{view.name} AS {view.definition}")
                if view.comment is not None:
                    curs.execute(sql.SQL("COMMENT ON VIEW public.{} IS {}").format(
                        sql.Identifier(view.name), sql.Literal(view.comment)))
            for chosen in self.projections:
                curs.execute(
                    "INSERT INTO public.projection_checkpoints (name, position) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
                    (chosen.name, positions[chosen.name]),
                )
            curs.execute(f"DROP SCHEMA {SHADOW} CASCADE")
            curs.execute(f"DROP SCHEMA {RETIRED} CASCADE")
        return RebuildReport(", ".join(chosen.name for chosen in self.projections), min(positions.values()), rows)


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
    name: str
    definition: str
    comment: str | None


def _dependent_views(curs: Any, tables: tuple[str, ...]) -> list[View]:
    """Views reading the tables, directly or through other views, each after those it reads;
    definitions are taken with `public` alone on the search path, so they name tables bare."""
    curs.execute("SET LOCAL search_path = public")
    curs.execute(
        "WITH RECURSIVE reads (view, depth) AS ("
        "  SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        "  WHERE d.refobjid = ANY (%s::regclass[]) AND r.ev_class <> d.refobjid"
        "  UNION"
        "  SELECT r.ev_class, reads.depth + 1 FROM reads JOIN pg_depend d ON d.refobjid = reads.view"
        "  JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> reads.view)"
        " SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition,"
        " obj_description(c.oid, 'pg_class') AS comment, max(reads.depth) AS depth"
        " FROM reads JOIN pg_class c ON c.oid = reads.view AND c.relkind = 'v'"
        " GROUP BY c.oid, c.relname ORDER BY depth, c.relname",
        ([f"public.{table}" for table in tables],),
    )
    return [View(row["name"], row["definition"], row["comment"]) for row in curs.fetchall()]
