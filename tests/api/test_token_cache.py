"""Bearer tokens are checked from each process's token cache, which forgets them the moment a
token changes (api/token_cache.py): no database round trip per request, revocation still heard."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from api import deps
from api.token_cache import TokenCache
from api.tokens import Principal, token_digest
from tests.api.conftest import Api

PARTNERS = "/v1/partners?limit=1"


def _listening_cache(api: Api) -> TokenCache:
    assert api.get(PARTNERS, actor="warm", roles=("auditor",)).status_code == 200
    cache = api.client.app.state.token_cache
    deadline = time.monotonic() + 10
    while not cache.listening:
        assert time.monotonic() < deadline, "the token cache never started listening"
        time.sleep(0.01)
    return cache


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token look-up in the database, by token."""
    made: list[str] = []
    authenticate = deps.authenticate

    def counted(conn, token):  # noqa: ANN001, ANN202
        made.append(token)
        return authenticate(conn, token)

    monkeypatch.setattr(deps, "authenticate", counted)
    return made


def test_a_token_is_looked_up_once_then_served_from_the_cache(api, lookups):
    _listening_cache(api)
    token = api.token("reader", "auditor")
    for _ in range(10):
        assert api.get(PARTNERS, actor="reader", roles=("auditor",)).status_code == 200
    assert lookups.count(token) == 1


def _revoke_by_sql(api: Api, actor: str) -> None:
    """As an operator would, not through `tokens revoke`: the trigger must notify all the same."""
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        assert conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE actor = %s", (actor,)).rowcount == 1


def refused_after(api: Api, headers: dict[str, str], within_s: float = 1.0) -> float:
    """Seconds until a request with `headers` is refused as an invalid token. The revocation
    travels as a notification: it is heard about a millisecond after its commit, so a request
    sent in that instant may still pass (api/token_cache.py); never one sent after."""
    began = time.monotonic()
    while True:
        answer = api.client.get(PARTNERS, headers=headers)
        if answer.status_code == 401:
            assert answer.json()["code"] == "invalid_token"
            return time.monotonic() - began
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - began < within_s, f"still admitted {within_s} s after the revocation"
        time.sleep(0.005)


def test_a_cached_token_revoked_by_any_writer_is_refused_once_the_change_is_heard(api, lookups):
    cache = _listening_cache(api)
    headers = api.headers("leaver", "auditor")
    assert api.client.get(PARTNERS, headers=headers).status_code == 200
    assert api.client.get(PARTNERS, headers=headers).status_code == 200  # served from the cache
    generation = cache.generation
    _revoke_by_sql(api, "leaver")
    refused_after(api, headers)
    assert cache.generation > generation  # heard, not aged out
    assert api.client.get(PARTNERS, headers=headers).status_code == 401


def test_a_lost_listening_session_forgets_every_token_and_the_next_one_hears_again(api, lookups):
    cache = _listening_cache(api)
    headers = api.headers("stayer", "auditor")
    assert api.client.get(PARTNERS, headers=headers).status_code == 200
    generation = cache.generation
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE query = 'LISTEN api_tokens_changed' AND datname = current_database()").fetchall()
    assert ended == [(True,)]
    deadline = time.monotonic() + 10
    while cache.generation == generation or not cache.listening:
        assert time.monotonic() < deadline, "the token cache did not listen again"
        time.sleep(0.01)
    looked_up = len(lookups)
    assert api.client.get(PARTNERS, headers=headers).status_code == 200
    assert len(lookups) == looked_up + 1  # forgotten on the loss: asked again
    _revoke_by_sql(api, "stayer")
    refused_after(api, headers)


def test_a_look_up_that_raced_a_change_is_not_kept():
    cache = TokenCache("dbname=unused")
    cache._changed(listening=True)  # as on connecting
    principal = Principal(actor="a", roles=("auditor",), token_id=uuid.uuid4())
    digest = token_digest("cd_raced")
    before = cache.generation
    cache._changed(listening=True)  # a token changed while the look-up was in flight
    cache.put(digest, principal, before)
    assert cache.get(digest) is None
    cache.put(digest, principal, cache.generation)
    assert cache.get(digest) == principal


def test_nothing_is_kept_while_not_listening():
    cache = TokenCache("dbname=unused")
    principal = Principal(actor="a", roles=("auditor",), token_id=uuid.uuid4())
    cache.put(token_digest("cd_x"), principal, cache.generation)
    assert cache.get(token_digest("cd_x")) is None
    cache._changed(listening=True)
    cache.put(token_digest("cd_x"), principal, cache.generation)
    cache._changed(listening=False)  # the session is lost: everything goes
    assert cache.get(token_digest("cd_x")) is None
