"""Answering promptly while the database is away.

When a request finds the database gone, every request after it would wait for a pooled
connection that will not come. The breaker remembers the failure: for a moment the service
answers 503 at once, then one request looks (a direct connection, at most a second) while the
others keep getting 503; when it connects, the pools replace their dead connections (which no
request has touched meanwhile) and everyone goes back to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from starlette.concurrency import run_in_threadpool

PAUSE_S = 1.0  # how long to refuse before looking again
PROBE_TIMEOUT_S = 1


class DatabaseBreaker:
    """One per server process; used from its event loop only, so it needs no lock."""

    def __init__(self, database_url: str, on_return: Callable[[], None] = lambda: None) -> None:
        self.database_url = database_url
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
            async with await psycopg.AsyncConnection.connect(self.database_url, connect_timeout=PROBE_TIMEOUT_S):
                pass
            await run_in_threadpool(self.on_return)
        except psycopg.Error:
            self.trip()
            return False
        finally:
            self._looking = False
        self.refusing_until = None
        return True
