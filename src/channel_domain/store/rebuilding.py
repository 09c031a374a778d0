"""Rebuilding a read model without downtime: build it again in shadow tables from position 0
while the live tables keep serving, check it, then switch in one transaction.

The projection's SQL names its tables without a schema, so the shadow build runs it with
`search_path` set to a schema of its own holding empty copies of those tables. The switch
locks the live tables (waiting for the live worker's batch in flight, and holding its next
one), applies the last events to the shadow, swaps the tables and moves the checkpoint — all
in one transaction, so readers see the old model or the new, never a mix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channel_domain.store.log import EventLog
from channel_domain.store.projecting import Projection

SHADOW = "rebuild_shadow"
RETIRED = "rebuild_retired"


@dataclass(frozen=True)
class RebuildReport:
    name: str
    position: int
    rows: dict[str, tuple[int, int]]  # table -> (rows before, rows after)


class Rebuilder:
    def __init__(self, app: Any, projection: Projection, batch_size: int = 5000) -> None:
        self.app = app
        self.projection = projection
        self.batch_size = batch_size

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
            for table in self.projection.tables:
                curs.execute(f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL)")

    def _apply(self, batch: list[Any], schema: str, curs: Any = None) -> None:
        events = [(n, self.app.mapper.to_domain_event(n)) for n in batch]
        if curs is not None:
            self.projection.apply(curs, events)
            return
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.execute(f"SET LOCAL search_path = {schema}, public")
            self.projection.apply(cursor, events)

    def _switch(self, log: EventLog, progress: Callable[[int], None]) -> RebuildReport:
        tables = self.projection.tables
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(f"LOCK TABLE {', '.join(f'public.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
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
            for table in tables:
                curs.execute(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED}")
                curs.execute(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA public")
            curs.execute(
                "INSERT INTO public.projection_checkpoints (name, position) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
                (self.projection.name, log.position),
            )
            curs.execute(f"DROP SCHEMA {SHADOW} CASCADE")
            curs.execute(f"DROP SCHEMA {RETIRED} CASCADE")
        return RebuildReport(self.projection.name, log.position, rows)
