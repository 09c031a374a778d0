"""The integration channels are tested over HTTP, as clients use them."""

from tests.api.conftest import api  # noqa: F401 - the HTTP client fixture


# The NATS relay's tests: a JetStream server (tests/natsserver.py) shared by the session.

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.natsserver import nats_url as _shared_nats_url  # noqa: E402


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """`CHANNEL_DOMAIN_TEST_NATS_URL`, else a `nats-server -js` started for the session."""
    with _shared_nats_url() as url:
        yield url
