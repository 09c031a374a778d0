"""Revocation reaches requests that outlive their token check: a Server-Sent Events stream
(or a waiting long-poll) was admitted once, when it started, and would otherwise read the log
for as long as its connection lasts.

One `TokenWatch` per process asks the database, once every `interval_s` while any such request
is open, which of their tokens still stand — one query for all of them, however many streams
are open — and each request looks at the answer whenever it wakes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from api.tokens import standing

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0

Revoked = Callable[[], bool]


class TokenWatch:
    def __init__(self, app: Any, *, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.app = app
        self.interval_s = interval_s
        self.checks = 0  # queries made, for tests
        self._open: collections.Counter[uuid.UUID] = collections.Counter()
        self._revoked: set[uuid.UUID] = set()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watching(self, token_id: uuid.UUID) -> AsyncIterator[Revoked]:
        """While the block runs, `token_id` is checked; the block gets a callable that tells
        whether it has been revoked (or deleted) since."""
        self._open[token_id] += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="token-watch")
        try:
            yield lambda: token_id in self._revoked
        finally:
            self._open[token_id] -= 1
            if not self._open[token_id]:
                del self._open[token_id]
                self._revoked.discard(token_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        try:
            while self._open:
                await asyncio.sleep(self.interval_s)
                watched = [token_id for token_id in self._open if token_id not in self._revoked]
                if not watched:
                    continue
                try:
                    still = await asyncio.to_thread(self._standing, watched)
                except Exception as error:  # noqa: BLE001 - the database away: the streams stall anyway; ask again
                    logger.warning("could not check the open streams' tokens: %s", type(error).__name__)
                    continue
                self._revoked.update(token_id for token_id in watched if token_id not in still)
        finally:
            self._task = None

    def _standing(self, token_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        self.checks += 1
        with self.app.event_recorder.datastore.get_connection() as conn:
            return standing(conn, token_ids)
