"""The checkpoint maker vouches only for a tree that extends what it signed before, and only
with the current key: an operator who rewrites the log and rebuilds the tree inside PostgreSQL
does not get the service to sign the rewrite, and a node left with a rotated-out key signs
nothing (docs/audit.md, "Signed checkpoints and Merkle proofs")."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time

import psycopg
import pytest

from channel_domain.application import ChannelDepartment
from channel_domain.store import checkpoints
from tests.api import test_checkpoints
from tests.api.flows import AUDITOR, post, problem
from tests.api.test_checkpoints import event_hashes, keys, record_sales
from tests.api.test_witness import checkpoint_now, rewrite_history

key_file = test_checkpoints.key_file  # the signing key's fixture, shared


def checkpoint_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM merkle_checkpoints").fetchone()[0]


def behind_the_service(database_url: str, statement: str, *params) -> None:
    """`statement` on the checkpoints table as its owner can, past the triggers that keep it append-only."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE merkle_checkpoints DISABLE TRIGGER USER")
        conn.execute(statement, params or None)
        conn.execute("ALTER TABLE merkle_checkpoints ENABLE TRIGGER USER")


def a_sale_before(database_url: str, signed: dict) -> int:
    """The position of a sale the checkpoint `signed` covers."""
    last = event_hashes(database_url)[signed["tree_size"] - 1][0]
    with psycopg.connect(database_url) as conn:
        position = conn.execute("SELECT max(position) FROM events WHERE position <= %s AND state LIKE %s",
                                (last, b"%10.00%")).fetchone()[0]
    assert position is not None
    return position


def test_a_rewritten_tree_is_not_signed_on_demand_nor_in_the_background(api, key_file, database_url, tmp_path,
                                                                        caplog):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 3)
    signed = checkpoint_now(api)
    record_sales(api, 2, contract)
    rewrite_history(api, database_url, a_sale_before(database_url, signed), None)
    before = checkpoint_count(database_url)

    refused = problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 409), 409, "tree_rewritten")
    assert (f"the tree's first {signed['tree_size']} leaves now have the root" in refused["detail"]
            and f"not the {signed['root_hash']}" in refused["detail"])

    # A process that never saw the old checkpoint (a restarted server) refuses as well: the
    # check reads the signed checkpoint from the database, not only this process's memory.
    fresh = ChannelDepartment(database_url)
    try:
        with pytest.raises(checkpoints.TreeRewritten, match=signed["root_hash"]):
            checkpoints.make(fresh.event_recorder.datastore)
    finally:
        fresh.close()

    caplog.set_level(logging.WARNING, logger="channel_domain.store.checkpoints")
    stop = threading.Event()
    maker = threading.Thread(target=checkpoints.run_maker, args=(api.department.event_recorder.datastore, stop, 0.2),
                             daemon=True)
    maker.start()
    time.sleep(1.5)
    stop.set()
    maker.join(timeout=5)
    alarms = [r for r in caplog.records if "REFUSING TO SIGN" in r.getMessage()]
    assert len(alarms) == 1 and alarms[0].levelno == logging.ERROR  # said once, loudly
    assert checkpoint_count(database_url) == before


def test_a_tree_that_grew_honestly_is_signed(api, key_file, database_url):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    first = checkpoint_now(api)
    record_sales(api, 2, contract)
    second = checkpoint_now(api)
    assert second["tree_size"] == first["tree_size"] + 2


def restarted_make(database_url: str):
    """`checkpoints.make` in a process that never saw the checkpoints: a restarted server, or
    another node."""
    fresh = ChannelDepartment(database_url)
    try:
        return checkpoints.make(fresh.event_recorder.datastore)
    finally:
        fresh.close()


def test_checkpoints_forged_under_another_key_are_refused_after_a_restart_too(api, key_file, database_url, tmp_path):
    """The forger replaces every checkpoint and registered key with their own, signed over the
    rewritten tree: the database agrees with itself, but the maker trusts only its own key and
    those it retired, which live beside the key file."""
    assert keys("create").exit_code == 0
    contract = record_sales(api, 3)
    signed = checkpoint_now(api)
    record_sales(api, 2, contract)
    rewrite_history(api, database_url, a_sale_before(database_url, signed), tmp_path / "attacker.pem")
    before = checkpoint_count(database_url)

    refused = problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 409), 409, "tree_rewritten")
    assert "is signed by a key that is neither this maker's" in refused["detail"]
    with pytest.raises(checkpoints.TreeRewritten, match="neither this maker's"):
        restarted_make(database_url)
    assert checkpoint_count(database_url) == before


def test_another_nodes_checkpoint_forged_is_refused_by_a_node_that_never_saw_it(api, key_file, database_url,
                                                                                tmp_path):
    """Node A signs #1, node B #2; the forger rewrites an event only #2 covers and replaces the
    rows under a key of theirs. A, whose memory stops at #1, still refuses."""
    assert keys("create").exit_code == 0
    contract = record_sales(api, 3)
    first = checkpoint_now(api)
    record_sales(api, 3, contract)
    node_b = ChannelDepartment(database_url)
    try:
        second = checkpoints.make(node_b.event_recorder.datastore)
    finally:
        node_b.close()
    position = a_sale_before(database_url, {"tree_size": second.tree_size})
    assert position > event_hashes(database_url)[first["tree_size"] - 1][0]  # covered by #2 only
    record_sales(api, 1, contract)
    rewrite_history(api, database_url, position, tmp_path / "attacker.pem")
    problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 409), 409, "tree_rewritten")


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
def test_checkpoints_removed_from_the_database_are_noticed(api, key_file, database_url, restarted):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    signed = checkpoint_now(api)
    record_sales(api, 1, contract)
    behind_the_service(database_url, "DELETE FROM merkle_checkpoints")
    if restarted:  # the record on disk beside the key, not the memory of the process
        recorded = json.loads(checkpoints.state_file(key_file).read_text())
        assert [entry["root_hash"] for entry in recorded.values()] == [signed["root_hash"]]
        with pytest.raises(checkpoints.TreeRewritten, match="checkpoints were removed"):
            restarted_make(database_url)
    else:
        refused = problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 409), 409, "tree_rewritten")
        assert "checkpoints were removed" in refused["detail"]
    assert checkpoint_count(database_url) == 0


def test_a_checkpoint_of_a_key_lost_before_this_one_is_trusted_once_listed(api, key_file, database_url, tmp_path):
    """A key file lost and a new one created: the maker will not build on checkpoints of a key it
    does not know until the operator lists that key (as `GET /v1/audit/public-key` shows it)."""
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    lost = checkpoint_now(api)
    raw = next(key["public_key"] for key in api.get("/v1/audit/public-key").json()["keys"]
               if key["key_id"] == lost["key_id"])
    key_file.unlink()
    checkpoints.state_file(key_file).unlink()
    assert keys("create").exit_code == 0
    record_sales(api, 1, contract)
    refused = problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 409), 409, "tree_rewritten")
    assert str(checkpoints.retired_keys_file(key_file)) in refused["detail"]
    checkpoints.retired_keys_file(key_file).write_text(f"{lost['key_id']} {raw}\n")
    assert checkpoint_now(api)["tree_size"] == lost["tree_size"] + 1


def test_an_altered_checkpoint_row_is_noticed(api, key_file, database_url):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    signed = checkpoint_now(api)
    record_sales(api, 1, contract)
    behind_the_service(database_url, "UPDATE merkle_checkpoints SET signature = %s", bytes(64))  # signed by no one
    refused = problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 409), 409, "tree_rewritten")
    assert refused["detail"].endswith(f"key {signed['key_id']}) does not verify under key {signed['key_id']}")


def test_a_node_left_with_a_rotated_out_key_signs_nothing(api, key_file, database_url, monkeypatch, tmp_path):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    old = checkpoint_now(api)
    stale = tmp_path / "other-node" / "checkpoint.pem"
    stale.parent.mkdir()
    shutil.copy(key_file, stale)
    assert keys("rotate").exit_code == 0
    record_sales(api, 1, contract)
    before = checkpoint_count(database_url)

    monkeypatch.setenv(checkpoints.KEY_FILE_VARIABLE, str(stale))
    refused = problem(post(api, "/v1/audit/checkpoints", None, AUDITOR, 503), 503, "signing_key_retired")
    assert old["key_id"] in refused["detail"]
    assert checkpoint_count(database_url) == before

    monkeypatch.setenv(checkpoints.KEY_FILE_VARIABLE, str(key_file))
    made = checkpoint_now(api)
    assert made["key_id"] != old["key_id"]
