"""Answering promptly while the database is away, and telling that apart from a busy service.

When a request finds the database gone, every request after it would wait for a pooled
connection that will not come. The breaker remembers the failure: for a moment the service
answers 503 at once, then one request looks while the others keep getting 503; when the
database answers, the pools replace their dead connections (which no request has touched
meanwhile) and everyone goes back to them.

A request that got no pooled connection in time is not proof of an outage: under load every
connection may simply be busy. Such a request asks the probe, and only a database that does
not answer trips the breaker; one that answers makes the request a `service_busy` refusal.

Nor is a request whose own connection broke: one pooled connection can die alone (an
operator's `pg_terminate_backend`, a proxy cutting an idle socket) while the database serves
everyone else. That request is refused, but the breaker trips only if a look taken after the
failure finds the database away — else one dead connection would refuse every request on the
node for a pause.

The probe is also what `/health` reports, so that health costs the database next to nothing
however often it is asked: one connection of its own per process, kept open, at most one look
in flight, and a look at most every `LOOK_EVERY_S`; everyone else reads the last look.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from starlette.concurrency import run_in_threadpool

from channel_domain.store.recorder import means_database_away, means_database_busy

PAUSE_S = 1.0  # how long to refuse before looking again
PROBE_TIMEOUT_S = 1  # to connect, and for the look's one query
LOOK_EVERY_S = 0.5  # health answers from a look at most this old
FRESH_S = 0.2  # a pool timeout is judged on a look at most this old: an outage must not pass for load


@dataclass(frozen=True)
class Look:
    """What the database said when the probe last asked."""

    at: float  # time.monotonic()
    # "ok"; "busy": it answered, but had no room (no slot, or the query timed out); "error": it
    # answered the query with an error; "away": no answer (refused, broken, shutting down, silent)
    state: str
    detail: str  # "ok", or the name of the error met
    migrations: int | None = None


class DatabaseProbe:
    """One per server process, used from its event loop only."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.looks = 0  # how many times it has asked the database
        self._connection: psycopg.AsyncConnection | None = None
        self._last: Look | None = None
        self._looking: asyncio.Task[Look] | None = None

    async def look(self, max_age_s: float | None = None) -> Look:
        """The last look if it is at most `max_age_s` (default `LOOK_EVERY_S`) old, else a new
        one — shared by everyone who asks while it runs."""
        last = self._last
        max_age_s = LOOK_EVERY_S if max_age_s is None else max_age_s
        if last is not None and time.monotonic() - last.at <= max_age_s:
            return last
        task = self._looking
        if task is None:
            task = self._looking = asyncio.get_running_loop().create_task(self._look())
            task.add_done_callback(self._done_looking)
        # Shielded: a client that disconnects cancels its own wait, not the look others share.
        return await asyncio.shield(task)

    def _done_looking(self, _: asyncio.Task[Look]) -> None:
        self._looking = None

    async def _look(self) -> Look:
        self.looks += 1
        try:
            migrations = await asyncio.wait_for(self._ask(), timeout=3 * PROBE_TIMEOUT_S + 1)
            look = Look(time.monotonic(), "ok", "ok", migrations)
        except (psycopg.Error, TimeoutError) as error:
            await self.close()
            look = Look(time.monotonic(), _state_after(error), type(error).__name__)
        self._last = look
        return look

    async def _ask(self) -> int:
        kept = self._connection
        if kept is not None and not kept.closed:
            try:
                return await self._count(kept)
            except psycopg.Error as error:
                if not means_database_away(error):
                    raise
                # The kept connection died on its own (terminated, or the database restarted
                # since it was opened): that says nothing of the database now, a new one does.
                await self.close()
        self._connection = await psycopg.AsyncConnection.connect(
            self.database_url, connect_timeout=PROBE_TIMEOUT_S, autocommit=True)
        await self._connection.execute(f"SET statement_timeout = {PROBE_TIMEOUT_S * 1000}")
        return await self._count(self._connection)

    @staticmethod
    async def _count(connection: psycopg.AsyncConnection) -> int:
        cursor = await connection.execute("SELECT count(*) FROM _yoyo_migration")
        row = await cursor.fetchone()
        return row[0] if row else 0

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # it may be broken already: that is why it goes
                await connection.close()


def _state_after(error: Exception) -> str:
    if isinstance(error, TimeoutError) or means_database_away(error):
        return "away"
    if isinstance(error, psycopg.errors.QueryCanceled) or means_database_busy(error):
        return "busy"
    return "error"  # it answered, with an error of its own (no schema there, say): not an outage


class DatabaseBreaker:
    """One per server process; used from its event loop only, so it needs no lock."""

    def __init__(self, database_url: str, on_return: Callable[[], None] = lambda: None) -> None:
        self.probe = DatabaseProbe(database_url)
        self.on_return = on_return  # called (in a thread) when the database is found back
        self.refusing_until: float | None = None  # None: the database is taken to be there
        self._looking = False

    def trip(self) -> None:
        self.refusing_until = time.monotonic() + PAUSE_S

    async def admits(self) -> bool:
        if self.refusing_until is None:
            return True
        if self._looking or time.monotonic() < self.refusing_until:
            return False
        self._looking = True
        try:
            look = await self.probe.look(max_age_s=0)
            if look.state == "away":
                self.trip()
                return False
            try:
                await run_in_threadpool(self.on_return)
            except psycopg.Error:  # gone again while the pools were checked
                self.trip()
                return False
        finally:
            self._looking = False
        self.refusing_until = None
        return True

    async def trip_if_away(self, max_age_s: float = 0) -> bool:
        """After a request's own connection broke: True, and the breaker trips, only if a look
        taken now finds the database away; a look from before the failure would prove nothing."""
        look = await self.probe.look(max_age_s=max_age_s)
        if look.state == "away":
            self.trip()
            return True
        return False

    async def is_busy(self) -> bool:
        """After a request got no connection: True if the database answers (the service is
        busy), else the breaker trips and False (the database is away)."""
        return not await self.trip_if_away(max_age_s=FRESH_S)
