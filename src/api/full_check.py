"""The whole-log verification (`integrity.verify` over every event), one at a time for the whole
service: the workspace's `POST /audit/verification` and the API's `GET /v1/audit/verify` share one
PostgreSQL session advisory lock, so neither more server processes (`serve --workers`) nor more
nodes nor an auditor's script can run several of these reads of the whole log at once."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import psycopg

from api.errors import ApiProblem
from channel_domain.store import integrity

FULL_VERIFY_LOCK = "channel-domain:full-verify"  # the advisory lock's key, hashed as the other locks' are

# How long the last check in this process took: the Retry-After given while another runs. The
# one running may be another node's, whose time this process cannot know; a guess until one ends.
_last_s = [5.0]


class VerificationRunning(ApiProblem):
    """Another full verification holds the lock; nothing was read."""

    def __init__(self) -> None:
        self.wait_s = max(1, math.ceil(_last_s[0]))
        super().__init__(503, "verification_running",
                         f"a full verification of the log is already running on this service (one at a time);"
                         f" try again in about {self.wait_s} s", {"Retry-After": str(self.wait_s)})


def verify_alone(datastore: Any) -> dict[str, Any]:
    """`integrity.verify`'s answer, or `VerificationRunning` at once when another process, node or
    thread is running one. Run it in a worker thread: a request given up on still holds the lock
    until its check ends, so a reload cannot start a second one."""
    # The lock lives in this connection's session, held (out of the pool) for the whole check.
    with datastore.get_connection() as lock_conn:
        got = lock_conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)) AS got",
                                (FULL_VERIFY_LOCK,)).fetchone()["got"]
        if not got:
            raise VerificationRunning
        try:
            started = time.monotonic()
            verified = integrity.verify(datastore).as_dict()
            _last_s[:] = [time.monotonic() - started]
            return verified
        finally:
            try:
                lock_conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (FULL_VERIFY_LOCK,))
            except psycopg.Error:
                # Back in the pool still holding the lock, it would refuse every check for as long
                # as the connection lives; closed, the pool drops it and PostgreSQL frees the lock.
                with contextlib.suppress(psycopg.Error):
                    lock_conn.close()
