"""The breaker: which failures mean the database is away, and how it refuses, looks and reopens."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from api import breaker as breaker_module
from api.breaker import DatabaseBreaker
from channel_domain.store.recorder import means_database_away


def _wrapped(cause: Exception) -> OperationalError:
    try:
        raise OperationalError(str(cause)) from cause  # as the library re-raises psycopg's errors
    except OperationalError as error:
        return error


def _psycopg_error(sqlstate: str | None) -> psycopg.OperationalError:
    error = psycopg.OperationalError("from the server")
    if sqlstate is not None:
        error = psycopg.errors.lookup(sqlstate)("from the server")
    return error


@pytest.mark.parametrize(("cause", "away"), [
    (PoolTimeout("no connection in 5 s"), True),
    (_psycopg_error(None), True),         # the connection broke: no SQLSTATE
    (_psycopg_error("57P01"), True),      # admin_shutdown
    (_psycopg_error("08006"), True),      # connection_failure
    (_psycopg_error("40P01"), False),     # deadlock_detected: worth a retry, but the database is there
    (_psycopg_error("57014"), False),     # query_canceled (a statement timeout)
])
def test_only_failures_to_reach_the_database_mean_it_is_away(cause, away):
    assert means_database_away(_wrapped(cause)) is away


def test_refuses_for_a_moment_then_looks_and_reopens_when_it_connects(server_url, monkeypatch):
    monkeypatch.setattr(breaker_module, "PAUSE_S", 0.05)
    returns = []
    breaker = DatabaseBreaker("postgresql://nobody@127.0.0.1:1/none", on_return=lambda: returns.append(1))
    assert asyncio.run(breaker.admits())
    breaker.trip()
    assert not asyncio.run(breaker.admits())       # refusing, without looking
    asyncio.run(asyncio.sleep(0.06))
    assert not asyncio.run(breaker.admits())       # looked: nothing listens there; refusing again
    breaker.database_url = server_url
    asyncio.run(asyncio.sleep(0.06))
    assert asyncio.run(breaker.admits())           # looked: the database is back
    assert breaker.refusing_until is None and returns == [1]  # the pools were told, once
