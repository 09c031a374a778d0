"""Every integration test gets its own PostgreSQL database, cloned from a migrated template.

`CHANNEL_DOMAIN_TEST_DATABASE_URL` names a server to use (CI sets it); without it the
embedded server under ./var/ is started. Tests never skip for want of a database: if none
can be reached, they fail and say why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from channel_domain.application import ChannelDepartment
from channel_domain.store.database import embedded_server_url, scratch_database
from channel_domain.store.migrations import migrate
from integration.schemas import event_types
from tests.event_contracts import checked, recorded_event_violations, written_types
from tests.figures import FIGURES

TEST_DATABASE_URL_VARIABLE = "CHANNEL_DOMAIN_TEST_DATABASE_URL"
# Set to list, at the end of the session, the published event types no test wrote.
REPORT_UNWRITTEN_VARIABLE = "CHANNEL_DOMAIN_REPORT_UNWRITTEN_EVENT_TYPES"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "foreign_events(reason): the test writes rows that are no event of the service on purpose, so "
                   "its events are not checked against the published schemas")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    tallies = getattr(node, "workeroutput", {}).get("session_tallies")
    if tallies is None:
        return
    written_types.update(tallies["written_types"])
    for name, value in tallies["checked"].items():
        checked[name] += value
    FIGURES.extend(tallies["figures"])


_collected_by_workers: list[int] = []


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    _collected_by_workers.append(len(ids))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under pytest-xdist (`make test`), each worker's tallies and figures go to the controller,
    # which alone reports: its own are empty, as it runs no test.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["session_tallies"] = {"written_types": sorted(written_types), "checked": checked,
                                           "figures": FIGURES}
        return
    # And the controller fails a green run in which fewer tests answered than were collected:
    # a scheduler that drops tests (one keyed by node id, where tests share one) must not pass.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not _collected_by_workers or reporter is None or exitstatus != 0:
        return
    answered = sum(len(reporter.stats.get(outcome, [])) for outcome in ("passed", "failed", "skipped", "xfailed", "xpassed"))
    collected = max(_collected_by_workers)
    if answered < collected:
        reporter.write_line(f"only {answered} of the {collected} tests collected ran", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
    if os.environ.get(REPORT_UNWRITTEN_VARIABLE):
        unwritten = sorted({t.type for t in event_types()} - written_types)
        terminalreporter.write_line(f"events checked against their schemas: {checked['events']} "
                                    f"from {checked['databases']} test databases in {checked['seconds']:.1f} s")
        terminalreporter.write_line(f"published event types no test wrote ({len(unwritten)}): {', '.join(unwritten)}")


@pytest.fixture(scope="session")
def server_url() -> str:
    return os.environ.get(TEST_DATABASE_URL_VARIABLE) or embedded_server_url()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    with scratch_database(server_url, prefix="cd_test_template") as url:
        migrate(url)
        yield conninfo_to_dict(url)["dbname"]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, server_url: str, template_database: str) -> Iterator[str]:
    with scratch_database(server_url, prefix="cd_test", template=template_database) as url:
        yield url
        # Every event the test wrote matches its published schema (GET /v1/events/schemas);
        # a mismatch is an error at teardown naming the event and what is wrong.
        if request.node.get_closest_marker("foreign_events") is None:
            violations = recorded_event_violations(url)
            if violations:
                pytest.fail("events that do not match their published schema:\n  " + "\n  ".join(violations[:20])
                            + (f"\n  … and {len(violations) - 20} more" if len(violations) > 20 else ""),
                            pytrace=False)


@pytest.fixture
def app(database_url: str) -> Iterator[ChannelDepartment]:
    with ChannelDepartment(database_url) as application:
        yield application
