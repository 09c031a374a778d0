"""Every integration test gets its own PostgreSQL database, cloned from a migrated template.

`CHANNEL_DOMAIN_TEST_DATABASE_URL` names a server to use (CI sets it); without it the
embedded server under ./var/ is started. Tests never skip for want of a database: if none
can be reached, they fail and say why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from psycopg.conninfo import conninfo_to_dict

from channel_domain.application import ChannelDepartment
from channel_domain.store.database import embedded_server_url, scratch_database
from channel_domain.store.migrations import migrate

TEST_DATABASE_URL_VARIABLE = "CHANNEL_DOMAIN_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def server_url() -> str:
    return os.environ.get(TEST_DATABASE_URL_VARIABLE) or embedded_server_url()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, prefix="cd_test_template") as url:
        migrate(url)
        yield conninfo_to_dict(url)["dbname"]


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    with scratch_database(server_url, prefix="cd_test", template=template_database) as url:
        yield url


@pytest.fixture
def app(database_url: str) -> Iterator[ChannelDepartment]:
    with ChannelDepartment(database_url) as application:
        yield application
