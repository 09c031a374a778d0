"""Structured logs from a real `channel-domain serve`, the format choice, and the optional spans."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from api import logging_setup, tracing
from api.app import create_app
from api.tokens import create_token
from channel_domain import observability
from tests.servers import BIN, free_port, wait_until_up

NATIONAL_ID = "110101199003071234"
BANK_CARD = "6222020200112233445"
NAME = "Zhao Minghui"


@contextmanager
def serving(database_url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """`channel-domain serve` with two workers (so the format must reach worker processes),
    its stderr kept apart from stdout, in a file."""
    port = free_port()
    with tempfile.TemporaryFile() as stderr:
        server = subprocess.Popen(
            [str(BIN / "channel-domain"), "serve", "--port", str(port), "--workers", "2", *args],
            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=stderr,
        )

        def text() -> str:
            stderr.flush()
            stderr.seek(0)
            return stderr.read().decode()

        try:
            wait_until_up(f"http://127.0.0.1:{port}", server, text)
            yield f"http://127.0.0.1:{port}", text
        finally:
            server.terminate()
            server.wait(timeout=15)


def _token(database_url: str, actor: str, *roles: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return create_token(conn, actor, list(roles))[1]


def _lines_until(text, wanted) -> list[dict[str, Any]]:  # noqa: ANN001
    """The log's lines, parsed, once `wanted` holds for them: a line is written just after its
    answer is sent."""
    deadline = time.monotonic() + 30
    while True:
        lines = [json.loads(line) for line in text().splitlines() if line.strip()]
        if wanted(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def _the(lines: list[dict[str, Any]], logger: str, correlation_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == logger and line.get("correlation_id") == correlation_id]


def test_serve_logs_one_json_line_per_request_and_per_command(database_url):
    hr = {"Authorization": f"Bearer {_token(database_url, 'hr-7', 'hr')}"}
    auditor = {"Authorization": f"Bearer {_token(database_url, 'audit-7', 'auditor')}"}
    with serving(database_url, "--log-format", "json", "--projections") as (base, text):
        hired = httpx.post(f"{base}/v1/employees", headers={**hr, "X-Correlation-Id": "log-hire-1"}, json={
            "name": NAME, "role": "sales_rep", "hired_on": "2026-01-05",
            "national_id": NATIONAL_ID, "bank_card": BANK_CARD,
        })
        assert hired.status_code == 201, hired.text
        employee_id, position = hired.json()["id"], hired.json()["position"]
        read = httpx.get(f"{base}/v1/employees/{employee_id}", headers={**hr, "X-Correlation-Id": "log-read-1"})
        assert read.status_code == 200 and read.json()["national_id"] == NATIONAL_ID
        keyed = {**hr, "Idempotency-Key": "warn-1"}
        warning = {"level": "oral", "reason": "late twice"}
        first = httpx.post(f"{base}/v1/employees/{employee_id}/warnings", json=warning,
                           headers={**keyed, "X-Correlation-Id": "log-warn-1"})
        again = httpx.post(f"{base}/v1/employees/{employee_id}/warnings", json=warning,
                           headers={**keyed, "X-Correlation-Id": "log-warn-2"})
        assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        refused = httpx.post(f"{base}/v1/employees/{employee_id}/regularize", json={"on": "2025-01-01"},
                             headers={**hr, "X-Correlation-Id": "log-refused-1"})
        assert refused.status_code == 422, refused.text
        audit = httpx.get(f"{base}/v1/audit/events", headers=auditor,
                          params={"stream_id": employee_id, "min_position": first.json()["position"]})
        assert audit.status_code == 200, audit.text
        lines = _lines_until(text, lambda lines: len(_the(lines, "channel_domain.command", "log-refused-1")) == 1
                             and len(_the(lines, "channel_domain.request", "log-refused-1")) == 1)
        log = text()

    (request,) = _the(lines, "channel_domain.request", "log-hire-1")
    assert request["level"] == "INFO" and request["message"] == "request"
    assert request["actor"] == "hr-7" and request["roles"] == ["hr"]
    assert request["method"] == "POST" and request["route"] == "/v1/employees" and request["status"] == 201
    assert isinstance(request["duration_ms"], float) and request["duration_ms"] > 0
    assert datetime.fromisoformat(request["timestamp"]).tzinfo is not None
    assert hired.headers["X-Correlation-Id"] == "log-hire-1"

    (command,) = _the(lines, "channel_domain.command", "log-hire-1")
    hire_positions = [row["position"] for row in audit.json()["items"] if row["correlation_id"] == "log-hire-1"]
    assert hire_positions == [position]
    assert command["command"] == "hire_employee" and command["record_type"] == "Employee"
    assert command["record_id"] == employee_id and command["positions"] == hire_positions
    assert command["replayed"] is False and command["outcome"] == "ok" and command["actor"] == "hr-7"

    (read_line,) = _the(lines, "channel_domain.request", "log-read-1")
    assert read_line["route"] == "/v1/employees/{record_id}" and read_line["status"] == 200
    assert read_line["method"] == "GET" and not _the(lines, "channel_domain.command", "log-read-1")

    (warned,) = _the(lines, "channel_domain.command", "log-warn-1")
    warn_positions = [row["position"] for row in audit.json()["items"] if row["correlation_id"] == "log-warn-1"]
    assert warned["command"] == "warn_employee" and warned["positions"] == warn_positions and not warned["replayed"]
    (replayed,) = _the(lines, "channel_domain.command", "log-warn-2")
    assert replayed["replayed"] is True and replayed["positions"] == warn_positions  # written then, not now

    (refusal,) = _the(lines, "channel_domain.command", "log-refused-1")
    assert refusal["outcome"] == "refused" and refusal["code"] == refused.json()["code"]
    assert refusal["positions"] == [] and refusal["record_id"] == employee_id
    assert _the(lines, "channel_domain.request", "log-refused-1")[0]["status"] == 422

    # Every line is JSON (uvicorn's own too), and uvicorn's access log does not repeat the request.
    assert all(isinstance(line, dict) for line in lines)
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert [line["route"] for line in lines if line["logger"] == "channel_domain.request"
            and line.get("correlation_id") == "log-hire-1"] == ["/v1/employees"]
    # Personal data never reaches the log, though it went in and came back out over the API.
    for personal in (NATIONAL_ID, BANK_CARD, NAME, "Zhao"):
        assert personal not in log


def test_no_access_log_turns_the_request_line_off_but_keeps_the_command_line(database_url):
    hr = {"Authorization": f"Bearer {_token(database_url, 'hr-8', 'hr')}", "X-Correlation-Id": "quiet-1"}
    with serving(database_url, "--no-projections", "--no-access-log",
                 env={logging_setup.LOG_FORMAT_VARIABLE: "json"}) as (base, text):
        hired = httpx.post(f"{base}/v1/employees", headers=hr,
                           json={"name": NAME, "role": "sales_rep", "hired_on": "2026-01-05"})
        assert hired.status_code == 201, hired.text
        lines = _lines_until(text, lambda lines: _the(lines, "channel_domain.command", "quiet-1"))
    assert len(_the(lines, "channel_domain.command", "quiet-1")) == 1
    assert not [line for line in lines if line["logger"] == "channel_domain.request"]


def test_text_on_a_terminal_by_default(database_url):
    """The real thing on a pseudo-terminal: no --log-format, no variable, plain text lines."""
    master, terminal = pty.openpty()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != logging_setup.LOG_FORMAT_VARIABLE}
    server = subprocess.Popen(
        [str(BIN / "channel-domain"), "serve", "--port", str(port), "--workers", "2", "--no-projections"],
        env={**env, "CHANNEL_DOMAIN_DATABASE_URL": database_url},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
    )
    os.close(terminal)
    received = bytearray()

    def drain() -> None:  # a terminal nobody reads would block the server once its buffer is full
        with contextlib.suppress(OSError):  # EIO: the server has gone
            while chunk := os.read(master, 65536):
                received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server, lambda: received.decode(errors="replace"))
        assert httpx.get(f"http://127.0.0.1:{port}/health", headers={"X-Correlation-Id": "tty-1"}).status_code == 200
        deadline = time.monotonic() + 30
        while b"correlation_id=tty-1" not in received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=15)
        reader.join(timeout=5)
        os.close(master)
    lines = [line for line in received.decode(errors="replace").splitlines() if line.strip()]
    (request,) = [line for line in lines if "correlation_id=tty-1" in line]
    assert re.search(r" INFO channel_domain\.request: request .*method=GET route=/health status=200 duration_ms=", request)
    assert not [line for line in lines if line.lstrip().startswith("{")]


def test_the_format_choice():
    with tempfile.TemporaryFile("w") as file:  # not a terminal: a log collector reads it
        assert logging_setup.choose_format(None, {}, file) == "json"
        assert logging_setup.choose_format(None, {"CHANNEL_DOMAIN_LOG_FORMAT": "text"}, file) == "text"
        assert logging_setup.choose_format("json", {"CHANNEL_DOMAIN_LOG_FORMAT": "text"}, file) == "json"
        with pytest.raises(ValueError, match="json or text"):
            logging_setup.choose_format("xml", {}, file)
    master, terminal = pty.openpty()
    with open(terminal, "w") as tty:
        assert logging_setup.choose_format(None, {}, tty) == "text"
        assert logging_setup.choose_format(None, {"CHANNEL_DOMAIN_LOG_FORMAT": "json"}, tty) == "json"
    os.close(master)


def test_serve_refuses_an_unknown_log_format(database_url):
    result = subprocess.run([str(BIN / "channel-domain"), "serve", "--log-format", "xml"], capture_output=True,
                            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}, timeout=60)
    assert result.returncode == 2 and b"json or text" in result.stdout + result.stderr


def test_tracing_is_off_unless_configured():
    assert not tracing.wanted({})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert not tracing.wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert observability.tracer() is None  # nothing installed one in this process


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        observability.install_tracer(None)
        provider.shutdown()


def test_a_command_request_is_traced_request_then_command_then_append(database_url, spans):
    token = _token(database_url, "hr-9", "hr")
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with TestClient(create_app(database_url)) as client:
        hired = client.post("/v1/employees", json={"name": NAME, "role": "sales_rep", "hired_on": "2026-01-05"},
                            headers={"Authorization": f"Bearer {token}", "X-Correlation-Id": "trace-1",
                                     "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"})
    assert hired.status_code == 201, hired.text
    by_name = {span.name: span for span in spans.get_finished_spans()}
    request, command, append = by_name["POST /v1/employees"], by_name["command hire_employee"], by_name["append"]
    assert request.kind == SpanKind.SERVER
    assert request.parent.span_id == 0x00F067AA0BA902B7  # the caller's span, from traceparent
    assert command.parent.span_id == request.context.span_id
    assert append.parent.span_id == command.context.span_id
    assert {format(s.context.trace_id, "032x") for s in (request, command, append)} == {caller_trace}
    assert request.attributes["http.route"] == "/v1/employees"
    assert request.attributes["http.response.status_code"] == 201
    assert request.attributes["channel_domain.correlation_id"] == "trace-1"
    assert command.attributes["channel_domain.record_id"] == hired.json()["id"]
    assert list(append.attributes["channel_domain.positions"]) == [hired.json()["position"]]
    assert list(command.attributes["channel_domain.positions"]) == [hired.json()["position"]]


def test_a_refused_command_is_an_answer_not_an_error_span(database_url, spans):
    token = _token(database_url, "hr-10", "hr")
    with TestClient(create_app(database_url)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        hired = client.post("/v1/employees", json={"name": NAME, "role": "sales_rep", "hired_on": "2026-01-05"},
                            headers=headers)
        refused = client.post(f"/v1/employees/{hired.json()['id']}/regularize", json={"on": "2025-01-01"},
                              headers=headers)
    assert refused.status_code == 422
    (command,) = [span for span in spans.get_finished_spans() if span.name == "command regularize_employee"]
    assert command.attributes["channel_domain.refused"] == refused.json()["code"]
    assert command.status.status_code == StatusCode.UNSET
    assert [span.name for span in spans.get_finished_spans()].count("append") == 1  # the hire's; nothing written
