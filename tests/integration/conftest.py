"""The integration channels are tested over HTTP, as clients use them."""

from tests.api.conftest import api  # noqa: F401 - the HTTP client fixture
