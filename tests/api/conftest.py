"""An HTTP client on a fresh database, and tokens for whoever a test needs to be."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import department_of, projection_runner
from api.tokens import create_token


class _AppRequest:
    """The one thing the dependency functions read from a request."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app


# How long `Api.catch_up` keeps passing over a gap whose writers have not ended yet.
CATCH_UP_S = 10.0


class Api:
    """Talks to the service as named actors; each actor's token is issued on first use."""

    def __init__(self, client: TestClient, database_url: str) -> None:
        self.client = client
        self.database_url = database_url
        self.tokens: dict[tuple[str, tuple[str, ...]], str] = {}

    @property
    def department(self):  # noqa: ANN201 - the app's ChannelDepartment, for steps behind the API
        return department_of(_AppRequest(self.client.app))

    def catch_up(self) -> None:
        """Bring every read model up to the head (tests run without the background projector).
        A pass stops at a gap in the positions until a later look shows that every writer that
        could still fill it has ended (a command that rolled back after drawing a position leaves
        one for good; on a shared server another database's transactions can make the look wait),
        so a read model still short of the head, and not stopped, gets more passes for a while."""
        runner = projection_runner(_AppRequest(self.client.app))
        head = runner.head()
        behind = list(runner.projections)
        deadline = time.monotonic() + CATCH_UP_S
        while behind:
            for projection in behind:
                runner.catch_up(projection)
            short = {state.name for state in runner.progress() if state.position < head and state.failure is None}
            behind = [projection for projection in behind if projection.name in short]
            if behind and time.monotonic() > deadline:
                return
            if behind:
                time.sleep(0.01)

    def token(self, actor: str, *roles: str) -> str:
        key = (actor, tuple(sorted(roles)))
        if key not in self.tokens:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                self.tokens[key] = create_token(conn, actor, list(roles))[1]
        return self.tokens[key]

    def headers(self, actor: str, *roles: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(actor, *roles)}", **extra}

    def post(self, path: str, body: Any = None, *, actor: str, roles: tuple[str, ...], **headers: str):
        return self.client.post(path, json=body, headers=self.headers(actor, *roles, **headers))

    def get(self, path: str, *, actor: str = "auditor-1", roles: tuple[str, ...] = ("auditor",), **params: Any):
        return self.client.get(path, params=params, headers=self.headers(actor, *roles))


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    with TestClient(create_app(database_url)) as client:
        yield Api(client, database_url)
