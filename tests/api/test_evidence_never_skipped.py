"""The evidence — the seals and the Merkle tree — never passes over an event (issue 17): a skipped
event would be missing from the proofs. `projections skip` refuses them before recording
anything, and their workers ignore a skip however it was recorded."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.context import acting_as
from channel_domain.operations import OPERATOR_ROLE
from channel_domain.store import merkle, projecting
from tests.api.flows import SPECIALIST, post
from tests.api.test_projection_failures import cli_env, runner_of, states
from tests.channel_domain.store import rfc9162

BOGUS_POSITION = 10**12


def skip_decisions(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM events WHERE topic LIKE %s", ("%ProjectionSkip%",)).fetchone()[0]


def stop_the_tree(api, monkeypatch, database_url) -> int:
    """A leaf already where the tree will put the next event: appending it fails there, every
    time. Returns that event's position, where audit_merkle stops."""
    monkeypatch.setenv("CHANNEL_DOMAIN_PROJECTION_ATTEMPTS", "2")
    monkeypatch.setenv("CHANNEL_DOMAIN_PROJECTION_RETRY_S", "0")
    post(api, "/v1/partners", {"kind": "retailer", "name": "Shop 0"}, SPECIALIST, 201)
    runner = runner_of(api)
    runner.catch_up_all()
    with psycopg.connect(database_url, autocommit=True) as conn:
        leaves = conn.execute("SELECT count(*) FROM merkle_leaves").fetchone()[0]
        conn.execute("INSERT INTO merkle_leaves (leaf_index, position, event_hash) VALUES (%s, %s, %s)",
                     (leaves, BOGUS_POSITION, bytes(32)))
    stopped = post(api, "/v1/partners", {"kind": "retailer", "name": "Shop 1"}, SPECIALIST, 201).json()["position"]
    post(api, "/v1/partners", {"kind": "retailer", "name": "Shop 2"}, SPECIALIST, 201)
    for _ in range(2):
        try:
            runner.catch_up_all()
        except Exception:  # noqa: BLE001, S110 - the attempts fail, as they should
            pass
    tree = states(api)["audit_merkle"]
    assert (tree["status"], tree["failing_position"]) == ("failing", stopped), tree
    return stopped


def remove_bogus_leaf(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE merkle_leaves DISABLE TRIGGER USER")
        conn.execute("DELETE FROM merkle_leaves WHERE position = %s", (BOGUS_POSITION,))
        conn.execute("ALTER TABLE merkle_leaves ENABLE TRIGGER USER")


@pytest.mark.parametrize("command", ["skip", "retry"])
def test_the_cli_refuses_to_skip_an_event_for_the_evidence(api, monkeypatch, database_url, command):
    stopped = stop_the_tree(api, monkeypatch, database_url)
    env = cli_env(database_url)
    for name in ("audit_merkle", "audit_seals"):
        args = (["projections", "skip", name, "--position", str(stopped)] if command == "skip"
                else ["projections", "retry", name, "--skip", str(stopped)])
        refused = CliRunner().invoke(cli, [*args, "--reason", "in the way", "--actor", "ops-1"], env=env)
        assert refused.exit_code == 2, refused.output
        said = " ".join(refused.output.split())
        assert f"{name} is evidence, not a view: skipping an event would leave it out of the proofs" in said
        assert f"projections retry {name}" in said
    assert skip_decisions(database_url) == 0
    assert states(api)["audit_merkle"]["failing_position"] == stopped


def test_the_workers_never_pass_over_an_event_for_the_evidence(api, monkeypatch, database_url):
    """A skip recorded through the library, which does not know which read models are
    evidence: the tree stops at the event again instead of leaving it out."""
    stopped = stop_the_tree(api, monkeypatch, database_url)
    with acting_as("ops-1", (OPERATOR_ROLE,)):
        projecting.skip(api.department, "audit_merkle", stopped, "recorded behind the CLI's back")
    assert skip_decisions(database_url) == 1
    runner = runner_of(api)
    for _ in range(2):
        try:
            runner.catch_up_all()
        except Exception:  # noqa: BLE001, S110 - the event still fails, and is not passed over
            pass
    assert states(api)["audit_merkle"]["failing_position"] == stopped
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM merkle_leaves WHERE position = %s", (stopped,)).fetchone()[0] == 0

    remove_bogus_leaf(database_url)  # the fix; then the operator's retry
    retried = CliRunner().invoke(cli, ["projections", "retry", "audit_merkle", "--actor", "ops-1"],
                                 env=cli_env(database_url))
    assert retried.exit_code == 0, retried.output
    assert "the workers apply the event all the same: evidence never passes over one" in " ".join(retried.output.split())
    api.catch_up()
    with psycopg.connect(database_url) as conn:
        log = [bytes(row[0]) for row in conn.execute("SELECT hash FROM events ORDER BY position")]
        assert conn.execute("SELECT count(*) FROM merkle_leaves WHERE position = %s", (stopped,)).fetchone()[0] == 1
    with api.department.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        assert merkle.tree_size(curs) == len(log)
        assert merkle.root_of(curs, len(log)) == rfc9162.mth(log)
