"""docs/audit.md as an auditor follows it: its walk-through's shell blocks run in order with curl
against a real server, and its standard-library scripts checked on real checkpoints, proofs and
exports — including the answers they must refuse. The scripts run with `python -E -S`: no
installed package and nothing on PYTHONPATH is importable, so they really need nothing but the
standard library and one another (verify_proof.py and verify_line.py import verify_checkpoint.py
from their own folder, which `-I` would hide)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api import test_checkpoints
from tests.api.flows import AUDITOR, ERP, approved_partner, post, signed_contract
from tests.api.test_checkpoints import event_hashes, keys, public_keys, record_sales
from tests.servers import InThread

key_file = test_checkpoints.key_file  # the signing key's fixture, shared

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
SCRIPTS = ("verify_checkpoint.py", "verify_proof.py", "pick_event.py", "verify_line.py", "verify_export.py")
PERIOD = "2026-03"
STDLIB_ONLY = ("-E", "-S")  # no site-packages, no PYTHONPATH; the script's own folder stays importable


def save_scripts(folder: Path) -> Path:
    """Every script of docs/audit.md saved in `folder`, and a `python3` beside them that can
    import nothing but the standard library and the scripts; returns that `bin` directory."""
    text = DOC.read_text()
    for name in SCRIPTS:
        found = re.search(rf"<!-- {re.escape(name)}: tests run.*?-->\n```python\n(.*?)```", text, re.S)
        assert found, f"docs/audit.md has no block for {name}"
        (folder / name).write_text(found.group(1))
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" {" ".join(STDLIB_ONLY)} "$@"\n')
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
    return subprocess.run([sys.executable, *STDLIB_ONLY, str(folder / script), *paths],
                          capture_output=True, text=True, timeout=60, cwd=folder)


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

    with InThread(database_url) as base:
        env["BASE"] = base
        shown = step(blocks[0])  # Step 1: the public keys
        assert first["key_id"] in shown and (tmp_path / "public-keys.json").exists()
        said = step(blocks[1])  # Step 2: a checkpoint, checked
        assert said == (f"ok: key {first['key_id']} signed the log of {first['tree_size']} events with root"
                        f" {first['root_hash']} at {first['timestamp']}\n")
        said = step(blocks[2]).splitlines()  # ... and with OpenSSL, the key id computed by OpenSSL first
        assert said[0] == first["key_id"] and "Signature Verified Successfully" in said[1:], said
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
        assert "curl --fail-with-body -sS " in command and not re.search(r" -f[a-zA-Z]* ", command), command
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
    kept = public_keys(api)
    events = export_lines(api)
    log = event_hashes(database_url)[:new["tree_size"]]
    (tmp_path / "log.ndjson").write_text("".join(json.dumps(events[p]) + "\n" for p, _ in log))
    proofs = {}
    for position, event_hash in log:
        proofs[position] = api.get("/v1/audit/proofs/inclusion", position=position).json()
        picked = run(tmp_path, "pick_event.py", tmp_path / "log.ndjson", str(position), tmp_path / f"e-{position}.json")
        assert picked.returncode == 0, picked.stdout + picked.stderr
        for expected in (tmp_path / f"e-{position}.json", event_hash.hex()):
            checked = run(tmp_path, "verify_proof.py", new, proofs[position], expected, kept)
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
        refused = run(tmp_path, "verify_proof.py", *arguments, kept)
        assert refused.returncode == 1 and refused.stdout.startswith("NOT OK: ") and expected in refused.stdout, \
            (expected, refused.stdout, refused.stderr)
    for arguments in ((new, proofs[a], kept), (new, proofs[a], tmp_path / "log.ndjson", kept)):  # no event; not one
        refused = run(tmp_path, "verify_proof.py", *arguments)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
    assert run(tmp_path, "pick_event.py", tmp_path / "log.ndjson", "999999", tmp_path / "none.json").returncode == 1

    consistency = api.get("/v1/audit/proofs/consistency", first=old["tree_size"], second=new["tree_size"]).json()
    assert run(tmp_path, "verify_proof.py", old, new, consistency, kept).stdout == "ok\n"
    for older, newer in (({**old, "root_hash": "22" * 32}, new), (old, {**new, "root_hash": "22" * 32})):
        assert run(tmp_path, "verify_proof.py", older, newer, consistency, kept).stdout.startswith("NOT OK")


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_scripts_import_nothing_but_the_standard_library(name, tmp_path):
    save_scripts(tmp_path)
    imported = re.findall(r"^import (\w+)$", (tmp_path / name).read_text(), re.M)
    assert imported and set(imported) <= set(sys.stdlib_module_names) | {"verify_checkpoint"}, imported
    assert not re.search(r"^from ", (tmp_path / name).read_text(), re.M)


def test_an_error_answer_leaves_its_problem_code_for_the_auditor_to_read(api, database_url, tmp_path):
    """Step 2 before anything is signed: curl stops the walk-through, and the file it was saving to
    holds the problem code the tables list (`no_checkpoint`), not nothing."""
    bin_dir = save_scripts(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TOKEN": api.token(AUDITOR[0], *AUDITOR[1])}
    with InThread(database_url) as base:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough_blocks()[1]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, env={**env, "BASE": base})
    assert done.returncode == 22 and "error: 404" in done.stderr and done.stdout == "", done.stdout + done.stderr
    assert json.loads((tmp_path / "checkpoint-1.json").read_text())["code"] == "no_checkpoint"


# --- the OpenSSL path ties key.pem to the key id on paper (review 17b, finding 2) ---------------


def raw_of(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pem_of(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id_of(key: Ed25519PrivateKey) -> str:
    return hashlib.sha256(raw_of(key)).hexdigest()[:16]


def signed_checkpoint(signer: Ed25519PrivateKey, key_id: str, root_hash: str, tree_size: int = 1042) -> dict:
    """A checkpoint as the service answers it, signed by `signer` and naming `key_id`."""
    timestamp = "2026-03-01T08:15:02.123456Z"
    body = f"channel-domain/checkpoint/v1\n{tree_size}\n{root_hash}\n{timestamp}\n"
    return {"tree_size": tree_size, "root_hash": root_hash, "timestamp": timestamp, "key_id": key_id, "body": body,
            "signature": base64.b64encode(signer.sign(body.encode())).decode()}


def key_list(key_id: str, public_key: bytes, pem: str) -> dict:
    return {"current_key_id": key_id, "keys": [{"key_id": key_id, "public_key": base64.b64encode(public_key).decode(),
                                                "pem": pem, "retired_at": None, "current": True}]}


def test_the_openssl_check_uses_the_key_whose_id_you_compared_never_the_pem_field(tmp_path):
    """A key list with the company's id and key but a forger's `pem`: OpenSSL must check with the
    company's key and so refuse the forger's checkpoint; a key list with the forger's key under the
    company's id is refused before OpenSSL runs."""
    bin_dir = save_scripts(tmp_path)
    company, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    company_id = key_id_of(company)
    genuine = signed_checkpoint(company, company_id, "5f" * 32)
    forged = signed_checkpoint(forger, company_id, "33" * 32)
    forger_pem = key_list(company_id, raw_of(company), pem_of(forger))
    forger_key = key_list(company_id, raw_of(forger), pem_of(forger))
    block = walkthrough_blocks()[2]

    def openssl_step(checkpoint: dict, keys_json: dict) -> subprocess.CompletedProcess:
        (tmp_path / "checkpoint-1.json").write_text(json.dumps(checkpoint))
        (tmp_path / "public-keys.json").write_text(json.dumps(keys_json))
        (tmp_path / "key.pem").write_text(pem_of(forger))  # left over from an earlier run
        return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})

    checked = openssl_step(genuine, forger_pem)  # the pem field plays no part
    assert checked.returncode == 0 and checked.stdout.splitlines() == [company_id, "Signature Verified Successfully"], \
        checked.stdout + checked.stderr
    refused = openssl_step(forged, forger_pem)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1 and "Signature Verification Failure" in said and "Verified Successfully" not in said
    assert refused.stdout.splitlines()[0] == company_id  # the key OpenSSL used is the one whose id is on paper
    refused = openssl_step(forged, forger_key)
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout + refused.stderr
    assert refused.stderr == f"NOT OK: the key listed as {company_id} is not the key of that id\n"
    assert not (tmp_path / "key.pem").exists()


# --- verify_proof.py and verify_line.py check the signature too (finding 3) ---------------------


def one_event_log(signer: Ed25519PrivateKey, key_id: str) -> tuple[dict, dict, dict, dict]:
    """An export line, the checkpoint of the one-event log it makes, its inclusion proof, and a
    statement whose line comes from it."""
    stream, state = "5b0c7a4e-1f2d-4c3b-9a8e-7d6c5b4a3928", b'{"order_id": "S-1"}'
    event = {"position": 7, "stream_id": stream, "version": 1, "topic": "x:Sale", "effective_on": None,
             "recorded_at": "2026-03-01T00:00:00.000000Z", "prev_hash": "00" * 32,
             "state": base64.b64encode(state).decode()}
    header = f"channel-domain/event/v1\n7\n{stream}\n1\nx:Sale\n2026-03-01T00:00:00.000000Z\n\n"
    event_hash = hashlib.sha256(bytes(32) + header.encode() + state).digest()
    checkpoint = signed_checkpoint(signer, key_id, hashlib.sha256(b"\x00" + event_hash).hexdigest(), tree_size=1)
    proof = {"position": 7, "leaf_index": 0, "tree_size": 1, "event_hash": event_hash.hex(), "audit_path": []}
    line = {"position": 7, "inclusion_proof": proof, "order_id": "S-1",
            "event_id": str(uuid.uuid5(uuid.UUID(stream), "1"))}
    return event, checkpoint, proof, {"proof_checkpoint": checkpoint, "lines": [line]}


def test_verify_proof_and_verify_line_accept_only_a_checkpoint_your_keys_signed(tmp_path):
    save_scripts(tmp_path)
    company, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    company_id = key_id_of(company)
    kept = key_list(company_id, raw_of(company), pem_of(company))
    event, checkpoint, proof, statement = one_event_log(company, company_id)
    (tmp_path / "event.json").write_text(json.dumps(event) + "\n")
    same_size = {"first": 1, "second": 1, "proof": []}
    line = run(tmp_path, "verify_line.py", statement, checkpoint, "7", tmp_path / "event.json", kept)
    assert (line.returncode, line.stdout) == (0, "ok: the line(s) at position 7 come from leaf 0 of the log of 1"
                                                 f" events that key {company_id} signed at {checkpoint['timestamp']}\n")
    for arguments in ((checkpoint, proof, tmp_path / "event.json"), (checkpoint, checkpoint, same_size)):
        accepted = run(tmp_path, "verify_proof.py", *arguments, kept)
        assert (accepted.returncode, accepted.stdout) == (0, "ok\n"), accepted.stdout + accepted.stderr

    unsigned = {**checkpoint, "signature": base64.b64encode(bytes(64)).decode()}
    _, by_forger, forged_proof, forged_statement = one_event_log(forger, key_id_of(forger))
    refusals = [  # (expected, the file named, script, arguments): arg-N.json is the N-th argument
        (f"arg-1.json: the signature is not key {company_id}'s over the body", "verify_line.py",
         ({**statement, "proof_checkpoint": unsigned}, unsigned, "7", tmp_path / "event.json")),
        (f"arg-1.json: it is signed by key {key_id_of(forger)}, which is not among the keys", "verify_line.py",
         (forged_statement, by_forger, "7", tmp_path / "event.json")),
        (f"arg-0.json: the signature is not key {company_id}'s over the body", "verify_proof.py",
         (unsigned, proof, tmp_path / "event.json")),
        (f"arg-0.json: it is signed by key {key_id_of(forger)}, which is not among the keys", "verify_proof.py",
         (by_forger, forged_proof, tmp_path / "event.json")),
        ("arg-0.json: the signature is not key", "verify_proof.py", (unsigned, checkpoint, same_size)),
        ("arg-1.json: the signature is not key", "verify_proof.py", (checkpoint, unsigned, same_size)),
    ]
    for expected, script, arguments in refusals:
        refused = run(tmp_path, script, *arguments, kept)
        assert refused.returncode == 1 and refused.stdout.startswith(f"NOT OK: {tmp_path}/{expected}"), \
            (expected, refused.stdout, refused.stderr)


# --- verify_checkpoint.py's Ed25519 against RFC 8032 and its edge cases (finding 8) -------------

RFC8032_VECTORS = [  # section 7.1, tests 1 to 3: (secret key, public key, message, signature)
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
     "d25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c"
     "387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc659"
     "4a7c15e9716ed28dc027beceea1ec40a"),
]
# The eight points of small order, as libsodium lists them (canonical encodings).
SMALL_ORDER = ["01" + "00" * 31, "ec" + "ff" * 30 + "7f", "00" * 32, "00" * 31 + "80",
               "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
               "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
               "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
               "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"]


@pytest.fixture
def ed25519(tmp_path):
    """verify_checkpoint.py as the doc gives it, loaded as a module."""
    save_scripts(tmp_path)
    spec = importlib.util.spec_from_file_location("verify_checkpoint", tmp_path / "verify_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def h_of(ed25519, r: bytes, public_key: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + public_key + message).digest(), "little") % ed25519.Q


def test_verify_checkpoint_agrees_with_the_rfc_8032_test_vectors(ed25519):
    for _, public_key, message, signature in RFC8032_VECTORS:
        public_key, message, signature = bytes.fromhex(public_key), bytes.fromhex(message), bytes.fromhex(signature)
        assert ed25519.signature_holds(public_key, message, signature)
        assert not ed25519.signature_holds(public_key, message + b"x", signature)
        assert not ed25519.signature_holds(public_key, message, signature[:63] + bytes([signature[63] ^ 1]))
        # S + L is the same scalar, and verifies unless S >= L is refused, as RFC 8032 5.1.7 requires
        bigger = (int.from_bytes(signature[32:], "little") + ed25519.Q).to_bytes(32, "little")
        assert not ed25519.signature_holds(public_key, message, signature[:32] + bigger)


def test_verify_checkpoint_refuses_a_non_canonical_r(ed25519):
    """R the neutral point with S = h·a fits the equation for the key of secret scalar a. Encoded
    canonically that is a valid signature; its two non-canonical encodings (y + p, and x = 0 with
    the sign bit set) would fit too if decoded leniently, and RFC 8032 requires refusing them."""
    seed, public_key = (bytes.fromhex(value) for value in RFC8032_VECTORS[0][:2])
    clamped = bytearray(hashlib.sha512(seed).digest()[:32])
    clamped[0] &= 248
    clamped[31] = clamped[31] & 127 | 64
    a = int.from_bytes(clamped, "little")
    message = b"channel-domain/checkpoint/v1\n"

    def signed_with(r: bytes) -> bytes:
        return r + (h_of(ed25519, r, public_key, message) * a % ed25519.Q).to_bytes(32, "little")

    assert ed25519.signature_holds(public_key, message, signed_with((1).to_bytes(32, "little")))
    for r in ((ed25519.P + 1).to_bytes(32, "little"), (1 | 1 << 255).to_bytes(32, "little")):
        assert not ed25519.signature_holds(public_key, message, signed_with(r)), r.hex()


def test_verify_checkpoint_refuses_the_small_order_keys(ed25519, tmp_path):
    """Each small-order key A "verifies" R = neutral, S = 0 for any message whose h is a multiple of
    A's order: a signature nobody made. Refused for all eight, listed or not."""
    neutral = (1).to_bytes(32, "little")
    for encoded in SMALL_ORDER:
        public_key = bytes.fromhex(encoded)
        assert ed25519.decode(public_key) is not None and ed25519.neutral(ed25519.times(8, ed25519.decode(public_key)))
        message = next(m for m in (str(n).encode() for n in range(1000))
                       if h_of(ed25519, neutral, public_key, m) % 8 == 0)
        assert not ed25519.signature_holds(public_key, message, neutral + bytes(32)), encoded

    # ... and so is a checkpoint by such a key, listed under its own id
    public_key = bytes.fromhex(SMALL_ORDER[0])
    key_id = hashlib.sha256(public_key).hexdigest()[:16]
    body = f"channel-domain/checkpoint/v1\n1\n{'33' * 32}\n2026-03-01T08:15:02.123456Z\n"
    forged = {"tree_size": 1, "root_hash": "33" * 32, "timestamp": "2026-03-01T08:15:02.123456Z", "key_id": key_id,
              "body": body, "signature": base64.b64encode(neutral + bytes(32)).decode()}
    refused = run(tmp_path, "verify_checkpoint.py", forged, key_list(key_id, public_key, ""))
    assert refused.returncode == 1 and refused.stdout == f"NOT OK: the signature is not key {key_id}'s over the body\n"


# --- what the walk-through says, where a test cannot run it (findings 5 and 7) ------------------


def section(title: str) -> str:
    """The text under a heading of docs/audit.md, up to the next heading."""
    found = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", DOC.read_text(), re.S | re.M)
    assert found, title
    return re.sub(r"\s+", " ", found.group(1))


def test_the_doc_says_what_keys_show_prints_and_what_libressl_may_not_do():
    assert "`channel-domain keys show` prints the current key's id only" in section(
        "Step 6. Have the operator check the log against the witness")
    assert "as `channel-domain keys show` and `public-keys.json` give them" not in re.sub(r"\s+", " ", DOC.read_text())
    step2 = section("Step 2. Keep a checkpoint, and check its signature")
    assert "LibreSSL" in step2 and "`pkeyutl -rawin`" in step2 and "rely on `verify_checkpoint.py`" in step2


def test_every_place_that_describes_the_full_verification_gives_the_same_limit():
    said = "one at a time in the whole service"
    flat = lambda text: re.sub(r"\s+", " ", text)  # noqa: E731 - the doc wraps lines anywhere
    assert said in flat(section("Step 7. Read history in the workspace"))
    workspace = section("The workspace, technically")
    assert said in flat(workspace.split("| Verification 验证 |")[1])
    assert said in flat(section("What each problem means"))
    assert "each server process" not in flat(DOC.read_text())
    assert "one at a time:" not in re.sub(r"\s+", " ", DOC.read_text())
