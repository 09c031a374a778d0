"""Who is calling, and may they: bearer-token authentication and the role table of api.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiProblem
from api.tokens import Principal, authenticate
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


def caller(request: Request) -> Principal:  # a plain def: it waits for the database
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "unauthenticated", "send Authorization: Bearer <token>",
                         {"WWW-Authenticate": "Bearer"})
    app = department_of(request)
    with app.event_recorder.datastore.get_connection() as conn:
        principal = authenticate(conn, token.strip())
    if principal is None:
        raise ApiProblem(401, "invalid_token", "the token is unknown or revoked",
                         {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(caller)]



def allowed(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency admitting callers holding at least one of `roles`."""

    async def check(principal: Caller) -> Principal:
        if not set(principal.roles) & set(roles):
            raise ApiProblem(403, "forbidden", f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return check
