"""A read model stopped at a poison event shows in /v1/projections, /metrics and `channel-domain
projections status`, and resumes with `projections retry` (after a fix) or `--skip` (an
operator's decision, recorded as an audit event). /metrics costs one query per interval."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from api.errors import ApiProblem
from api.routes.projection_status import MetricsCache
from tests.api.flows import SPECIALIST, post
from tests.servers import BIN

READER = ("reporter-1", ("reporting",))


def corrupt_audit_trail(database_url: str, position: int) -> None:
    """A row already where the audit trail will write the event at `position`: its COPY fails
    there, every time, as a read model does on an event it cannot handle."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_events (position, event_id, stream_id, stream_type, version, type, actor, roles,"
            " recorded_at, correlation_id, causation_id, data)"
            " VALUES (%s, gen_random_uuid(), gen_random_uuid(), 'Bogus', 1, 'Bogus.Row', 'nobody', '{}', now(),"
            " 'x', 'x', '{}')", (position,))


def repair_audit_trail(database_url: str, position: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_events WHERE position = %s AND type = 'Bogus.Row'", (position,))


def states(api) -> dict[str, dict]:
    response = api.get("/v1/projections", actor=READER[0], roles=READER[1])
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


def runner_of(api):
    states(api)  # the app makes its runner on first use
    return api.client.app.state.runner


def stop_audit_trail(api, monkeypatch, database_url) -> list[int]:
    monkeypatch.setenv("CHANNEL_DOMAIN_PROJECTION_ATTEMPTS", "2")
    monkeypatch.setenv("CHANNEL_DOMAIN_PROJECTION_RETRY_S", "0")
    positions = [post(api, "/v1/partners", {"kind": "retailer", "name": f"Shop {n}"}, SPECIALIST, 201).json()["position"]
                 for n in range(3)]
    corrupt_audit_trail(database_url, positions[1])
    runner = runner_of(api)
    for _ in range(2):
        try:
            runner.catch_up_all()
        except Exception:  # noqa: BLE001, S110 - the attempts fail, as they should
            pass
    return positions


def session_user(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT session_user").fetchone()[0]


def cli_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}


def test_a_failing_read_model_shows_in_projections_metrics_and_status_and_resumes_on_retry(api, database_url,
                                                                                           monkeypatch):
    positions = stop_audit_trail(api, monkeypatch, database_url)
    failing = states(api)
    audit = failing["audit_events"]
    assert (audit["status"], audit["position"], audit["failing_position"], audit["head"]) == (
        "failing", positions[0], positions[1], positions[2])
    assert audit["error"] == "IntegrityError" and audit["since"]
    # The database's message quotes the refused row ("Key (position)=(…) already exists"): every
    # role reads /v1/projections, so none of it is served; the operator's CLI shows it below.
    answer = api.client.get("/v1/projections").text
    assert "already exists" not in answer and "Key (" not in answer
    assert failing["partner_activity"] == {"name": "partner_activity", "position": positions[2], "head": positions[2],
                                           "lag": 0, "status": "running", "failing_position": None, "error": None,
                                           "since": None}
    metrics = api.client.get("/metrics").text
    assert 'channel_domain_projection_failing{projection="audit_events"} 1.0' in metrics
    assert f'channel_domain_projection_failing_position{{projection="audit_events"}} {positions[1]}.0' in metrics
    assert 'channel_domain_projection_failing{projection="partner_activity"} 0.0' in metrics

    status = subprocess.run([str(BIN / "channel-domain"), "projections", "status"], env=cli_env(database_url),
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "audit_events" in status.stdout and "failing" in status.stdout and "IntegrityError" in status.stdout
    assert "already exists" in status.stdout

    repair_audit_trail(database_url, positions[1])  # the fix
    retried = subprocess.run([str(BIN / "channel-domain"), "projections", "retry", "audit_events",
                              "--reason", "bad restore repaired"],
                             env=cli_env(database_url), capture_output=True, text=True, timeout=120)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"resume from position {positions[0]}" in retried.stdout
    runner_of(api).catch_up_all()
    retry_position = positions[2] + 1  # the retry is an event of its own
    assert states(api)["audit_events"] == {"name": "audit_events", "position": retry_position,
                                           "head": retry_position, "lag": 0, "status": "running",
                                           "failing_position": None, "error": None, "since": None}
    (ordered,) = api.get("/v1/audit/events", type="ProjectionRetry.Ordered").json()["items"]
    os_user = getpass.getuser()
    assert (ordered["actor"], ordered["roles"], ordered["position"]) == (os_user, ["operator"], retry_position)
    assert ordered["data"]["projection"] == "audit_events" and ordered["data"]["position"] == positions[1]
    assert ordered["data"]["reason"] == "bad restore repaired" and ordered["data"]["os_user"] == os_user
    assert ordered["data"]["session_user"] == session_user(database_url) and ordered["data"]["host"] == socket.gethostname()
    again = CliRunner().invoke(cli, ["projections", "retry", "audit_events"], env=cli_env(database_url))
    assert again.exit_code == 1 and "not failing" in again.output


def test_skip_through_the_cli_is_an_audit_event_and_the_read_model_catches_up(api, database_url, monkeypatch):
    positions = stop_audit_trail(api, monkeypatch, database_url)
    env = cli_env(database_url)
    unsigned = CliRunner().invoke(cli, ["projections", "retry", "audit_events", "--skip", str(positions[1]),
                                        "--reason", "a bad row"], env=env)
    assert unsigned.exit_code == 2 and "--actor" in unsigned.output
    wrong = CliRunner().invoke(cli, ["projections", "skip", "audit_events", "--position", str(positions[2]),
                                     "--reason", "r", "--actor", "ops-1"], env=env)
    assert wrong.exit_code == 2 and f"stopped at position {positions[1]}" in wrong.output
    blank = CliRunner().invoke(cli, ["projections", "skip", "audit_events", "--position", str(positions[1]),
                                     "--reason", "r", "--actor", "   "], env=env)
    assert blank.exit_code == 2 and "--actor" in blank.output
    skipped = subprocess.run(
        [str(BIN / "channel-domain"), "projections", "retry", "audit_events", "--skip", str(positions[1]),
         "--reason", "row already there after a bad restore; ticket 7", "--actor", " ops-1 "],
        env=env, capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    runner_of(api).catch_up_all()
    head = states(api)["audit_events"]
    assert (head["status"], head["lag"]) == ("running", 0) and head["position"] > positions[2]
    listed = api.get("/v1/audit/events", type="ProjectionSkip.Decided").json()["items"]
    assert len(listed) == 1
    (decision,) = listed
    assert decision["actor"] == "ops-1" and decision["position"] == head["position"]
    assert decision["data"]["projection"] == "audit_events" and decision["data"]["position"] == positions[1]
    assert decision["data"]["reason"].endswith("ticket 7") and decision["data"]["event_type"] == "Partner.Applied"
    assert decision["data"]["decided_by"] == "ops-1", "the actor as typed, without its surrounding spaces"
    assert (decision["data"]["session_user"], decision["data"]["os_user"], decision["data"]["host"]) == (
        session_user(database_url), getpass.getuser(), socket.gethostname())
    with psycopg.connect(database_url) as conn:
        rows = [row[0] for row in conn.execute("SELECT type FROM audit_events ORDER BY position")]
    assert rows == ["Partner.Applied", "Bogus.Row", "Partner.Applied", "ProjectionSkip.Decided"]


def test_a_project_worker_stops_the_read_model_logs_the_traceback_once_and_goes_on_after_a_skip(database_url):
    """The real thing: `channel-domain project` in a process of its own."""
    from channel_domain.application import ChannelDepartment
    from tests.channel_domain.helpers import as_

    with ChannelDepartment(database_url) as app, as_("spec-1", "channel_specialist"):
        positions = [app.register_partner(kind="retailer", name=f"Shop {n}").position for n in range(4)]
    corrupt_audit_trail(database_url, positions[1])
    env = {**cli_env(database_url), "CHANNEL_DOMAIN_PROJECTION_ATTEMPTS": "3",
           "CHANNEL_DOMAIN_PROJECTION_RETRY_S": "0.05"}
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen([str(BIN / "channel-domain"), "project"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: failing_at(database_url, "audit_events") == positions[1], worker, log)
            wait_for(lambda: checkpoint(database_url, "partner_activity") == positions[-1], worker, log)
            assert checkpoint(database_url, "audit_events") == positions[0]
            skipped = subprocess.run(
                [str(BIN / "channel-domain"), "projections", "skip", "audit_events", "--position", str(positions[1]),
                 "--reason", "bad row", "--actor", "ops-1"], env=env, capture_output=True, text=True, timeout=120)
            assert skipped.returncode == 0, skipped.stdout + skipped.stderr
            decision = positions[-1] + 1
            wait_for(lambda: checkpoint(database_url, "audit_events") >= decision, worker, log)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        log.seek(0)
        output = log.read().decode(errors="replace")
    chained = output.count("The above exception was the direct cause")  # psycopg's error inside the library's
    assert output.count("Traceback") == 1 + chained, output
    assert f"audit_events STOPPED at position {positions[1]}" in output
    assert output.count("audit_events failed on the events after") == 2, output


def wait_for(condition, worker, log, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s  # a bound for a hung test, not a measured figure
    while not condition():
        if worker.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise AssertionError(log.read().decode(errors="replace")[-3000:])
        time.sleep(0.1)


def failing_at(database_url: str, name: str) -> int | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT position FROM projection_failures WHERE name = %s", (name,)).fetchone()
    return row and row[0]


def checkpoint(database_url: str, name: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT position FROM projection_checkpoints WHERE name = %s", (name,)).fetchone()
    return row[0] if row else 0


def test_concurrent_scrapes_make_one_collection(api, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_METRICS_INTERVAL_S", "3600")  # one scrape interval for the whole test
    runner = runner_of(api)
    collected, progress = [], runner.progress
    runner.progress = lambda *args, **kwargs: collected.append(1) or progress(*args, **kwargs)
    start = threading.Barrier(16)

    def scrape(_: int):
        start.wait()
        return api.client.get("/metrics")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(scrape, range(16)))
    assert {answer.status_code for answer in answers} == {200}
    assert len(collected) == 1
    assert "channel_domain_metrics_collections_total 1.0" in api.client.get("/metrics").text
    assert len(collected) == 1


def test_without_a_free_connection_metrics_serve_the_last_figures_with_their_age(api):
    runner = runner_of(api)
    cache = MetricsCache(interval_s=0, wait_s=0.05)  # every scrape wants fresh figures
    first, _ = cache.figures(runner)
    pool = runner.datastore.pool
    held = [pool.getconn() for _ in range(pool.max_size)]  # the requests have them all
    try:
        served, age = cache.figures(runner)
    finally:
        for conn in held:
            pool.putconn(conn)
    assert served is first and age >= 0
    assert (cache.collections, cache.failures) == (1, 1)
    fresh, _ = cache.figures(runner)
    assert fresh is not first and cache.collections == 2


def test_with_no_figures_yet_and_no_free_connection_metrics_are_503_metrics_unavailable(api):
    runner = runner_of(api)
    cache = MetricsCache(interval_s=0, wait_s=0.05)
    pool = runner.datastore.pool
    held = [pool.getconn() for _ in range(pool.max_size)]
    try:
        with pytest.raises(ApiProblem) as refused:
            cache.figures(runner)
    finally:
        for conn in held:
            pool.putconn(conn)
    assert (refused.value.status, refused.value.code) == (503, "metrics_unavailable")
    assert refused.value.headers == {"Retry-After": "1"}


def test_metrics_count_this_process_s_groups_of_appends(api):
    def counter(name: str) -> float:
        lines = [line for line in api.client.get("/metrics").text.splitlines() if line.startswith(f"{name}_total ")]
        return float(lines[0].split()[1])

    before = {name: counter(name) for name in ("channel_domain_append_groups", "channel_domain_append_group_commands")}
    for n in range(3):
        post(api, "/v1/partners", {"kind": "retailer", "name": f"Shop {n}"}, who=SPECIALIST, expect=201)
    assert counter("channel_domain_append_groups") == before["channel_domain_append_groups"] + 3  # one at a time
    assert counter("channel_domain_append_group_commands") == before["channel_domain_append_group_commands"] + 3
    assert counter("channel_domain_append_groups_refused") == 0
