"""The auditor's guarantees over HTTP: verify, export (checked offline by the script in
docs/audit.md), the causation graph, hashes in the audit trail, and erasure that keeps the
proof."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.api.flows import AUDITOR, ERP, HR, REPORTING, approved_partner, post, problem, signed_contract
from tests.api.test_employees import separated_long_ago
from tests.api.test_read_side import catch_up

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
PERSONAL = ("Wang Fang", "330101199001011234", "6222000011112222")


def offline_check(tmp_path: Path, export: str) -> subprocess.CompletedProcess:
    """Runs the standalone script of docs/audit.md, as an auditor would, on `export`."""
    script = re.search(r"<!-- verify_export\.py.*?-->\n```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    (tmp_path / "verify_export.py").write_text(script)
    (tmp_path / "log.ndjson").write_text(export)
    return subprocess.run([sys.executable, "-I", str(tmp_path / "verify_export.py"), str(tmp_path / "log.ndjson")],
                          capture_output=True, text=True, timeout=60)


def some_history(api) -> str:
    contract = signed_contract(api, approved_partner(api, "retailer"))
    for n in range(3):
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": f"S{n}", "amount": "10.00",
                                                        "sold_on": "2026-03-01"}, ERP)
    catch_up(api)
    return contract


def test_verify_answers_ok_with_the_head_hash_for_auditors_only(api):
    some_history(api)
    body = api.get("/v1/audit/verify").json()
    assert body["ok"] is True and body["first_bad_position"] is None
    assert body["verified_through"] == body["events"] == api.department.event_recorder.max_notification_id()
    assert len(body["head_hash"]) == 64
    problem(api.get("/v1/audit/verify", actor=REPORTING[0], roles=REPORTING[1]), 403, "forbidden")


def test_the_export_verifies_offline_with_the_documented_script_and_tampering_shows(api, tmp_path):
    some_history(api)
    response = api.get("/v1/audit/export")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    head = api.get("/v1/audit/verify").json()["head_hash"]
    assert json.loads(lines[-1]) == {"checkpoint": {"through_position": events[-1]["position"], "head_hash": head}}

    checked = offline_check(tmp_path, response.text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert head in checked.stdout

    altered = events[5]
    state = base64.b64decode(altered["state"]).replace(b'"actor"', b'"Actor"', 1)
    tampered = lines[:5] + [json.dumps({**altered, "state": base64.b64encode(state).decode()})] + lines[6:]
    caught = offline_check(tmp_path, "\n".join(tampered) + "\n")
    assert caught.returncode == 1 and f"position {altered['position']}" in caught.stdout

    dropped = offline_check(tmp_path, "\n".join(lines[:7] + lines[8:]) + "\n")
    assert dropped.returncode == 1 and f"position {events[8]['position']}" in dropped.stdout
    assert offline_check(tmp_path, "\n".join(lines[:-1]) + "\n").returncode == 1  # checkpoint cut off


def test_audit_events_carry_their_hashes(api):
    contract = some_history(api)
    items = api.get("/v1/audit/events", stream_id=contract).json()["items"]
    assert items[0]["prev_hash"] == "0" * 64
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(items, items[1:], strict=False))


def test_the_causation_graph_follows_one_request_across_records(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner)  # signing the first contract also activates the partner
    history = api.get(f"/v1/contracts/{contract}/history").json()["items"]
    signed = next(item for item in history if item["type"] == "Contract.Signed")
    catch_up(api)
    graph = api.get(f"/v1/audit/causation/{signed['correlation_id']}").json()
    assert [(e["type"], e["stream_id"]) for e in graph["events"]] == [
        ("Contract.Signed", contract), ("Partner.Activated", partner)]
    assert graph["events"][1]["caused_by"] == [signed["position"]]
    assert graph["events"][0]["caused_by"] == []
    problem(api.get("/v1/audit/causation/no-such-request"), 404, "not_found")


def test_after_erasure_personal_fields_are_nowhere_and_the_log_still_verifies(api):
    employee = separated_long_ago(api)["id"]
    catch_up(api)
    before = api.get("/v1/audit/verify").json()
    assert any(value in api.get(f"/v1/employees/{employee}", actor=HR[0], roles=HR[1]).text for value in PERSONAL)

    post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR)
    catch_up(api)
    readers = [HR, AUDITOR]
    seen = [api.get(f"/v1/employees/{employee}", actor=who[0], roles=who[1]).text for who in readers]
    seen += [api.get(f"/v1/employees/{employee}/history", actor=who[0], roles=who[1]).text for who in readers]
    seen += [api.get(f"/v1/employees/{employee}", actor=HR[0], roles=HR[1], version=1).text]
    seen += [api.get("/v1/audit/events", stream_id=employee).text]
    export = api.get("/v1/audit/export").text
    decoded = [base64.b64decode(json.loads(line)["state"]) for line in export.splitlines()[:-1]]
    seen += [export, *(state.decode() for state in decoded)]
    assert not [value for value in PERSONAL for text in seen if value in text]

    record = api.get(f"/v1/employees/{employee}", actor=HR[0], roles=HR[1]).json()
    assert (record["role"], record["hired_on"], record["personal_data_erased"]) == ("sales_rep", "2020-01-06", True)
    after = api.get("/v1/audit/verify").json()
    assert after["ok"] is True and after["events"] == before["events"] + 1
    with psycopg.connect(api.database_url) as conn:  # the ciphertext stays, and stays hashed
        (state,) = conn.execute("SELECT state FROM events WHERE originator_id = %s AND originator_version = 1",
                                (employee,)).fetchone()
    assert b"pii:v1:" in bytes(state)
