"""Log lines as an operator reads them: JSON for a log collector, plain text on a terminal.

One line per request (logger `channel_domain.request`) and one per command
(`channel_domain.command`), their fields passed as `extra` so that the JSON formatter makes
them top-level keys and the text formatter appends them as `key=value`. Every other logger —
uvicorn's, the projections' — goes through the same handler, so a JSON stream stays JSON.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from typing import Any, TextIO

LOG_FORMAT_VARIABLE = "CHANNEL_DOMAIN_LOG_FORMAT"
REQUEST_LOG_VARIABLE = "CHANNEL_DOMAIN_REQUEST_LOG"
FORMATS = ("json", "text")

request_logger = logging.getLogger("channel_domain.request")
command_logger = logging.getLogger("channel_domain.command")

# What every LogRecord carries of its own; anything else on a record came in through `extra`.
# uvicorn's `color_message` repeats the message with terminal colours: noise in both formats.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def choose_format(option: str | None = None, environ: dict[str, str] | None = None,
                  stream: TextIO | None = None) -> str:
    """--log-format, else CHANNEL_DOMAIN_LOG_FORMAT, else text on a terminal and JSON when
    stderr goes anywhere else: a pipe or a file is read by a log collector (journald, a
    container runtime), which wants one parseable record per line."""
    environ = os.environ if environ is None else environ
    chosen = option or environ.get(LOG_FORMAT_VARIABLE) or ""
    if chosen:
        if chosen not in FORMATS:
            raise ValueError(f"log format {chosen!r}: choose json or text")
        return chosen
    stream = sys.stderr if stream is None else stream
    try:
        on_terminal = stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        on_terminal = False
    return "text" if on_terminal else "json"


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value …`: the fields of a JSON line, for a person."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={_text(value)}" for key, value in vars(record).items()
                          if key not in _RECORD_ATTRIBUTES)
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{head} {fields}{newline}{rest}"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def log_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process, uvicorn's loggers included (uvicorn
    applies it in each worker process it starts). uvicorn's access log is silenced: the
    request line replaces it, with the route, the actor and the correlation id besides."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
            "reserved_attrs": sorted(_RECORD_ATTRIBUTES - {"message"}),
            "json_ensure_ascii": False,
        }
        if log_format == "json"
        else {"()": TextFormatter}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}},
        "loggers": {
            # The service's own at INFO; libraries at WARNING, as Python left them before any
            # configuration: what they said then, they say now, in the chosen format.
            **{name: {"level": "INFO"} for name in ("channel_domain", "api", "projections", "integration", "uvicorn")},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def configure(log_format: str) -> None:
    logging.config.dictConfig(log_config(log_format))


def configure_from_environment(environ: dict[str, str] | None = None) -> None:
    """For a process started by `serve` (each uvicorn worker runs the app factory) or by
    `uvicorn --factory` directly: the format `serve` chose travels in the environment."""
    configure(choose_format(environ=environ))


def request_log_enabled(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(REQUEST_LOG_VARIABLE, "on") != "off"
