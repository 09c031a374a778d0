"""Optional tracing of commands and appends, and the name of the command a caller ran.

The domain never imports OpenTelemetry itself: whoever runs the service installs a tracer
(anything with OpenTelemetry's `start_as_current_span`) when tracing is configured. Until
then a span costs one global read, so the base install pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from channel_domain.errors import DomainError

_tracer: Any = None


def install_tracer(tracer: Any) -> None:
    """Trace from now on with `tracer` (None: stop tracing)."""
    global _tracer
    _tracer = tracer


def tracer() -> Any:
    return _tracer


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current one, or nothing when no tracer is installed. A refusal is
    an answer, not a failure: it is noted as `channel_domain.refused`, the status stays unset."""
    current = _tracer
    if current is None:
        yield None
        return
    with current.start_as_current_span(
        name, attributes={k: v for k, v in attributes.items() if v is not None},
        record_exception=False, set_status_on_exception=False,
    ) as opened:
        try:
            yield opened
        except DomainError as refused:
            opened.set_attribute("channel_domain.refused", refused.code)
            raise
        except BaseException as failure:
            from opentelemetry.trace import StatusCode  # present whenever a tracer is

            opened.record_exception(failure)
            opened.set_status(StatusCode.ERROR, type(failure).__name__)
            raise


@dataclass
class ObservedCommand:
    """Filled in by the application as the command runs, read by the caller for its log line."""

    name: str | None = None


_observed: ContextVar[ObservedCommand | None] = ContextVar("observed_command", default=None)


@contextmanager
def observing_command() -> Iterator[ObservedCommand]:
    observed = ObservedCommand()
    token = _observed.set(observed)
    try:
        yield observed
    finally:
        _observed.reset(token)


@contextmanager
def command_span(name: str, **attributes: Any) -> Iterator[Any]:
    """The span of one application command; the outermost one names the observed command
    (a command may run another inside it)."""
    observed = _observed.get()
    if observed is not None and observed.name is None:
        observed.name = name
    with span(f"command {name}", **{"channel_domain.command": name, **attributes}) as opened:
        yield opened
