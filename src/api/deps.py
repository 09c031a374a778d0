"""Who is calling, and may they: bearer-token authentication and the role table of api.md."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiProblem
from api.token_cache import TokenCache
from api.tokens import Principal, authenticate, token_digest
from channel_domain.application import ChannelDepartment
from channel_domain.store.projecting import ProjectionRunner
from projections import all_projections


async def department(request: Request) -> ChannelDepartment:
    # Dependencies declared `async` run on the event loop; a plain `def` one would cost each
    # request a hop to the thread pool and back, which the profile of P2 showed adding up.
    department_ = request.app.state.department
    if department_ is None:
        department_ = await run_in_threadpool(department_of, request)
    return department_


def department_of(request: Request) -> ChannelDepartment:
    state = request.app.state
    if state.department is None:
        with state.department_lock:
            if state.department is None:
                state.department = ChannelDepartment(state.database_url)
    return state.department


Department = Annotated[ChannelDepartment, Depends(department)]


def projection_runner(request: Request) -> ProjectionRunner:
    state = request.app.state
    if state.runner is None:
        app = department_of(request)  # before the lock: it takes the lock too
        with state.department_lock:
            if state.runner is None:
                state.runner = ProjectionRunner(app, all_projections())
    return state.runner


Runner = Annotated[ProjectionRunner, Depends(projection_runner)]


_TOKEN_CACHE_MADE = threading.Lock()


def token_cache_of(request: Request, app: ChannelDepartment) -> TokenCache:
    state = request.app.state
    cache = getattr(state, "token_cache", None)
    if cache is None:
        with _TOKEN_CACHE_MADE:  # not the department's lock: that one is held while connecting
            cache = getattr(state, "token_cache", None)
            if cache is None:
                pool = app.event_recorder.datastore.pool
                cache = state.token_cache = TokenCache(pool.conninfo, pool.kwargs)
                cache.start()
    return cache


def _authenticate(app: ChannelDepartment, token: str) -> Principal | None:
    with app.event_recorder.datastore.get_connection() as conn:
        return authenticate(conn, token)


async def caller(request: Request) -> Principal:
    """The token's principal: from this process's token cache while it hears every token change
    (`api/token_cache.py`), else from the database (in the thread pool: it waits)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiProblem(401, "unauthenticated", "send Authorization: Bearer <token>",
                         {"WWW-Authenticate": "Bearer"})
    app = await department(request)
    cache = token_cache_of(request, app)
    digest = token_digest(token)
    principal = cache.get(digest)
    if principal is None:
        generation = cache.generation  # before the read: a change heard meanwhile keeps it out
        principal = await run_in_threadpool(_authenticate, app, token)
        if principal is not None:
            cache.put(digest, principal, generation)
    if principal is None:
        raise ApiProblem(401, "invalid_token", "the token is unknown or revoked",
                         {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(caller)]


def allowed(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting callers holding at least one of `roles`. It calls `caller` itself
    rather than depending on `Caller`: FastAPI resolves each level of nested dependencies with a
    pass of its own per request, and in the profile of a served sale that resolution was the
    largest cost on the event loop's side."""
    admitted = frozenset(roles)

    async def check(request: Request) -> Principal:
        principal = await caller(request)
        if admitted.isdisjoint(principal.roles):
            raise ApiProblem(403, "forbidden", f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return check
