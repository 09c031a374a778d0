"""A commission statement whose lines prove themselves (issue 17, part 2): `?proofs=true` gives
each line the inclusion proof of its event against the latest signed checkpoint, checked here
with the independent RFC 9162 verifier and with the auditor's script of docs/audit.md."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from api.routes.commissions import Statement
from channel_domain.store import merkle
from tests.api import test_checkpoints
from tests.api.flows import AUDITOR, ERP, FINANCE, MANAGER, REPORTING, approved_partner, post, problem, signed_contract
from tests.api.test_checkpoints import check_signature, event_hashes, keys, public_keys
from tests.channel_domain.store import rfc9162

key_file = test_checkpoints.key_file  # the signing key's fixture, shared

PERIOD = "2026-03"
DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def sell(api, contract: str, count: int, amount: str = "1000.00") -> None:
    for n in range(count):
        post(api, f"/v1/contracts/{contract}/sales",
             {"order_id": f"P-{time.monotonic_ns()}-{n}", "amount": amount, "sold_on": f"{PERIOD}-05"}, ERP)
    api.catch_up()


def read(api, partner: str, who=FINANCE, **params):
    return api.get(f"/v1/commissions/statements/{partner}/{PERIOD}", actor=who[0], roles=who[1], **params)


def test_each_line_proves_its_event_against_the_latest_checkpoint(api, key_file, database_url):
    partner = approved_partner(api)
    contract = signed_contract(api, partner)
    sell(api, contract, 3)
    unsigned = read(api, partner, proofs="true").json()
    assert unsigned["proof_checkpoint"] is None and len(unsigned["lines"]) == 3
    assert [line["inclusion_proof"] for line in unsigned["lines"]] == [None] * 3

    assert keys("create").exit_code == 0
    checkpoint = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    sell(api, contract, 1)  # after the checkpoint: no proof yet
    answer = read(api, partner, proofs="true")
    assert answer.status_code == 200, answer.text
    statement = answer.json()
    Statement.model_validate(statement, strict=True)  # the documented shape, proofs included
    assert statement["proof_checkpoint"] == checkpoint
    check_signature(api, statement["proof_checkpoint"])
    log = event_hashes(database_url)
    leaf_of = {position: index for index, (position, _) in enumerate(log)}
    hashes = dict(log)
    root = bytes.fromhex(checkpoint["root_hash"])
    lines = statement["lines"]
    assert len(lines) == 4
    for line in lines[:3]:
        proof = line["inclusion_proof"]
        assert (proof["leaf_index"], proof["tree_size"], proof["event_hash"]) == \
            (leaf_of[line["position"]], checkpoint["tree_size"], hashes[line["position"]].hex())
        assert len(proof["audit_path"]) <= checkpoint["tree_size"].bit_length()
        assert rfc9162.verify_inclusion(proof["leaf_index"], proof["tree_size"], hashes[line["position"]],
                                        [bytes.fromhex(step) for step in proof["audit_path"]], root)
    assert lines[3]["position"] > log[checkpoint["tree_size"] - 1][0] and lines[3]["inclusion_proof"] is None

    # The figures are the statement's own, proofs or not; without ?proofs=true there are none.
    plain = read(api, partner).json()
    assert "proof_checkpoint" not in plain and all("inclusion_proof" not in line for line in plain["lines"])
    assert {k: v for k, v in statement.items() if k not in ("proof_checkpoint", "lines")} == \
        {k: v for k, v in plain.items() if k != "lines"}
    assert [{k: v for k, v in line.items() if k != "inclusion_proof"} for line in lines] == plain["lines"]

    # The statement's roles, no others.
    for who in (REPORTING, AUDITOR, MANAGER):
        assert read(api, partner, who, proofs="true").json() == statement
    problem(read(api, partner, ("hr-1", ("hr",)), proofs="true"), 403, "forbidden")
    problem(read(api, partner, ERP, proofs="true"), 403, "forbidden")


class Counting:
    """A cursor that counts the queries sent through it."""

    def __init__(self, cursor) -> None:  # noqa: ANN001
        self.cursor, self.queries = cursor, 0

    def execute(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.queries += 1
        return self.cursor.execute(*args, **kwargs)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.cursor, name)


def test_the_proofs_of_many_lines_are_read_in_two_queries(api, key_file, database_url):
    partner = approved_partner(api)
    sell(api, signed_contract(api, partner), 12)
    log = event_hashes(database_url)
    size = len(log) - 3
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
        counted = Counting(curs)
        proofs = merkle.prove_inclusions(counted, [position for position, _ in log], size)
        assert counted.queries == 2
        root = merkle.root_of(curs, size)
    assert root == rfc9162.mth([h for _, h in log[:size]])
    assert sorted(proofs) == [position for position, _ in log[:size]]  # the last three: not in that tree
    for index, (position, event_hash) in enumerate(log[:size]):
        leaf, digest, path = proofs[position]
        assert (leaf, digest) == (index, event_hash)
        assert rfc9162.verify_inclusion(leaf, size, event_hash, path, root)


def doc_script(tmp_path: Path, api) -> Path:
    """verify_line.py, the verify_checkpoint.py it imports, and the service's public keys, kept."""
    for name in ("verify_line.py", "verify_checkpoint.py"):
        script = re.search(rf"<!-- {re.escape(name)}.*?-->\n```python\n(.*?)```", DOC.read_text(), re.S).group(1)
        (tmp_path / name).write_text(script)
    (tmp_path / "public-keys.json").write_text(json.dumps(public_keys(api)))
    return tmp_path / "verify_line.py"


def run_script(script: Path, statement: dict, checkpoint: dict, position: int, event: dict | None = None):
    paths = []
    for name, document in (("statement", statement), ("checkpoint", checkpoint), ("event", event)):
        if document is not None:
            (script.parent / f"{name}.json").write_text(json.dumps(document, ensure_ascii=False))
            paths.append(str(script.parent / f"{name}.json"))
    args = [*paths[:2], str(position), *paths[2:], str(script.parent / "public-keys.json")]
    return subprocess.run([sys.executable, "-E", "-S", str(script), *args], capture_output=True, text=True, timeout=60)


def test_the_auditors_script_of_docs_audit_md_checks_a_line(api, key_file, database_url, tmp_path):
    assert keys("create").exit_code == 0
    partner = approved_partner(api)
    contract = signed_contract(api, partner)
    sell(api, contract, 3)
    checkpoint = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    sell(api, contract, 1)
    statement = read(api, partner, proofs="true").json()
    later = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()  # signed, but not the statement's
    export = api.client.get("/v1/audit/export", headers=api.headers(AUDITOR[0], *AUDITOR[1]))
    assert export.status_code == 200
    events = {event["position"]: event for event in map(json.loads, export.text.splitlines()) if "position" in event}
    script = doc_script(tmp_path, api)
    lines = statement["lines"]
    for line in lines[:3]:
        checked = run_script(script, statement, checkpoint, line["position"], events[line["position"]])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith(f"ok: the line(s) at position {line['position']} come from leaf"
                                         f" {line['inclusion_proof']['leaf_index']}")
        unnamed = run_script(script, statement, checkpoint, line["position"])  # the event is required
        assert unnamed.returncode == 2 and "usage" in unnamed.stderr, unnamed.stdout + unnamed.stderr

    first, late = lines[0], lines[3]
    event = events[first["position"]]
    proof = first["inclusion_proof"]
    refusals = {
        "newer than the checkpoint": run_script(script, statement, checkpoint, late["position"],
                                                events[late["position"]]),
        "no line at position": run_script(script, statement, checkpoint, 10**9, event),
        "not yours": run_script(script, statement, later, first["position"], event),
        "do not hash to the event hash proven: the proof is for another event": run_script(
            script, {**statement, "lines": [{**first, "inclusion_proof": {**proof, "event_hash": "00" * 32}}]},
            checkpoint, first["position"], event),
        "does not lead to the checkpoint's root": run_script(
            script, {**statement, "lines": [{**first, "inclusion_proof": {
                **proof, "audit_path": ["00" * 32, *proof["audit_path"][1:]]}}]},
            checkpoint, first["position"], event),
        "the line names event": run_script(
            script, {**statement, "lines": [{**first, "event_id": "00000000-0000-5000-8000-000000000000"}]},
            checkpoint, first["position"], event),
        "is the event at position": run_script(script, statement, checkpoint, first["position"],
                                               events[lines[1]["position"]]),
        "do not hash to the event hash proven": run_script(
            script, statement, checkpoint, first["position"],
            {**events[first["position"]], "state": base64.b64encode(
                base64.b64decode(events[first["position"]]["state"]).replace(b"P-", b"Q-")).decode()}),
        "the event is not order": run_script(
            script, {**statement, "lines": [{**first, "order_id": "SOMEONE-ELSES"}]}, checkpoint, first["position"],
            event),
        "carries no proofs": run_script(script, read(api, partner).json(), checkpoint, first["position"], event),
    }
    for expected, outcome in refusals.items():
        assert outcome.returncode == 1 and outcome.stdout.startswith("NOT OK: ") and expected in outcome.stdout, \
            (expected, outcome.stdout, outcome.stderr)
