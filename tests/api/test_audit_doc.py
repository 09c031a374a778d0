"""docs/audit.md as an auditor follows it: its walk-through's shell blocks run in order with curl
against a real server, and its standard-library scripts checked on real checkpoints, proofs and
exports — including the answers they must refuse. The scripts run with `python -I -S`: no
installed package is importable, so they really need nothing but the standard library."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.app import create_app
from tests.api import test_checkpoints
from tests.api.flows import AUDITOR, ERP, approved_partner, post, signed_contract
from tests.api.test_checkpoints import event_hashes, keys, public_keys, record_sales
from tests.servers import free_port

key_file = test_checkpoints.key_file  # the signing key's fixture, shared

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
SCRIPTS = ("verify_checkpoint.py", "verify_proof.py", "pick_event.py", "verify_line.py", "verify_export.py")
PERIOD = "2026-03"


def save_scripts(folder: Path) -> Path:
    """Every script of docs/audit.md saved in `folder`, and a `python3` beside them that can
    import nothing outside the standard library; returns that `bin` directory."""
    text = DOC.read_text()
    for name in SCRIPTS:
        found = re.search(rf"<!-- {re.escape(name)}: tests run.*?-->\n```python\n(.*?)```", text, re.S)
        assert found, f"docs/audit.md has no block for {name}"
        (folder / name).write_text(found.group(1))
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    return bin_dir


def walkthrough_blocks() -> list[str]:
    return re.findall(r"<!-- walkthrough: tests run this block -->\n```sh\n(.*?)```", DOC.read_text(), re.S)


def run(folder: Path, script: str, *args: str | Path | dict) -> subprocess.CompletedProcess:
    """A script of the doc on files: each dict argument is written as a JSON file first."""
    paths = []
    for n, arg in enumerate(args):
        if isinstance(arg, dict):
            (folder / f"arg-{n}.json").write_text(json.dumps(arg))
            arg = folder / f"arg-{n}.json"
        paths.append(str(arg))
    return subprocess.run([sys.executable, "-I", "-S", str(folder / script), *paths],
                          capture_output=True, text=True, timeout=60, cwd=folder)


class Server:
    """The service on a free port, in a thread of this process, for curl."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(database_url), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def sell(api, contract: str, count: int) -> None:
    for n in range(count):
        post(api, f"/v1/contracts/{contract}/sales",
             {"order_id": f"W-{time.monotonic_ns()}-{n}", "amount": "1000.00", "sold_on": f"{PERIOD}-05"}, ERP)
    api.catch_up()


def test_the_walkthrough_runs_as_written_against_a_real_server(api, key_file, database_url, tmp_path):
    """Steps 1 to 5, block by block, as an auditor types them: curl with the token, the scripts,
    OpenSSL; between Step 2 and Step 3 the log grows and a new checkpoint is signed."""
    blocks = walkthrough_blocks()
    assert len(blocks) == 9, len(blocks)
    bin_dir = save_scripts(tmp_path)
    assert keys("create").exit_code == 0
    partner = approved_partner(api)
    contract = signed_contract(api, partner)
    sell(api, contract, 3)
    first = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TOKEN": api.token(AUDITOR[0], *AUDITOR[1]),
           "LC_ALL": "C.UTF-8"}

    def step(block: str, **variables: object) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env={**env, **{k: str(v) for k, v in variables.items()}})
        assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        return done.stdout

    with Server(database_url) as base:
        env["BASE"] = base
        shown = step(blocks[0])  # Step 1: the public keys
        assert first["key_id"] in shown and (tmp_path / "public-keys.json").exists()
        said = step(blocks[1])  # Step 2: a checkpoint, checked
        assert said == (f"ok: key {first['key_id']} signed the log of {first['tree_size']} events with root"
                        f" {first['root_hash']} at {first['timestamp']}\n")
        assert "Signature Verified Successfully" in step(blocks[2])  # ... and with OpenSSL
        assert (tmp_path / "body.txt").read_bytes() == first["body"].encode()
        assert (tmp_path / "body.txt").stat().st_size == 123 + len(str(first["tree_size"]))

        sell(api, contract, 2)
        second = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
        said = step(blocks[3], OLD_SIZE=first["tree_size"], NEW_SIZE=second["tree_size"])  # Step 3
        assert said.splitlines() == [f"ok: key {second['key_id']} signed the log of {second['tree_size']} events"
                                     f" with root {second['root_hash']} at {second['timestamp']}", "ok"]

        statement = api.get(f"/v1/commissions/statements/{partner}/{PERIOD}").json()
        line = statement["lines"][-1]
        where = {"PARTNER": partner, "PERIOD": PERIOD, "POSITION": line["position"]}
        assert step(blocks[4], **where).startswith(f"ok: key {second['key_id']} signed the log")  # Step 4
        said = step(blocks[5], **where)
        assert said.splitlines()[-1].startswith(f"ok: the line(s) at position {line['position']} come from leaf")
        assert line["order_id"] in step(blocks[6], **where)  # the event, decoded
        assert step(blocks[7], **where) == "ok\n"  # the same event without the statement
        said = step(blocks[8])  # Step 5: the whole export
        assert said.startswith(f"ok: {len(event_hashes(database_url))} events; sealed through")


def test_every_curl_of_the_doc_sends_the_token_to_a_real_address(api):
    """No curl example without `Authorization: Bearer $TOKEN`, and every address one the service
    documents (api.md's "Proof for auditors", src/api/routes)."""
    text = DOC.read_text().replace("\\\n", " ")
    commands = [line for line in text.splitlines() if "curl " in line and "$BASE" in line]
    assert len(commands) >= 8
    routes = [re.sub(r"\{[^}]+\}", "[^/?]+", path) for path in api.client.get("/openapi.json").json()["paths"]]
    for command in commands:
        assert '-H "Authorization: Bearer $TOKEN"' in command, command
        path = re.search(r'"\$BASE(/[^"?]*)', command).group(1).replace("$PARTNER", "p").replace("$PERIOD", "m")
        assert any(re.fullmatch(route, path) for route in routes), (path, command)


def test_verify_checkpoint_accepts_only_a_signature_of_a_key_you_kept(api, key_file, tmp_path):
    save_scripts(tmp_path)
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    old = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    kept = public_keys(api)
    assert keys("rotate").exit_code == 0
    record_sales(api, 1, contract)
    new = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    rotated = public_keys(api)
    for checkpoint in (old, new):
        checked = run(tmp_path, "verify_checkpoint.py", checkpoint, rotated)
        assert checked.returncode == 0 and checked.stdout.startswith(f"ok: key {checkpoint['key_id']} signed"), \
            checked.stdout + checked.stderr

    # A fresh key, listed under its own id in a forged key list, or under the company's id.
    forger = Ed25519PrivateKey.generate()
    raw = forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    forged_id = hashlib.sha256(raw).hexdigest()[:16]
    forged_body = new["body"].replace(new["root_hash"], "33" * 32)
    forged = {**new, "root_hash": "33" * 32, "body": forged_body, "key_id": forged_id,
              "signature": base64.b64encode(forger.sign(forged_body.encode())).decode()}
    forged_keys = {"keys": [{"key_id": forged_id, "public_key": base64.b64encode(raw).decode()}]}
    assert run(tmp_path, "verify_checkpoint.py", forged, forged_keys).returncode == 0  # signed, by someone
    company = next(key for key in rotated["keys"] if key["key_id"] == new["key_id"])
    refusals = [
        ("not among the keys", new, kept),  # signed after a rotation you have not accepted yet
        ("not among the keys", forged, rotated),
        ("is not the key of that id", {**forged, "key_id": new["key_id"]},
         {"keys": [{**company, "public_key": base64.b64encode(raw).decode()}]}),
        ("the signature is not key", {**new, "signature": old["signature"]}, rotated),
        ("the signature is not key", {**new, "root_hash": "33" * 32, "body": forged_body}, rotated),
        ("does not say what", {**new, "timestamp": old["timestamp"]}, rotated),
        ("does not say what", {**new, "body": new["body"].replace("\n", "\r\n")}, rotated),
        ("documented form", {**new, "root_hash": new["root_hash"].upper()}, rotated),
    ]
    for expected, checkpoint, key_list in refusals:
        refused = run(tmp_path, "verify_checkpoint.py", checkpoint, key_list)
        assert refused.returncode == 1 and refused.stdout.startswith("NOT OK: ") and expected in refused.stdout, \
            (expected, refused.stdout, refused.stderr)
    unkept = run(tmp_path, "verify_checkpoint.py", new)  # no key list: nothing to check against
    assert unkept.returncode == 2 and "usage" in unkept.stderr and unkept.stdout == ""


def export_lines(api) -> dict[int, dict]:
    answer = api.client.get("/v1/audit/export", headers=api.headers(AUDITOR[0], *AUDITOR[1]))
    assert answer.status_code == 200
    return {event["position"]: event for event in map(json.loads, answer.text.splitlines()) if "position" in event}


def test_verify_proof_checks_only_the_event_you_name(api, key_file, database_url, tmp_path):
    """The inclusion check needs the event you expect; a proof for another is refused (F3)."""
    save_scripts(tmp_path)
    assert keys("create").exit_code == 0
    contract = record_sales(api, 3)
    old = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    record_sales(api, 4, contract)
    new = post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()
    events = export_lines(api)
    log = event_hashes(database_url)[:new["tree_size"]]
    (tmp_path / "log.ndjson").write_text("".join(json.dumps(events[p]) + "\n" for p, _ in log))
    proofs = {}
    for position, event_hash in log:
        proofs[position] = api.get("/v1/audit/proofs/inclusion", position=position).json()
        picked = run(tmp_path, "pick_event.py", tmp_path / "log.ndjson", str(position), tmp_path / f"e-{position}.json")
        assert picked.returncode == 0, picked.stdout + picked.stderr
        for expected in (tmp_path / f"e-{position}.json", event_hash.hex()):
            checked = run(tmp_path, "verify_proof.py", new, proofs[position], expected)
            assert (checked.returncode, checked.stdout) == (0, "ok\n"), checked.stdout + checked.stderr

    (a, a_hash), (b, b_hash) = log[0], log[1]
    refusals = [  # a proof for event a, given event b; then proofs altered to fit b
        ("the proof is for the event at position", new, proofs[a], tmp_path / f"e-{b}.json"),
        ("is for another event", new, proofs[a], b_hash.hex()),
        ("is for another event", new, {**proofs[a], "position": b}, tmp_path / f"e-{b}.json"),
        ("does not lead to the checkpoint's root", new, {**proofs[a], "event_hash": b_hash.hex()}, b_hash.hex()),
        ("the proof is for a tree of", old, proofs[a], a_hash.hex()),
    ]
    for expected, *arguments in refusals:
        refused = run(tmp_path, "verify_proof.py", *arguments)
        assert refused.returncode == 1 and refused.stdout.startswith("NOT OK: ") and expected in refused.stdout, \
            (expected, refused.stdout, refused.stderr)
    for arguments in ((new, proofs[a]), (new, proofs[a], tmp_path / "log.ndjson")):  # no event; not one event
        refused = run(tmp_path, "verify_proof.py", *arguments)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
    assert run(tmp_path, "pick_event.py", tmp_path / "log.ndjson", "999999", tmp_path / "none.json").returncode == 1

    consistency = api.get("/v1/audit/proofs/consistency", first=old["tree_size"], second=new["tree_size"]).json()
    assert run(tmp_path, "verify_proof.py", old, new, consistency).stdout == "ok\n"
    for older, newer in (({**old, "root_hash": "22" * 32}, new), (old, {**new, "root_hash": "22" * 32})):
        assert run(tmp_path, "verify_proof.py", older, newer, consistency).stdout.startswith("NOT OK")


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_scripts_import_nothing_but_the_standard_library(name, tmp_path):
    save_scripts(tmp_path)
    imported = re.findall(r"^import (\w+)$", (tmp_path / name).read_text(), re.M)
    assert imported and set(imported) <= set(sys.stdlib_module_names), imported
    assert not re.search(r"^from ", (tmp_path / name).read_text(), re.M)
