"""The breaker: which failures mean the database is away, and how it refuses, looks and reopens."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from fastapi.testclient import TestClient
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from api import breaker as breaker_module
from api.app import create_app
from api.breaker import DatabaseBreaker, DatabaseProbe
from channel_domain.store.database import library_environment
from channel_domain.store.recorder import means_database_away, means_database_busy


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


NO_SLOTS = psycopg.OperationalError(
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  too many connections for role "x"')


@pytest.mark.parametrize(("cause", "away", "busy"), [
    (PoolTimeout("no connection in 5 s"), False, True),  # busy, unless a look finds the database away
    (NO_SLOTS, False, True),                             # refused at connect time: no SQLSTATE, only words
    (_psycopg_error("53300"), False, True),              # too_many_connections
    (_psycopg_error(None), True, False),                 # the connection broke: no SQLSTATE
    (_psycopg_error("57P01"), True, False),              # admin_shutdown
    (_psycopg_error("08006"), True, False),              # connection_failure
    (_psycopg_error("40P01"), False, False),             # deadlock_detected: worth a retry, the database is there
    (_psycopg_error("57014"), False, False),             # query_canceled (a statement timeout)
])
def test_only_failures_to_reach_the_database_mean_it_is_away(cause, away, busy):
    assert means_database_away(_wrapped(cause)) is away
    assert means_database_busy(_wrapped(cause)) is busy


def test_refuses_for_a_moment_then_looks_and_reopens_when_it_connects(database_url, monkeypatch):
    monkeypatch.setattr(breaker_module, "PAUSE_S", 0.05)
    returns = []
    breaker = DatabaseBreaker("postgresql://nobody@127.0.0.1:1/none", on_return=lambda: returns.append(1))

    async def scenario() -> None:
        assert await breaker.admits()
        breaker.trip()
        assert not await breaker.admits()       # refusing, without looking
        assert breaker.probe.looks == 0
        await asyncio.sleep(0.06)
        assert not await breaker.admits()       # looked: nothing listens there; refusing again
        assert breaker.probe.looks == 1
        breaker.probe.database_url = database_url
        await asyncio.sleep(0.06)
        assert await breaker.admits()           # looked: the database is back
        assert breaker.refusing_until is None and returns == [1]  # the pools were told, once
        await breaker.probe.close()

    asyncio.run(scenario())


def test_no_connection_in_time_is_busy_while_the_database_answers_and_trips_only_when_it_does_not(database_url):
    async def scenario() -> None:
        breaker = DatabaseBreaker(database_url)
        assert await breaker.is_busy()                  # the database answers: busy, not away
        assert breaker.refusing_until is None and await breaker.admits()
        await breaker.probe.close()
        breaker.probe = DatabaseProbe("postgresql://nobody@127.0.0.1:1/none")
        assert not await breaker.is_busy()              # nothing answers there: an outage
        assert breaker.refusing_until is not None and not await breaker.admits()

    asyncio.run(scenario())


def test_a_busy_service_answers_service_busy_without_tripping_the_breaker(database_url):
    # A request that got no pooled connection in time (raised where the pool raises it), while
    # the database answers: 503 service_busy with Retry-After, and the next request is served.
    app = create_app(database_url)

    @app.get("/v1/_starved")
    async def starved() -> None:
        try:
            raise PoolTimeout("couldn't get a connection after 5.00 sec")
        except PoolTimeout as error:
            raise OperationalError(str(error)) from error  # as the library re-raises it

    with TestClient(app) as client:
        answer = client.get("/v1/_starved")
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "service_busy" and answer.headers["Retry-After"]
        assert app.state.breaker.refusing_until is None
        assert client.get("/v1/projections", headers={"Authorization": "Bearer cd_nothing"}).status_code == 401


def test_an_unreachable_database_after_no_connection_in_time_still_trips_the_breaker():
    app = create_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")

    @app.get("/v1/_starved")
    async def starved() -> None:
        try:
            raise PoolTimeout("couldn't get a connection after 5.00 sec")
        except PoolTimeout as error:
            raise OperationalError(str(error)) from error

    with TestClient(app) as client:
        answer = client.get("/v1/_starved")
        assert (answer.status_code, answer.json()["code"]) == (503, "database_unavailable")
        assert app.state.breaker.refusing_until is not None
        refused = client.get("/v1/projections", headers={"Authorization": "Bearer cd_nothing"})
        assert (refused.status_code, refused.json()["code"]) == (503, "database_unavailable")  # at once, by the gate


def _app_whose_connection_breaks(url: str):
    app = create_app(url)

    @app.get("/v1/_broken")
    async def broken() -> None:
        try:
            raise psycopg.errors.AdminShutdown("terminating connection due to administrator command")
        except psycopg.Error as error:
            raise OperationalError(str(error)) from error  # as the library re-raises it

    return app


def test_one_broken_connection_while_the_database_answers_leaves_the_breaker_closed(database_url):
    # The real thing: tests/reliability/test_one_dead_connection.py.
    app = _app_whose_connection_breaks(database_url)
    with TestClient(app) as client:
        answer = client.get("/v1/_broken")
        assert (answer.status_code, answer.json()["code"]) == (503, "database_unavailable")
        assert answer.headers["Retry-After"]
        assert app.state.breaker.refusing_until is None
        assert client.get("/v1/projections", headers={"Authorization": "Bearer cd_nothing"}).status_code == 401


def test_a_broken_connection_with_the_database_unreachable_still_trips_the_breaker():
    app = _app_whose_connection_breaks("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    with TestClient(app) as client:
        answer = client.get("/v1/_broken")
        assert (answer.status_code, answer.json()["code"]) == (503, "database_unavailable")
        assert app.state.breaker.refusing_until is not None
        refused = client.get("/v1/projections", headers={"Authorization": "Bearer cd_nothing"})
        assert (refused.status_code, refused.json()["code"]) == (503, "database_unavailable")  # at once, by the gate


def test_the_pool_is_sized_from_the_environment_and_a_bad_size_stops_start_up(monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_SIZE", "1")
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_MAX_OVERFLOW", "0")
    settings = library_environment("postgresql://u@h/db")
    assert (settings["POSTGRES_POOL_SIZE"], settings["POSTGRES_MAX_OVERFLOW"]) == ("1", "0")
    monkeypatch.setenv("CHANNEL_DOMAIN_POOL_SIZE", "0")
    with pytest.raises(ValueError, match="CHANNEL_DOMAIN_POOL_SIZE"):
        library_environment("postgresql://u@h/db")


def test_group_commit_is_bounded_from_the_environment_and_a_bad_bound_stops_start_up(monkeypatch):
    assert library_environment("postgresql://u@h/db")["GROUP_COMMIT_MAX_COMMANDS"] == "64"
    monkeypatch.setenv("CHANNEL_DOMAIN_GROUP_COMMIT_MAX_COMMANDS", "1")
    settings = library_environment("postgresql://u@h/db")
    assert settings["GROUP_COMMIT_MAX_COMMANDS"] == "1"
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("CHANNEL_DOMAIN_GROUP_COMMIT_MAX_COMMANDS", bad)
        with pytest.raises(ValueError, match="CHANNEL_DOMAIN_GROUP_COMMIT_MAX_COMMANDS"):
            library_environment("postgresql://u@h/db")
