"""Witnessing (issue 17, part 3): signed checkpoints published outside the database, and the log
checked against them from that copy alone — including after an operator rewrote an event and
every hash, seal, tree node and checkpoint inside PostgreSQL (docs/audit.md, "Publishing
checkpoints to a witness")."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.rows import dict_row
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.store import checkpoints, merkle, witness
from channel_domain.store.integrity import GENESIS, event_hash, utc_text, verify
from tests.api import test_checkpoints
from tests.api.flows import AUDITOR, post
from tests.api.test_checkpoints import event_hashes, keys, public_keys, record_sales
from tests.channel_domain.store import rfc9162
from tests.servers import BIN, serving_forever

key_file = test_checkpoints.key_file  # the signing key's fixture, shared


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def said(result) -> str:
    """The output as one line: rich wraps long messages at the terminal's width."""
    return " ".join(result.output.split())


def checkpoint_now(api) -> dict:
    return post(api, "/v1/audit/checkpoints", None, AUDITOR, 201).json()


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_publishing_to_a_directory_appends_each_checkpoint_once_with_its_key(api, key_file, tmp_path):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 3)
    first = checkpoint_now(api)
    target = tmp_path / "witness"
    published = run("checkpoints", "publish", "--to", str(target))
    assert published.exit_code == 0, published.output
    assert f"published 1 checkpoint(s) to {target / 'checkpoints.ndjson'}" in said(published)
    pem = {key["key_id"]: key["pem"] for key in public_keys(api)["keys"]}
    assert lines_of(target / "checkpoints.ndjson") == [{**first, "public_key_pem": pem[first["key_id"]]}]

    again = run("checkpoints", "publish", "--to", str(target))
    assert again.exit_code == 0 and "published 0 checkpoint(s)" in said(again)
    assert len(lines_of(target / "checkpoints.ndjson")) == 1

    record_sales(api, 2, contract)
    second = checkpoint_now(api)
    assert keys("rotate").exit_code == 0  # a rotated key: each line carries the key that signed it
    record_sales(api, 1, contract)
    third = checkpoint_now(api)
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    published = lines_of(target / "checkpoints.ndjson")
    pem = {key["key_id"]: key["pem"] for key in public_keys(api)["keys"]}
    assert published == [{**c, "public_key_pem": pem[c["key_id"]]} for c in (first, second, third)]
    assert third["key_id"] != first["key_id"]
    for document in published:
        assert witness.signature_problem(document) is None

    checked = run("verify", "--checkpoints", str(target))
    assert checked.exit_code == 0, checked.output
    assert f"ok: the log matches all 3 published checkpoints in {target}" in said(checked)
    # The file itself may be named, as it is archived elsewhere.
    named = run("verify", "--checkpoints", str(target / "checkpoints.ndjson"))
    assert named.exit_code == 0, named.output


def test_a_published_checkpoint_altered_or_cut_short_is_named(api, key_file, tmp_path):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    checkpoint_now(api)
    record_sales(api, 2, contract)
    second = checkpoint_now(api)
    target = tmp_path / "witness.ndjson"
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    lines = target.read_text().splitlines()
    forged_root = "ab" * 32
    forged = {**json.loads(lines[1]), "root_hash": forged_root,
              "body": checkpoints.body(second["tree_size"], bytes.fromhex(forged_root), second["timestamp"])}
    copy = tmp_path / "forged.ndjson"
    copy.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    refused = run("verify", "--checkpoints", str(copy))
    assert refused.exit_code == 1
    assert (f"NOT OK against the checkpoint on line 2 of {copy} (tree size {second['tree_size']},"
            f" {second['timestamp']}, key {second['key_id']}): the signature does not verify") in said(refused)

    copy.write_text(lines[0] + "\n" + lines[1][:40])  # a write cut short
    cut = run("checkpoints", "publish", "--to", str(copy))
    assert cut.exit_code == 1 and "last line is incomplete" in said(cut)
    assert copy.read_text() == lines[0] + "\n" + lines[1][:40]
    unreadable = run("verify", "--checkpoints", str(copy))
    assert unreadable.exit_code == 2 and "line 2" in said(unreadable)

    other = tmp_path / "other.ndjson"  # a file of checkpoints another database signed
    other.write_text(json.dumps({**json.loads(lines[0]), "timestamp": "2020-01-01T00:00:00.000000Z"}) + "\n")
    foreign = run("checkpoints", "publish", "--to", str(other))
    assert foreign.exit_code == 1 and "is not one of this database's checkpoints" in said(foreign)


class _Witness(BaseHTTPRequestHandler):
    """A witness's endpoint: keeps what is posted, answering `status` (with `location` on a 3xx);
    a GET answers what it keeps, one JSON line each, or `get_status`. Every request is noted."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(("POST", self.path))  # type: ignore[attr-defined]
        if self.server.status < 300:  # type: ignore[attr-defined]
            self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self._answer(self.server.status, b"")  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append(("GET", self.path))  # type: ignore[attr-defined]
        status = self.server.get_status  # type: ignore[attr-defined]
        kept = "".join(json.dumps(document) + "\n" for document in self.server.received)  # type: ignore[attr-defined]
        self._answer(status, kept.encode() if status < 300 else b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _serving():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Witness)
    server.received, server.requests = [], []  # type: ignore[attr-defined]
    server.status, server.get_status, server.location = 201, 200, None  # type: ignore[attr-defined]
    with serving_forever(server):
        yield server


@pytest.fixture
def http_witness():
    yield from _serving()


@pytest.fixture
def elsewhere():
    """Where a redirect points: it must never hear from us."""
    yield from _serving()


def url_of(server, path: str = "/checkpoints") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_publishing_to_a_url_posts_each_checkpoint_until_accepted(api, key_file, http_witness,
                                                                 database_url):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    made = [checkpoint_now(api)]
    record_sales(api, 1, contract)
    made.append(checkpoint_now(api))
    url = url_of(http_witness)
    published = run("checkpoints", "publish", "--to", url)
    assert published.exit_code == 0 and "published 2 checkpoint(s)" in said(published), published.output
    pem = public_keys(api)["keys"][0]["pem"]
    assert http_witness.received == [{**c, "public_key_pem": pem} for c in made]

    record_sales(api, 1, contract)
    made.append(checkpoint_now(api))
    http_witness.status = 503
    refused = run("checkpoints", "publish", "--to", url)
    assert refused.exit_code == 1
    assert f"answered 503 to the checkpoint of tree size {made[2]['tree_size']}" in said(refused)
    http_witness.status = 200
    assert run("checkpoints", "publish", "--to", url).exit_code == 0
    assert http_witness.received == [{**c, "public_key_pem": pem} for c in made]  # the third once, after the 503
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM witness_publications WHERE target = %s", (url,)).fetchone()[0] == 1

    http_witness.shutdown()
    http_witness.server_close()
    record_sales(api, 1, contract)
    checkpoint_now(api)
    away = run("checkpoints", "publish", "--to", url)
    assert away.exit_code == 1 and "could not be reached" in said(away)


# --- the tamper test -------------------------------------------------------------------------


def rewrite_history(api, database_url: str, position: int, attacker_key: Path | None) -> None:
    """What an operator with the database owner's rights can do, short of the signing key: change
    one event's data; recompute every event hash after it, as the service computes them; seal
    the log and build the Merkle tree again with the service's own projections; with
    `attacker_key`, also replace every checkpoint and public key with ones of a key of their own,
    signed over the new tree at the old sizes and times."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        state = bytes(conn.execute("SELECT state FROM events WHERE position = %s", (position,)).fetchone()["state"])
        assert b"10.00" in state
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        conn.execute("UPDATE events SET state = %s WHERE position = %s", (state.replace(b"10.00", b"99.00", 1),
                                                                         position))
        streams: dict = {}
        for row in conn.execute("SELECT position, originator_id, originator_version, topic, recorded_at,"
                                " effective_on, state FROM events ORDER BY position").fetchall():
            previous = streams.get(row["originator_id"], GENESIS)
            digest = event_hash(previous, row["position"], row["originator_id"], row["originator_version"],
                                row["topic"], utc_text(row["recorded_at"]),
                                row["effective_on"].isoformat() if row["effective_on"] else "", bytes(row["state"]))
            conn.execute("UPDATE events SET hash = %s, prev_hash = %s WHERE position = %s",
                         (digest, previous, row["position"]))
            streams[row["originator_id"]] = digest
        conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
        made = conn.execute('SELECT tree_size, "timestamp", made_at FROM merkle_checkpoints ORDER BY id').fetchall()
        conn.execute("TRUNCATE event_seals, merkle_leaves, merkle_nodes")
        conn.execute("DELETE FROM projection_checkpoints WHERE name IN ('audit_seals', 'audit_merkle')")
    api.catch_up()  # the service itself seals and builds the tree over the rewritten log
    if attacker_key is None:
        return
    key = checkpoints.create_key_file(attacker_key)
    datastore = api.department.event_recorder.datastore
    with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute("ALTER TABLE merkle_checkpoints DISABLE TRIGGER USER")
        curs.execute("DELETE FROM merkle_checkpoints")
        curs.execute("ALTER TABLE merkle_checkpoints ENABLE TRIGGER USER")
        curs.execute("DELETE FROM checkpoint_keys")
        checkpoints.register(curs, key)
        for old in made:
            root = merkle.root_of(curs, old["tree_size"])
            signed = checkpoints.body(old["tree_size"], root, old["timestamp"])
            curs.execute('INSERT INTO merkle_checkpoints (tree_size, root_hash, "timestamp", key_id, signature, body,'
                         " made_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (old["tree_size"], root, old["timestamp"], key.key_id, key.sign(signed.encode()), signed,
                          old["made_at"]))


@pytest.mark.parametrize("replaces_checkpoints", [False, True], ids=["keeps-checkpoints", "forges-checkpoints"])
def test_a_log_rewritten_with_every_hash_inside_postgresql_is_caught_by_the_published_checkpoints(
        api, key_file, database_url, tmp_path, replaces_checkpoints):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 3)
    first = checkpoint_now(api)
    record_sales(api, 3, contract)
    second = checkpoint_now(api)
    record_sales(api, 1, contract)
    third = checkpoint_now(api)
    target = tmp_path / "witness"
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    before = run("verify", "--checkpoints", str(target))
    assert before.exit_code == 0, before.output

    # A sale recorded after the first checkpoint and before the second.
    log = event_hashes(database_url)
    with psycopg.connect(database_url) as conn:
        position = conn.execute(
            "SELECT min(position) FROM events WHERE position > %s AND position <= %s AND state LIKE %s",
            (log[first["tree_size"] - 1][0], log[second["tree_size"] - 1][0], b"%10.00%")).fetchone()[0]
    assert position is not None
    rewrite_history(api, database_url, position, tmp_path / "attacker.pem" if replaces_checkpoints else None)

    # Everything inside PostgreSQL agrees with itself: the ordinary verify passes, and the tree
    # stored is the tree of the rewritten hashes.
    inside = verify(api.department.event_recorder.datastore)
    assert inside.ok and inside.unsealed == 0, inside
    assert run("verify").exit_code == 0
    rewritten = [h for _, h in event_hashes(database_url)]
    assert rewritten[:first["tree_size"]] == [h for _, h in log[:first["tree_size"]]]
    assert rewritten[first["tree_size"]:] != [h for _, h in log[first["tree_size"]:]]
    if replaces_checkpoints:
        latest = api.get("/v1/audit/checkpoints/latest").json()
        assert latest["tree_size"] == third["tree_size"] and latest["key_id"] != third["key_id"]
        assert latest["root_hash"] == rfc9162.mth(rewritten[:third["tree_size"]]).hex()
        assert witness.signature_problem({**latest, "public_key_pem": public_keys(api)["keys"][0]["pem"]}) is None

    # The published checkpoints catch it, and name the first one the rewrite contradicts.
    caught = run("verify", "--checkpoints", str(target))
    assert caught.exit_code == 1
    assert (f"NOT OK against the checkpoint on line 2 of {target / 'checkpoints.ndjson'} (tree size"
            f" {second['tree_size']}, {second['timestamp']}, key {second['key_id']}): the log's first"
            f" {second['tree_size']} events, hashed again from their stored bytes, have the Merkle root"
            f" {rfc9162.mth(rewritten[:second['tree_size']]).hex()}, not the {second['root_hash']}"
            " this checkpoint signed") in said(caught)
    assert "ok: " in said(caught).split("NOT OK")[0]  # the check inside the database still passes
    # And publishing on refuses to go on from checkpoints the database no longer has.
    if replaces_checkpoints:
        go_on = run("checkpoints", "publish", "--to", str(target))
        assert go_on.exit_code == 1 and "is not one of this database's checkpoints" in said(go_on)


def test_events_removed_after_publishing_are_named(api, key_file, database_url, tmp_path):
    assert keys("create").exit_code == 0
    record_sales(api, 2)
    made = checkpoint_now(api)
    target = tmp_path / "witness"
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    last = event_hashes(database_url)[-1][0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        conn.execute("DELETE FROM events WHERE position = %s", (last,))
        conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
    caught = run("verify", "--checkpoints", str(target))
    assert caught.exit_code == 1
    assert (f"(tree size {made['tree_size']}, {made['timestamp']}, key {made['key_id']}): the log has only"
            f" {made['tree_size'] - 1} events") in said(caught)


def test_follow_keeps_publishing_until_stopped(api, key_file, database_url, tmp_path):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 1)
    first = checkpoint_now(api)
    target = tmp_path / "witness"
    follower = subprocess.Popen(
        [str(BIN / "channel-domain"), "checkpoints", "publish", "--to", str(target), "--follow", "--interval", "0.2"],
        env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_lines(target / "checkpoints.ndjson", 1)
        record_sales(api, 1, contract)
        second = checkpoint_now(api)
        published = wait_for_lines(target / "checkpoints.ndjson", 2)
        assert [(c["tree_size"], c["signature"]) for c in published] == \
            [(c["tree_size"], c["signature"]) for c in (first, second)]
    finally:
        follower.send_signal(signal.SIGTERM)
        output, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0, output
    assert output.count("published 1 checkpoint(s)") == 2, output


def wait_for_lines(path: Path, count: int, within_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if path.exists() and len(found := lines_of(path)) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} lines in {path} after {within_s} s")


def export_script(tmp_path: Path) -> Path:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    script = re.search(r"<!-- verify_export\.py.*?-->\n```python\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "verify_export.py").write_text(script)
    return tmp_path / "verify_export.py"


def check_export(api, script: Path, published: Path) -> subprocess.CompletedProcess:
    export = api.client.get("/v1/audit/export", headers=api.headers(AUDITOR[0], *AUDITOR[1]))
    assert export.status_code == 200
    (script.parent / "log.ndjson").write_text(export.text)
    return subprocess.run([sys.executable, "-I", str(script), str(script.parent / "log.ndjson"), str(published)],
                          capture_output=True, text=True, timeout=60)


def test_the_offline_export_check_of_docs_audit_md_catches_the_rewrite_too(api, key_file, database_url, tmp_path):
    """An auditor with an export and the published file, and no access to the service: the
    standard-library script computes the roots from the export's own hashes."""
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    first = checkpoint_now(api)
    record_sales(api, 2, contract)
    checkpoint_now(api)
    target = tmp_path / "witness"
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    script = export_script(tmp_path)
    published = target / "checkpoints.ndjson"
    checked = check_export(api, script, published)
    assert checked.returncode == 0 and checked.stdout.endswith("; the log matches the 2 published checkpoints\n"), \
        checked.stdout + checked.stderr
    log = event_hashes(database_url)
    with psycopg.connect(database_url) as conn:
        position = conn.execute("SELECT min(position) FROM events WHERE position > %s AND state LIKE %s",
                                (log[first["tree_size"] - 1][0], b"%10.00%")).fetchone()[0]
    rewrite_history(api, database_url, position, None)
    caught = check_export(api, script, published)
    assert caught.returncode == 1
    assert caught.stdout.startswith("NOT OK at position ") and (
        f"do not have the Merkle root the checkpoint on line 2 of {published} signed") in caught.stdout, caught.stdout


# --- a redirect is no publication ----------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_a_failure_and_never_followed(api, key_file, http_witness, elsewhere, database_url, code):
    assert keys("create").exit_code == 0
    record_sales(api, 2)
    made = checkpoint_now(api)
    url, moved = url_of(http_witness), url_of(elsewhere, "/moved")
    http_witness.status, http_witness.location = code, moved
    redirected = run("checkpoints", "publish", "--to", url)
    assert redirected.exit_code == 1, redirected.output
    assert (f"{url} answered {code} to the checkpoint of tree size {made['tree_size']} ({made['timestamp']}),"
            f" redirecting to {moved}: not published, and not sent there") in said(redirected)
    assert elsewhere.requests == [] and http_witness.received == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM witness_publications").fetchone()[0] == 0
    if code == 302:  # a witness that redirects is not away: --follow stops too instead of retrying
        follower = subprocess.run(
            [str(BIN / "channel-domain"), "checkpoints", "publish", "--to", url, "--follow", "--interval", "0.1"],
            env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url}, capture_output=True, text=True,
            timeout=60)
        assert follower.returncode == 1, follower.stdout + follower.stderr
        assert f"redirecting to {moved}" in " ".join(follower.stderr.split())
        assert elsewhere.requests == []
    http_witness.status = 201
    assert run("checkpoints", "publish", "--to", url).exit_code == 0
    assert http_witness.received == [{**made, "public_key_pem": public_keys(api)["keys"][0]["pem"]}]


def test_verify_reads_what_a_witness_url_holds_and_refuses_a_redirect(api, key_file, http_witness, elsewhere):
    assert keys("create").exit_code == 0
    contract = record_sales(api, 2)
    checkpoint_now(api)
    record_sales(api, 1, contract)
    checkpoint_now(api)
    url = url_of(http_witness)
    assert run("checkpoints", "publish", "--to", url).exit_code == 0
    checked = run("verify", "--checkpoints", url)
    assert checked.exit_code == 0, checked.output
    assert f"ok: the log matches all 2 published checkpoints in {url}" in said(checked)
    assert ("GET", "/checkpoints") in http_witness.requests

    moved = url_of(elsewhere, "/moved")
    http_witness.get_status, http_witness.location = 302, moved
    redirected = run("verify", "--checkpoints", url)
    assert redirected.exit_code == 2
    assert f"{url} answered 302, redirecting to {moved}: not followed" in said(redirected)
    assert elsewhere.requests == []
    http_witness.get_status = 404
    missing = run("verify", "--checkpoints", url)
    assert missing.exit_code == 2 and f"cannot read published checkpoints at {url}: it answered 404" in said(missing)


# --- which keys are trusted ----------------------------------------------------------------


def signed_with_own_key(published: dict, claimed_key_id: str | None = None) -> dict:
    """What anyone who can append to the witness can write: the same tree, root and time, signed
    with a fresh key of their own and carrying that key (and, with `claimed_key_id`, another id)."""
    private = Ed25519PrivateKey.generate()
    raw = checkpoints.raw_public_key(private.public_key())
    body = checkpoints.body(published["tree_size"], bytes.fromhex(published["root_hash"]), published["timestamp"])
    return {**published, "body": body, "key_id": claimed_key_id or checkpoints.key_id_of(raw),
            "signature": base64.b64encode(private.sign(body.encode())).decode(),
            "public_key_pem": checkpoints.public_pem(raw)}


def test_a_line_signed_with_a_key_of_ones_own_is_accepted_with_notice_unpinned_and_refused_pinned(
        api, key_file, tmp_path, monkeypatch):
    monkeypatch.delenv(witness.TRUSTED_KEYS_VARIABLE, raising=False)
    assert keys("create").exit_code == 0
    record_sales(api, 2)
    honest = checkpoint_now(api)
    target = tmp_path / "witness"
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    path = target / "checkpoints.ndjson"
    [line] = lines_of(path)
    forged = signed_with_own_key(line)
    with path.open("a") as appended:
        appended.write(json.dumps(forged) + "\n")
    ours, theirs = honest["key_id"], forged["key_id"]

    unpinned = run("verify", "--checkpoints", str(target))
    assert unpinned.exit_code == 0, unpinned.output
    assert f"ok: the log matches all 2 published checkpoints in {target}" in said(unpinned)
    assert f"signed by key {ours} (1 checkpoint), {theirs} (1)" in said(unpinned)
    assert (f"then pin them with --trust-key {ours} --trust-key {theirs}"
            f" (or {witness.TRUSTED_KEYS_VARIABLE}={ours},{theirs})") in said(unpinned)

    refused = (f"NOT OK against the checkpoint on line 2 of {path} (tree size {honest['tree_size']},"
               f" {honest['timestamp']}, key {theirs}): it is signed by key {theirs}, which is not one of the"
               f" trusted keys ({ours})")
    pinned = run("verify", "--checkpoints", str(target), "--trust-key", ours)
    assert pinned.exit_code == 1 and refused in said(pinned), pinned.output
    assert f"signed by key {ours} (" not in said(pinned)  # no summary of keys when one is refused
    monkeypatch.setenv(witness.TRUSTED_KEYS_VARIABLE, ours)
    from_environment = run("verify", "--checkpoints", str(target))
    assert from_environment.exit_code == 1 and refused in said(from_environment), from_environment.output

    # A line that names the trusted key's id over a key of its own: the id is checked against its key.
    path.write_text(json.dumps(line) + "\n" + json.dumps(signed_with_own_key(line, claimed_key_id=ours)) + "\n")
    lying = run("verify", "--checkpoints", str(target), "--trust-key", ours)
    assert lying.exit_code == 1
    assert (f"NOT OK against the checkpoint on line 2 of {path} (tree size {honest['tree_size']},"
            f" {honest['timestamp']}, key {ours}): key_id is not the id of public_key_pem") in said(lying)


def test_rotated_keys_both_pinned_pass_and_pins_are_checked_before_anything_is_read(
        api, key_file, tmp_path, monkeypatch):
    monkeypatch.delenv(witness.TRUSTED_KEYS_VARIABLE, raising=False)
    assert keys("create").exit_code == 0
    contract = record_sales(api, 1)
    first = checkpoint_now(api)
    assert keys("rotate").exit_code == 0
    record_sales(api, 1, contract)
    checkpoint_now(api)
    record_sales(api, 1, contract)
    second = checkpoint_now(api)
    target = tmp_path / "witness"
    assert run("checkpoints", "publish", "--to", str(target)).exit_code == 0
    old, new = first["key_id"], second["key_id"]
    assert old != new

    both = run("verify", "--checkpoints", str(target), "--trust-key", old, "--trust-key", new.upper())
    assert both.exit_code == 0, both.output
    assert f"signed by key {old} (1 checkpoint), {new} (2)" in said(both)
    assert f"every one of them trusted: {', '.join(sorted((old, new)))}" in said(both)
    assert "no key is pinned" not in said(both)
    only_old = run("verify", "--checkpoints", str(target), "--trust-key", old)
    assert only_old.exit_code == 1
    assert f"on line 2 of {target / 'checkpoints.ndjson'} (tree size" in said(only_old)
    assert f"key {new}): it is signed by key {new}, which is not one of the trusted keys ({old})" in said(only_old)

    monkeypatch.setenv(witness.TRUSTED_KEYS_VARIABLE, f" {old}, {new},")
    assert run("verify", "--checkpoints", str(target)).exit_code == 0
    monkeypatch.setenv(witness.TRUSTED_KEYS_VARIABLE, old)  # given on the command line, the pins replace it
    assert run("verify", "--checkpoints", str(target), "--trust-key", old, "--trust-key", new).exit_code == 0

    malformed = run("verify", "--checkpoints", str(target), "--trust-key", old[:-1])
    assert malformed.exit_code == 2 and f"--trust-key: '{old[:-1]}' is not a key id" in said(malformed)
    monkeypatch.setenv(witness.TRUSTED_KEYS_VARIABLE, "sha256:abc")
    from_environment = run("verify", "--checkpoints", str(target))
    assert from_environment.exit_code == 2
    assert f"{witness.TRUSTED_KEYS_VARIABLE}: 'sha256:abc' is not a key id" in said(from_environment)
    assert run("verify").exit_code == 0  # the variable is only read to check published checkpoints
    alone = run("verify", "--trust-key", old)
    assert alone.exit_code == 2 and "give --checkpoints too" in said(alone)


# --- where a path leads --------------------------------------------------------------------


def test_a_witness_path_is_a_directory_or_a_file_by_what_is_on_disk(tmp_path):
    (tmp_path / "witness.d").mkdir()
    assert witness.file_of(tmp_path / "witness.d") == tmp_path / "witness.d" / witness.FILE_NAME
    assert witness.file_of(str(tmp_path / "new.d")) == tmp_path / "new.d" / witness.FILE_NAME
    assert witness.file_of(tmp_path / "archive") == tmp_path / "archive" / witness.FILE_NAME
    for name in ("kept.jsonl", "kept.json", "kept.ndjson", "KEPT.JSONL"):
        assert witness.file_of(tmp_path / name) == tmp_path / name
    (tmp_path / "archive.v2").write_text("")  # an existing file, whatever its name
    assert witness.file_of(tmp_path / "archive.v2") == tmp_path / "archive.v2"
    (tmp_path / "odd.jsonl").mkdir()  # an existing directory, whatever its name
    assert witness.file_of(tmp_path / "odd.jsonl") == tmp_path / "odd.jsonl" / witness.FILE_NAME


def test_publishing_to_a_new_directory_with_a_dot_in_its_name(api, key_file, tmp_path):
    assert keys("create").exit_code == 0
    record_sales(api, 1)
    checkpoint_now(api)
    target = tmp_path / "srv" / "witness.d"
    published = run("checkpoints", "publish", "--to", str(target))
    assert published.exit_code == 0, published.output
    assert target.is_dir() and len(lines_of(target / witness.FILE_NAME)) == 1
    checked = run("verify", "--checkpoints", str(target))
    assert checked.exit_code == 0 and f"published checkpoints in {target}" in said(checked), checked.output
