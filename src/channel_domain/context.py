"""Who is acting, and on whose behalf: set once per command, stamped on every event.

Callers wrap a command in `acting_as(...)`; aggregates read `current_command()` when they
emit an event, so no method takes an `actor` argument and no event goes unattributed.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from channel_domain.company_time import local_date
from channel_domain.errors import MissingCommandContext


@dataclass(frozen=True)
class CommandContext:
    actor: str
    roles: tuple[str, ...]
    correlation_id: str
    # The message that caused this command: a client's request id, or the event a
    # process reacted to. Defaults to this command's own id.
    causation_id: str
    command_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    idempotency_key: str | None = None
    # What the caller sent, hashed: a repeat of the key with other content is refused.
    # Computed from the command's arguments when the caller gives none.
    request_fingerprint: str | None = None
    # If-Match: the version the caller expects the commanded record to be at.
    expected_version: int | None = None
    # The business clock for rules such as "a target closes after its period ends".
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def today(self) -> date:
        return local_date(self.now)

    def has_role(self, role: str) -> bool:
        return role in self.roles


_current: contextvars.ContextVar[CommandContext | None] = contextvars.ContextVar(
    "channel_domain_command", default=None
)


@contextmanager
def acting_as(
    actor: str,
    roles: Iterable[str] = (),
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    expected_version: int | None = None,
    request_fingerprint: str | None = None,
) -> Iterator[CommandContext]:
    if not actor or not actor.strip():
        raise MissingCommandContext("an actor is required to issue a command")
    command_id = str(uuid.uuid4())
    context = CommandContext(
        actor=actor,
        roles=tuple(sorted(set(roles))),
        correlation_id=correlation_id or command_id,
        causation_id=causation_id or command_id,
        command_id=command_id,
        idempotency_key=idempotency_key,
        now=now or datetime.now(UTC),
        expected_version=expected_version,
        request_fingerprint=request_fingerprint,
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_command() -> CommandContext:
    context = _current.get()
    if context is None:
        raise MissingCommandContext(
            "no command context: wrap the command in channel_domain.acting_as(...)"
        )
    return context


@contextmanager
def idempotent(key: str | None) -> Iterator[CommandContext]:
    """Attach an idempotency key to the command already in progress."""
    context = replace(current_command(), idempotency_key=key)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
