"""Every integration test gets its own PostgreSQL database, cloned from a migrated template.

`CHANNEL_DOMAIN_TEST_DATABASE_URL` names a server to use (CI sets it); without it the
embedded server under ./var/ is started. Tests never skip for want of a database: if none
can be reached, they fail and say why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from channel_domain.application import ChannelDepartment
from channel_domain.store.database import embedded_server_url, with_database_name
from channel_domain.store.migrations import migrate

TEST_DATABASE_URL_VARIABLE = "CHANNEL_DOMAIN_TEST_DATABASE_URL"


def _admin(server_url: str) -> psycopg.Connection:
    return psycopg.connect(with_database_name(server_url, "postgres"), autocommit=True)


@pytest.fixture(scope="session")
def server_url() -> str:
    return os.environ.get(TEST_DATABASE_URL_VARIABLE) or embedded_server_url()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    name = f"cd_test_template_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(with_database_name(server_url, name))
        yield name
    finally:
        with _admin(server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    name = f"cd_test_{uuid.uuid4().hex[:16]}"
    with _admin(server_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield with_database_name(server_url, name)
    finally:
        with _admin(server_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def app(database_url: str) -> Iterator[ChannelDepartment]:
    application = ChannelDepartment(database_url)
    try:
        yield application
    finally:
        application.close()
