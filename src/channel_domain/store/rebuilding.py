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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from channel_domain.store.log import EventLog
from channel_domain.store.projecting import Projection

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

    def rebuild(self, progress: Callable[[int], None] = lambda _: None) -> RebuildReport:
        """`progress` is called with the position reached after each batch."""
        self._create_shadow()
        log = EventLog(self.app.event_recorder)
        for batch in log.follow(self.batch_size):
            self._apply(batch, SHADOW)
            progress(batch[-1].id)
        return self._switch(log, progress)

    def _create_shadow(self) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
            curs.execute(f"CREATE SCHEMA {SHADOW}")
            for table in self.tables:
                curs.execute(f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL)")

    def _apply(self, batch: list[Any], schema: str, curs: Any = None) -> None:
        events = [(n, self.app.mapper.to_domain_event(n)) for n in batch]
        if curs is not None:
            for chosen in self.projections:
                chosen.apply(curs, events)
            return
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(f"SET LOCAL search_path = {schema}, public")
            for chosen in self.projections:
                chosen.apply(cursor, events)

    def _switch(self, log: EventLog, progress: Callable[[int], None]) -> RebuildReport:
        tables = self.tables
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(f"LOCK TABLE {', '.join(f'public.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
            views = _dependent_views(curs, tables)
            # The live worker is held now; bring the shadow up to what is safely readable.
            curs.execute(f"SET LOCAL search_path = {SHADOW}, public")
            for batch in log.follow(self.batch_size):
                self._apply(batch, SHADOW, curs)
                progress(batch[-1].id)
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
                    (chosen.name, log.position),
                )
            curs.execute(f"DROP SCHEMA {SHADOW} CASCADE")
            curs.execute(f"DROP SCHEMA {RETIRED} CASCADE")
        return RebuildReport(", ".join(chosen.name for chosen in self.projections), log.position, rows)


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
