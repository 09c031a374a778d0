"""An HTTP client on a fresh database, and tokens for whoever a test needs to be."""

from __future__ import annotations

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
        """Bring every read model up to date (tests run without the background projector)."""
        runner = projection_runner(_AppRequest(self.client.app))
        for projection in runner.projections:
            runner.catch_up(projection)

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
