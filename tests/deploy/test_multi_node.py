"""The scaled-out deployment of docs/deploy.md, as real processes on one database: two
`channel-domain serve --no-projections` nodes taking writes at once, two `channel-domain project`
workers, one of them SIGKILLed while it projects. The other takes its read models over, and
once the lag is 0 every read model equals a clean rebuild, row for row: no read-model row lost
or doubled by the takeover."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import ExitStack

import psycopg

from channel_domain.store.projecting import lanes
from projections import all_projections
from tests.api.flows import ERP, GM, HR, MANAGER, REPORTING, SPECIALIST, amend, approved_partner, post, signed_contract
from tests.projections.read_model_rows import TABLES, TIERED, read_models
from tests.reliability.conftest import (
    FIGURES, http_api, project_worker, projection_lag, rebuild_in_place, serving,
)

WRITERS = 4  # client threads, alternating between the two nodes
ROUNDS = 4  # partners each writer signs up and sells through
SALES = 16  # per partner


def lock_holders(database_url: str) -> dict[str, int]:
    """Which backend (pid) holds each read model's advisory lock in this database."""
    names = [p.name for p in all_projections()]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT n.name, l.pid FROM unnest(%s::text[]) AS n(name)"
            " JOIN pg_locks AS l ON l.locktype = 'advisory' AND l.granted"
            "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            "  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('projection:' || n.name, 0)",
            (names,)).fetchall()
    return dict(rows)


def report(request, line: str) -> None:  # noqa: ANN001
    """A figure: shown as the test ends, and again under "reliability figures" in a full run."""
    FIGURES.append(line)
    plugins = request.config.pluginmanager
    with plugins.getplugin("capturemanager").global_and_fixture_disabled():
        plugins.getplugin("terminalreporter").write_line(f"\n{line}")


def wait_for(condition, what: str, seconds: float = 60):  # noqa: ANN001, ANN201
    """Poll until `condition()` is truthy; a liveness bound, not a measurement."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return result


def sell_through(api, writer: int, rounds_done: list[int], failures: list[BaseException],  # noqa: ANN001
                 rounds: int = ROUNDS) -> None:
    """One client's business: a sales rep, then partners signed up, visited, sold through under
    tiered terms with returns and a retroactive amendment, and a target for the rep."""
    try:
        rep = post(api, "/v1/employees", {"name": f"Rep {writer}", "role": "sales_rep", "hired_on": "2025-06-01"},
                   HR, 201).json()["id"]
        post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep, "period": "2026-Q1",
                                  "amount": "500000.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201)
        for round_ in range(rounds):
            partner = approved_partner(api, "retailer")
            post(api, f"/v1/partners/{partner}/visits", {"visited_on": "2026-02-03", "employee_id": rep}, SPECIALIST)
            contract = signed_contract(api, partner, commission=TIERED)
            for n in range(SALES):
                order = f"W{writer}-R{round_}-{n}"
                post(api, f"/v1/contracts/{contract}/sales",
                     {"order_id": order, "amount": f"{(n * 7919 + writer) % 40 + 1}000.00",
                      "sold_on": f"2026-0{2 + n % 3}-{1 + (n * 5) % 27:02d}", "employee_id": rep}, ERP)
                if n % 5 == 4:
                    post(api, f"/v1/contracts/{contract}/returns",
                         {"order_id": order, "amount": "500.00", "returned_on": "2026-04-28"}, ERP)
                if n == SALES // 2:
                    amend(api, contract, {"effective_on": "2026-03-01", "reason": "new scale", "commission": {
                        "type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.05"}]}}, GM)
            rounds_done.append(round_)
    except BaseException as error:  # noqa: BLE001 - shown by the test's own thread
        failures.append(error)


def test_a_project_worker_killed_under_writes_through_two_nodes_is_taken_over_exactly(database_url, request):
    with ExitStack() as stack:
        nodes = [stack.enter_context(serving(database_url, workers=1)) for _ in range(2)]
        first = project_worker(database_url, "--batch-size", "7")
        stack.callback(lambda: first.poll() is None and first.kill())
        # The first worker takes every read model, each lane on a session of its own (the evidence
        # runs apart: `run_lanes`); the second then waits on their locks.
        sessions = len(lanes(all_projections()))
        holders = wait_for(lambda: (h := lock_holders(database_url)) and len(h) == len(all_projections())
                           and len(set(h.values())) == sessions and h, "the first worker to lock every read model")
        first_pids = set(holders.values())
        second = project_worker(database_url, "--batch-size", "7")
        stack.callback(lambda: second.poll() is None and (second.terminate(), second.wait(timeout=15)))

        rounds_done: list[int] = []
        failures: list[BaseException] = []
        apis = [http_api(nodes[n % 2]) for n in range(WRITERS)]
        writers = [threading.Thread(target=sell_through, args=(api, n, rounds_done, failures))
                   for n, api in enumerate(apis)]
        for writer in writers:
            writer.start()
        # Kill the first worker half-way through the writing, while it is behind and projecting.
        wait_for(lambda: len(rounds_done) >= WRITERS * ROUNDS // 2 or failures, "half the writing", 300)
        lag_at_kill = projection_lag(database_url)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        taken_over = wait_for(lambda: (h := lock_holders(database_url)) and len(h) == len(all_projections())
                              and not first_pids & set(h.values()) and h, "the second worker to take every read model")
        takeover_s = time.monotonic() - killed_at
        for writer in writers:
            writer.join(timeout=300)
        assert not failures, failures
        assert len(rounds_done) == WRITERS * ROUNDS
        assert lag_at_kill > 0, "the first worker had caught up before the kill: write more"

        # Read-your-writes as a client sees it: /v1/projections on either node says lag 0.
        for node in nodes:
            api = http_api(node)

            def states(api=api):  # noqa: ANN001, ANN202
                items = api.get("/v1/projections", actor=REPORTING[0], roles=REPORTING[1]).json()["items"]
                return items if all(item["lag"] == 0 for item in items) else None

            items = wait_for(states, "lag 0 on /v1/projections", 120)
            apis.append(api)
            assert {item["name"] for item in items} == {p.name for p in all_projections()}
        for api in apis:
            api.client.close()  # an open keep-alive connection holds up a server's shutdown
        assert second.poll() is None, "the surviving worker died"
        second.terminate()
        second.wait(timeout=15)
        head = items[0]["head"]
        survived = read_models(database_url)

    rebuild_in_place(database_url)
    rebuilt = read_models(database_url)
    assert len(rebuilt["audit_events"]) == head  # every event projected, once
    assert {line["kind"] for line in rebuilt["commission_lines"]} == {"sale", "return", "adjustment"}
    differing = [table for table in TABLES if survived[table] != rebuilt[table]]
    report(request,
        f"deploy: 2 nodes x {WRITERS} writers, 2 project workers, the first SIGKILLed {lag_at_kill} events behind:"
        f" the second held all {len(taken_over)} read models {takeover_s:.2f} s later; {head} events,"
        f" {sum(map(len, survived.values()))} read-model rows, {len(differing)} of {len(TABLES)} tables unlike a"
        " clean rebuild")
    assert survived == rebuilt, differing
