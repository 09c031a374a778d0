"""Signed checkpoints and Merkle proofs over HTTP, checked as an outside auditor would: the
signature with `cryptography` against the published public key and the body's bytes, the
proofs with an independent RFC 9162 verifier against roots computed here from the event
hashes (api.md, "Proof for auditors"; docs/audit.md)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
import subprocess
import threading
import time

import psycopg
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.store import checkpoints
from tests.api.flows import ERP, approved_partner, post, problem, signed_contract
from tests.channel_domain.store import rfc9162
from tests.deploy.test_backup_restore import pg_tool
from tests.servers import BIN

EVERY_ROLE = ("channel_manager", "channel_specialist", "finance", "hr", "general_manager", "integration",
              "reporting", "auditor")


@pytest.fixture
def key_file(tmp_path, monkeypatch, database_url):
    """Where this test's server and CLI find the signing key (none there yet)."""
    path = tmp_path / "secrets" / "checkpoint.pem"
    monkeypatch.setenv(checkpoints.KEY_FILE_VARIABLE, str(path))
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    return path


def keys(*args: str):
    return CliRunner().invoke(cli, ["keys", *args])


def record_sales(api, count: int, contract: str | None = None) -> str:
    contract = contract or signed_contract(api, approved_partner(api))
    for n in range(count):
        post(api, f"/v1/contracts/{contract}/sales",
             {"order_id": f"S-{time.monotonic_ns()}-{n}", "amount": "10.00", "sold_on": "2026-03-01"}, ERP)
    api.catch_up()
    return contract


def event_hashes(database_url: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(database_url) as conn:
        return [(row[0], bytes(row[1])) for row in conn.execute("SELECT position, hash FROM events ORDER BY position")]


def public_keys(api) -> dict:
    response = api.client.get("/v1/audit/public-key")  # no token: anyone may check a signature
    assert response.status_code == 200, response.text
    return response.json()


def check_signature(api, checkpoint: dict) -> None:
    """As an auditor: the body says what the fields say, byte for byte, and the key it names
    signed exactly those bytes."""
    assert checkpoint["body"] == (f"channel-domain/checkpoint/v1\n{checkpoint['tree_size']}\n"
                                  f"{checkpoint['root_hash']}\n{checkpoint['timestamp']}\n")
    assert checkpoint["root_hash"] == checkpoint["root_hash"].lower() and len(checkpoint["root_hash"]) == 64
    assert checkpoint["timestamp"].endswith("Z") and len(checkpoint["timestamp"]) == len("2026-03-01T08:15:02.123456Z")
    published = {key["key_id"]: key for key in public_keys(api)["keys"]}[checkpoint["key_id"]]
    raw = base64.b64decode(published["public_key"])
    assert len(raw) == 32 and hashlib.sha256(raw).hexdigest()[:16] == checkpoint["key_id"]
    from_pem = serialization.load_pem_public_key(published["pem"].encode())
    signature = base64.b64decode(checkpoint["signature"])
    assert len(signature) == 64
    for key in (Ed25519PublicKey.from_public_bytes(raw), from_pem):
        key.verify(signature, checkpoint["body"].encode("utf-8"))  # raises InvalidSignature if not
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, checkpoint["body"].replace("\n", "\r\n", 1).encode())


def test_a_checkpoint_is_signed_over_the_tree_of_the_event_hashes(api, key_file, database_url):
    created = keys("create")
    assert created.exit_code == 0, created.output
    record_sales(api, 5)
    made = post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201).json()
    leaves = [h for _, h in event_hashes(database_url)]
    assert made["tree_size"] == len(leaves)
    assert made["root_hash"] == rfc9162.mth(leaves).hex()
    check_signature(api, made)
    for role in EVERY_ROLE:  # the latest is for every role
        latest = api.client.get("/v1/audit/checkpoints/latest", headers=api.headers(f"r-{role}", role))
        assert latest.status_code == 200 and latest.json() == made, (role, latest.text)
    assert api.client.get("/v1/audit/checkpoints/latest").status_code == 401
    keys_now = public_keys(api)
    assert keys_now["current_key_id"] == made["key_id"]
    assert [(k["key_id"], k["current"], k["retired_at"]) for k in keys_now["keys"]] == [(made["key_id"], True, None)]
    assert f"key_id: {made['key_id']}" in created.output and keys_now["keys"][0]["public_key"] in created.output


def test_inclusion_of_every_event_and_consistency_of_two_checkpoints(api, key_file, database_url):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 4)
    first = post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201).json()
    record_sales(api, 7, contract)
    second = post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201).json()
    log = event_hashes(database_url)
    leaves = [h for _, h in log]
    assert (first["tree_size"], second["tree_size"]) == (len(leaves) - 7, len(leaves))
    for checkpoint in (first, second):
        check_signature(api, checkpoint)
        root = bytes.fromhex(checkpoint["root_hash"])
        assert root == rfc9162.mth(leaves[:checkpoint["tree_size"]])
        for index, (position, event_hash) in enumerate(log[:checkpoint["tree_size"]]):
            params = {"position": position, "tree_size": checkpoint["tree_size"]}
            if checkpoint is second:
                params.pop("tree_size")  # defaults to the latest checkpoint's
            proof = api.get("/v1/audit/proofs/inclusion", **params)
            assert proof.status_code == 200, proof.text
            body = proof.json()
            assert (body["leaf_index"], body["tree_size"], body["event_hash"]) == \
                (index, checkpoint["tree_size"], event_hash.hex())
            path = [bytes.fromhex(step) for step in body["audit_path"]]
            assert rfc9162.verify_inclusion(index, checkpoint["tree_size"], event_hash, path, root)
    consistency = api.get("/v1/audit/proofs/consistency", first=first["tree_size"], second=second["tree_size"])
    assert consistency.status_code == 200, consistency.text
    assert consistency.json() == api.get("/v1/audit/proofs/consistency", first=first["tree_size"]).json()
    assert rfc9162.verify_consistency(first["tree_size"], second["tree_size"], bytes.fromhex(first["root_hash"]),
                                      bytes.fromhex(second["root_hash"]),
                                      [bytes.fromhex(step) for step in consistency.json()["proof"]])
    listed = api.get("/v1/audit/checkpoints", limit=1)
    assert listed.json()["items"] == [first]
    assert api.get("/v1/audit/checkpoints", cursor=listed.json()["next_cursor"]).json() == \
        {"items": [second], "next_cursor": None}


def test_refusals_name_what_is_out_of_range(api, key_file, database_url):
    assert api.get("/v1/audit/proofs/inclusion", position=1).json()["code"] == "no_checkpoint"
    problem(api.get("/v1/audit/checkpoints/latest"), 404, "no_checkpoint")
    problem(api.get("/v1/audit/proofs/consistency", first=1), 404, "no_checkpoint")
    assert keys("create").exit_code == 0
    record_sales(api, 2)
    size = post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201).json()["tree_size"]
    log = event_hashes(database_url)
    problem(api.get("/v1/audit/proofs/inclusion", position=log[-1][0] + 100), 404, "position_not_in_tree")
    problem(api.get("/v1/audit/proofs/inclusion", position=log[-1][0], tree_size=size - 1), 404,
            "position_not_in_tree")
    problem(api.get("/v1/audit/proofs/inclusion", position=1, tree_size=size + 1), 422, "tree_size_out_of_range")
    # Existence before rules (api.md, "Refusal order"): no such leaf at all is a 404 whatever the size.
    problem(api.get("/v1/audit/proofs/inclusion", position=log[-1][0] + 100, tree_size=size + 1), 404,
            "position_not_in_tree")
    problem(api.get("/v1/audit/proofs/inclusion", position=1, tree_size=0), 422, "validation_error")
    problem(api.get("/v1/audit/proofs/consistency", first=3, second=size + 1), 422, "tree_size_out_of_range")
    problem(api.get("/v1/audit/proofs/consistency", first=3, second=2), 422, "tree_sizes_out_of_order")
    assert api.get("/v1/audit/proofs/consistency", first=size, second=size).json()["proof"] == []
    for path in ("/v1/audit/proofs/inclusion?position=1", "/v1/audit/proofs/consistency?first=1",
                 "/v1/audit/checkpoints"):
        problem(api.client.get(path, headers=api.headers("fin-1", "finance")), 403, "forbidden")
    problem(api.post("/v1/audit/checkpoints", None, actor="fin-1", roles=("finance",)), 403, "forbidden")


def test_without_a_key_nothing_is_signed_and_the_post_says_why(api, key_file):
    record_sales(api, 1)
    refused = api.post("/v1/audit/checkpoints", None, actor="auditor-1", roles=("auditor",))
    body = problem(refused, 503, "signing_key_missing")
    assert "keys create" in body["detail"]
    assert public_keys(api) == {"current_key_id": None, "keys": []}
    shown = keys("show")
    assert shown.exit_code == 1 and "no checkpoint signing key" in shown.output
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not a key\n")
    body = problem(api.post("/v1/audit/checkpoints", None, actor="auditor-1", roles=("auditor",)), 503,
                   "signing_key_missing")
    assert "no usable private key" in body["detail"]


def test_rotation_keeps_old_checkpoints_verifiable(api, key_file):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    old = post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201).json()
    rotated = keys("rotate")
    assert rotated.exit_code == 0, rotated.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    record_sales(api, 1, contract)
    new = post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201).json()
    assert new["key_id"] != old["key_id"] and f"retired {old['key_id']}" in rotated.output
    published = public_keys(api)
    assert published["current_key_id"] == new["key_id"]
    states = {key["key_id"]: (key["current"], key["retired_at"] is not None) for key in published["keys"]}
    assert states == {old["key_id"]: (False, True), new["key_id"]: (True, False)}
    check_signature(api, old)
    check_signature(api, new)
    assert keys("show").output.startswith(f"key_id: {new['key_id']}\n")


def test_the_key_file_is_private_never_overwritten_and_never_in_the_database(api, key_file, database_url):
    created = keys("create")
    assert created.exit_code == 0, created.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    again = keys("create")
    assert again.exit_code == 2 and "exists already" in again.output
    assert key_file.read_bytes() == pem
    record_sales(api, 1)
    post(api, "/v1/audit/checkpoints", None, ("auditor-1", ("auditor",)), 201)
    private = serialization.load_pem_private_key(pem, password=None)
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    dump = subprocess.run([pg_tool("pg_dump", database_url), "--no-owner", database_url], check=True,
                          capture_output=True).stdout
    assert b"checkpoint_keys" in dump and b"merkle_checkpoints" in dump
    pem_body = b"".join(pem.splitlines()[1:-1])
    for secret in (raw.hex().encode(), base64.b64encode(raw), der.hex().encode(), base64.b64encode(der), pem_body,
                   b"PRIVATE KEY"):
        assert secret not in dump
    public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public_raw.hex().encode() in dump  # what is there: the public key only


def test_the_background_maker_signs_while_the_tree_grows(api, key_file, database_url, caplog):
    datastore = api.department.event_recorder.datastore
    stop = threading.Event()
    caplog.set_level(logging.WARNING, logger="channel_domain.store.checkpoints")
    maker = threading.Thread(target=checkpoints.run_maker, args=(datastore, stop, 0.3), daemon=True)
    maker.start()
    try:
        contract = record_sales(api, 1)
        time.sleep(1.0)
        missing = [r for r in caplog.records if "no checkpoints are made" in r.getMessage()]
        assert len(missing) == 1  # said once, not every look
        assert api.get("/v1/audit/checkpoints").json()["items"] == []
        assert keys("create").exit_code == 0  # picked up without a restart
        made = wait_for_checkpoints(api, 1)
        assert made[0]["tree_size"] == len(event_hashes(database_url))
        time.sleep(1.0)  # the tree did not grow: nothing new
        assert len(api.get("/v1/audit/checkpoints").json()["items"]) == 1
        record_sales(api, 2, contract)
        made = wait_for_checkpoints(api, 2)
        assert made[1]["tree_size"] == made[0]["tree_size"] + 2
        for checkpoint in made:
            check_signature(api, checkpoint)
    finally:
        stop.set()
        maker.join(timeout=5)


def wait_for_checkpoints(api, count: int) -> list[dict]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        items = api.get("/v1/audit/checkpoints").json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} checkpoints after 15 s")


def test_a_bad_interval_is_refused_at_start(monkeypatch, database_url):
    monkeypatch.setenv(checkpoints.INTERVAL_VARIABLE, "soon")
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    refused = CliRunner().invoke(cli, ["project", "--no-webhooks"])
    assert refused.exit_code == 2 and checkpoints.INTERVAL_VARIABLE in refused.output
    assert os.environ[checkpoints.INTERVAL_VARIABLE] == "soon"


def checkpoints_in(database_url: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT tree_size, key_id FROM merkle_checkpoints ORDER BY id").fetchall()


def wait_for_tree_size(database_url: str, size: int, within_s: float = 60) -> list[tuple[int, str]]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        made = checkpoints_in(database_url)
        if made and made[-1][0] == size:
            return made
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint of {size} leaves within {within_s} s: {checkpoints_in(database_url)}")


def test_serve_makes_checkpoints_in_the_background(key_file, database_url, monkeypatch):
    """`serve` keeps the read models — the tree among them — and signs while the log grows."""
    assert keys("create").exit_code == 0
    monkeypatch.setenv(checkpoints.INTERVAL_VARIABLE, "0.3")
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import Api

    with TestClient(create_app(database_url, run_projections=True)) as client:
        api = Api(client, database_url)
        contract = signed_contract(api, approved_partner(api))
        made = wait_for_tree_size(database_url, len(event_hashes(database_url)))
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": "bg-1", "amount": "1.00", "sold_on": "2026-03-01"},
             ERP)
        made = wait_for_tree_size(database_url, len(event_hashes(database_url)))
        assert len(made) >= 2 and [size for size, _ in made] == sorted({size for size, _ in made})
        check_signature(api, api.get("/v1/audit/checkpoints/latest").json())


def test_project_workers_make_checkpoints_when_serve_does_not(key_file, database_url, api):
    assert keys("create").exit_code == 0
    record_sales(api, 2)
    size = len(event_hashes(database_url))
    worker = subprocess.Popen([str(BIN / "channel-domain"), "project", "--no-webhooks"],
                              env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url,
                                   checkpoints.INTERVAL_VARIABLE: "0.3"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_tree_size(database_url, size)[-1][1] == keys("show").output.split()[1]
    finally:
        worker.terminate()
        worker.wait(timeout=20)
