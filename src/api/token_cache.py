"""Bearer tokens checked without a database round trip per request, and revocation still heard.

Each process keeps the principals of the tokens it has seen, by the token's SHA-256, and uses
them only while it *listens* to every change of `api_tokens`: a trigger (migration 0038) sends
`NOTIFY api_tokens_changed` in the transaction that revokes, deletes or rewrites a token,
whoever makes it — `channel-domain tokens revoke`, another server, an operator's SQL. A
notification empties the cache; so does losing the listening connection, and while it is down
nothing is cached at all (every request asks the database, as before).

The one window left is the notification's own travel: a request checked in the instant
between the revoking commit and its notification reaching this process (well under a
millisecond on one host) is admitted, as it would have been had it arrived an instant earlier.
A look-up that raced a change is never cached: each change moves `generation`, and a principal
read before the move is not kept. Entries also age out after `MAX_AGE_S`, a bound should a
notification ever be lost without the connection failing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from api.tokens import Principal
from channel_domain.store.recorder import TCP_KEEPALIVES

logger = logging.getLogger(__name__)

CHANNEL = "api_tokens_changed"
MAX_AGE_S = 60.0
MAX_ENTRIES = 10_000


class TokenCache:
    def __init__(self, conninfo: str, connect_options: dict[str, Any] | None = None) -> None:
        self._conninfo = conninfo
        self._options = {key: value for key, value in (connect_options or {}).items()
                         if key not in ("autocommit", "row_factory", "prepare_threshold")}
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self._listening = False
        self.generation = 0  # moves on every change heard and every (re)connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="token-cache", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def get(self, digest: bytes) -> Principal | None:
        with self._lock:
            if not self._listening:
                return None
            found = self._entries.get(digest)
            if found is None:
                return None
            principal, since = found
            if time.monotonic() - since > MAX_AGE_S:
                del self._entries[digest]
                return None
            return principal

    def put(self, digest: bytes, principal: Principal, generation: int) -> None:
        """Keeps a principal read from the database at `generation` — unless a change was
        heard since (the read may predate it) or nothing is being heard."""
        with self._lock:
            if not self._listening or generation != self.generation:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic())

    def _changed(self, *, listening: bool) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1
            self._listening = listening

    def _listen(self) -> None:
        trouble = ""
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, **{**self._options, **TCP_KEEPALIVES, "autocommit": True}) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Anything changed before LISTEN took effect is forgotten with the cache.
                    self._changed(listening=True)
                    trouble = ""
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self._changed(listening=True)
            except Exception as error:  # noqa: BLE001 - no listening, no caching; try again shortly
                self._changed(listening=False)
                text = f"{type(error).__name__}: {error}"
                if text != trouble:
                    logger.warning("token cache: not listening for token changes (%s); checking every request", text)
                trouble = text
                self._stop.wait(1.0)
        self._changed(listening=False)
