"""The Merkle tree the `audit_merkle` projection keeps, checked by an independent RFC 9162
verifier (tests/channel_domain/store/rfc9162.py) against roots computed here from the event
hashes: every leaf of every tree size, every pair of sizes; and the tree is evidence, written
once and never rewritten."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.store import merkle
from channel_domain.store.projecting import ProjectionRunner, run_lanes
from projections import AuditMerkle, all_projections
from tests.channel_domain.helpers import as_
from tests.channel_domain.store import rfc9162
from tests.channel_domain.test_application import partner, signed_contract

SALES = 36


def burn_a_position(database_url: str) -> None:
    """A gap in the positions, as an aborted write leaves one."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT nextval(pg_get_serial_sequence('events', 'position'))")


def build_tree(app, batch_size: int = 5) -> None:
    runner = ProjectionRunner(app, [AuditMerkle()], batch_size=batch_size)
    head = runner.head()
    deadline = time.monotonic() + 30  # a pass stops at a gap until it is sure no writer can fill it
    while time.monotonic() < deadline:
        runner.catch_up(runner.projections[0])
        if runner.checkpoint("audit_merkle") >= head:
            return
        time.sleep(0.01)
    raise AssertionError("the tree did not reach the head")


def event_hashes(database_url: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(database_url) as conn:
        return [(row[0], bytes(row[1])) for row in conn.execute("SELECT position, hash FROM events ORDER BY position")]


@pytest.fixture
def log(app, database_url):
    """About 45 events with two gaps in their positions, made into a tree in batches of 5 and
    a few more events added after (so the tree grew in several steps)."""
    contract = signed_contract(app, partner(app, "retailer"))
    with as_("erp", "integration"):
        for n in range(SALES):
            if n in (3, 17):
                burn_a_position(database_url)
            app.record_sale(contract, order_id=f"O-{n}", amount="100.00", sold_on="2026-03-01")
            if n == 20:
                build_tree(app)
    build_tree(app, batch_size=3)
    return event_hashes(database_url)


def test_leaves_are_the_events_in_position_order_ranked_without_gaps(log, database_url):
    with psycopg.connect(database_url) as conn:
        leaves = conn.execute("SELECT leaf_index, position, event_hash FROM merkle_leaves ORDER BY leaf_index").fetchall()
    assert [(i, p, bytes(h)) for i, p, h in leaves] == [(i, p, h) for i, (p, h) in enumerate(log)]
    positions = [p for p, _ in log]
    assert positions[-1] - positions[0] + 1 == len(positions) + 2  # the two gaps are not leaves


def test_roots_of_every_size_match_the_rfc_tree_hash(app, log):
    inputs = [h for _, h in log]
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        assert merkle.tree_size(curs) == len(inputs)
        for size in range(1, len(inputs) + 1):
            assert merkle.root_of(curs, size) == rfc9162.mth(inputs[:size]), size
        assert merkle.root_of(curs, 0) == rfc9162.mth([])


def test_every_inclusion_proof_of_every_tree_size_verifies(app, log):
    inputs = [h for _, h in log]
    checked = 0
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        for size in range(1, len(inputs) + 1):
            root = rfc9162.mth(inputs[:size])
            for index in range(size):
                proof = merkle.prove_inclusion(curs, log[index][0], size)
                assert (proof.leaf_index, proof.tree_size, proof.event_hash, proof.root_hash) == \
                    (index, size, inputs[index], root)
                assert rfc9162.verify_inclusion(index, size, inputs[index], proof.audit_path, root), (index, size)
                # ... and proves nothing else: another leaf, another root, another place.
                assert not rfc9162.verify_inclusion(index, size, b"\x01" * 32, proof.audit_path, root)
                if size > 1:
                    assert not rfc9162.verify_inclusion((index + 1) % size, size, inputs[index], proof.audit_path,
                                                        root)
                    assert not rfc9162.verify_inclusion(index, size, inputs[index], proof.audit_path,
                                                        rfc9162.mth(inputs[:size - 1]))
                checked += 1
    assert checked == len(inputs) * (len(inputs) + 1) // 2


def test_every_consistency_proof_between_two_sizes_verifies(app, log):
    inputs = [h for _, h in log]
    roots = [rfc9162.mth(inputs[:size]) for size in range(len(inputs) + 1)]
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        for second in range(1, len(inputs) + 1):
            for first in range(1, second):
                proof = merkle.prove_consistency(curs, first, second)
                assert (proof.first_root, proof.second_root) == (roots[first], roots[second])
                assert rfc9162.verify_consistency(first, second, roots[first], roots[second], proof.proof), \
                    (first, second)
                assert not rfc9162.verify_consistency(first, second, roots[first], roots[second - 1] if second - 1 >
                                                      first else bytes(32), proof.proof)
            assert merkle.prove_consistency(curs, second, second).proof == []


def test_proofs_read_a_logarithmic_number_of_stored_nodes():
    """1 000 000 leaves: an inclusion proof is at most 20 hashes and reads at most 2 log2 n nodes."""
    size = 1_000_000
    for index in (0, 1, 499_999, 524_287, 524_288, 999_999):
        asked = merkle._needed(lambda node: merkle.inclusion_path(node, index, size))  # noqa: B023
        assert len(merkle.inclusion_path(lambda level, i: bytes(32), index, size)) <= 20
        assert len(asked) <= 40
    for first in (1, 3, 1000, 524_288, 999_999):
        assert len(merkle._needed(lambda node: merkle.consistency_proof(node, first, size))) <= 40  # noqa: B023


def test_out_of_range_refusals_name_their_code(app, log):
    size = len(log)
    gap = min(set(range(log[0][0], log[-1][0])) - {p for p, _ in log})
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        for call, code in (
            (lambda: merkle.prove_inclusion(curs, log[0][0], size + 1), "tree_size_out_of_range"),
            (lambda: merkle.prove_inclusion(curs, log[0][0], 0), "tree_size_out_of_range"),
            (lambda: merkle.prove_inclusion(curs, log[5][0], 5), "position_not_in_tree"),
            (lambda: merkle.prove_inclusion(curs, gap, size), "position_not_in_tree"),
            (lambda: merkle.prove_consistency(curs, 4, size + 1), "tree_size_out_of_range"),
            (lambda: merkle.prove_consistency(curs, 5, 4), "tree_sizes_out_of_order"),
            (lambda: merkle.prove_consistency(curs, 0, 4), "tree_sizes_out_of_order"),
        ):
            with pytest.raises(merkle.OutOfRange) as refused:
                call()
            assert refused.value.code == code


def test_the_tree_is_evidence_never_rewritten_nor_rebuilt(log, database_url, monkeypatch):
    assert not AuditMerkle.rebuildable
    assert "audit_merkle" in [p.name for p in all_projections()]
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    refused = CliRunner().invoke(cli, ["rebuild", "audit_merkle"])
    assert refused.exit_code == 2 and "never rebuilt" in refused.output
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in ("UPDATE merkle_nodes SET hash = hash", "DELETE FROM merkle_leaves WHERE leaf_index = 0"):
            with pytest.raises(psycopg.Error, match="immutable"):
                conn.execute(statement)


def test_a_batch_that_fails_leaves_the_tree_as_it_was(app, database_url, log):
    """A crash inside a batch: its leaves and nodes roll back with its checkpoint, and the next
    worker appends the same events again to the same tree."""

    contract = signed_contract(app, partner(app, "retailer"))
    with as_("erp", "integration"):
        for n in range(7):
            app.record_sale(contract, order_id=f"L-{n}", amount="1.00", sold_on="2026-03-02")
    new = [SimpleNamespace(id=position) for position, _ in event_hashes(database_url)[len(log):]]
    with pytest.raises(RuntimeError), app.event_recorder.datastore.get_connection() as conn, conn.transaction(), \
            conn.cursor() as curs:
        AuditMerkle().apply(curs, [(notification, None) for notification in new])
        curs.execute("SELECT count(*) AS leaves FROM merkle_leaves")
        assert curs.fetchone()["leaves"] == len(log) + len(new)
        raise RuntimeError("killed after writing its leaves and nodes, before the commit")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM merkle_leaves").fetchone()[0] == len(log)
    build_tree(app, batch_size=4)
    inputs = [h for _, h in event_hashes(database_url)]
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        assert merkle.tree_size(curs) == len(inputs)
        assert merkle.root_of(curs, len(inputs)) == rfc9162.mth(inputs)


def test_a_kept_root_catches_a_log_rewritten_with_its_tree(app, database_url, log):
    """Someone with the owner's rights changes an event's hash and builds the whole tree again
    from the changed log: the tree is consistent with itself, but not with a root kept before."""
    kept_size = len(log) - 5
    kept_root = rfc9162.mth([h for _, h in log[:kept_size]])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        try:
            conn.execute("UPDATE events SET hash = sha256(hash) WHERE position = %s", (log[3][0],))
        finally:
            conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
        conn.execute("TRUNCATE merkle_leaves, merkle_nodes")
        conn.execute("DELETE FROM projection_checkpoints WHERE name = 'audit_merkle'")
    build_tree(app)
    with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        proof = merkle.prove_consistency(curs, kept_size, len(log))
        inclusion = merkle.prove_inclusion(curs, log[3][0], kept_size)
    assert proof.first_root != kept_root
    assert rfc9162.verify_consistency(kept_size, len(log), proof.first_root, proof.second_root, proof.proof)
    assert not rfc9162.verify_consistency(kept_size, len(log), kept_root, proof.second_root, proof.proof)
    assert not rfc9162.verify_inclusion(3, kept_size, inclusion.event_hash, inclusion.audit_path, kept_root)


class HeldUp:
    """A read model that cannot get past its first batch until let go: the read models as a
    whole falling behind an import."""

    name = "held_up"
    tables = ()
    rebuildable = True

    def __init__(self) -> None:
        self.let_go = threading.Event()
        self.applied = 0

    def apply(self, cursor, events) -> None:
        self.let_go.wait(30)
        self.applied += len(events)


def test_the_tree_keeps_up_while_the_read_models_are_held_up(app, database_url):
    """The evidence runs in a lane of its own (`run_lanes`): checkpoints are signed from a tree
    that reaches the head however far the read models are behind."""
    contract = signed_contract(app, partner(app, "retailer"))
    with as_("erp", "integration"):
        for n in range(12):
            app.record_sale(contract, order_id=f"L-{n}", amount="100.00", sold_on="2026-03-01")
    held, head = HeldUp(), ProjectionRunner(app, []).head()
    stop = threading.Event()
    running = threading.Thread(target=run_lanes, args=(app, [held, AuditMerkle()], stop, 5), daemon=True)
    running.start()
    try:
        deadline = time.monotonic() + 20
        while ProjectionRunner(app, []).checkpoint("audit_merkle") < head and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ProjectionRunner(app, []).checkpoint("audit_merkle") >= head
        assert held.applied == 0  # still on its first batch
    finally:
        held.let_go.set()
        stop.set()
        running.join(timeout=10)
    assert held.applied > 0
