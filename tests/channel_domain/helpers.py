"""Shared test helpers: act as someone, and expect a refusal by its code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from channel_domain import acting_as
from channel_domain.errors import DomainError


def as_(actor: str, *roles: str, **options):  # noqa: ANN201
    return acting_as(actor, roles, **options)


def on_day(actor: str, day: str, *roles: str):  # noqa: ANN201
    """Act at noon UTC on a given day (for rules that look at the business clock)."""
    return acting_as(actor, roles, now=datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC))


@contextmanager
def refused(code: str) -> Iterator[None]:
    with pytest.raises(DomainError) as caught:
        yield
    assert caught.value.code == code, f"expected {code}, got {caught.value.code}: {caught.value}"
