"""api.md's conventions over HTTP: auth, errors, idempotency, If-Match, limits, correlation."""

from __future__ import annotations

import time

import psycopg

from api.tokens import list_tokens, revoke_token
from tests.api.test_token_cache import refused_after
from tests.api.flows import ERP, GM, MANAGER, SPECIALIST, approved_partner, post, problem, signed_contract


def test_no_token_is_401_and_an_unknown_token_too(api):
    problem(api.client.post("/v1/partners", json={"kind": "retailer", "name": "X"}), 401, "unauthenticated")
    response = api.client.post("/v1/partners", json={"kind": "retailer", "name": "X"},
                               headers={"Authorization": "Bearer cd_nonsense"})
    problem(response, 401, "invalid_token")


def test_a_revoked_token_is_refused_as_soon_as_the_revocation_is_heard(api):
    headers = api.headers("spec-9", "channel_specialist")
    assert api.client.post("/v1/partners", json={"kind": "retailer", "name": "X"}, headers=headers).status_code == 201
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        token_id = next(t.token_id for t in list_tokens(conn) if t.actor == "spec-9")
        assert revoke_token(conn, token_id)
    refused_after(api, headers)  # about a millisecond: the notification's travel (api/token_cache.py)
    problem(api.client.post("/v1/partners", json={"kind": "retailer", "name": "Y"}, headers=headers), 401, "invalid_token")


def test_a_role_not_in_the_table_is_403(api):
    problem(post(api, "/v1/partners", {"kind": "retailer", "name": "X"}, ERP, None), 403, "forbidden")
    problem(post(api, "/v1/employees", {"name": "X", "role": "sales_rep", "hired_on": "2026-01-05"},
                 MANAGER, None), 403, "forbidden")


def test_token_actor_and_correlation_become_event_metadata(api):
    response = post(api, "/v1/partners", {"kind": "retailer", "name": "X"}, SPECIALIST, 201,
                    **{"X-Correlation-Id": "erp-batch-77"})
    assert response.headers["x-correlation-id"] == "erp-batch-77"
    (applied,) = api.get(f"/v1/partners/{response.json()['id']}/history").json()["items"]
    assert (applied["actor"], applied["roles"], applied["correlation_id"]) == ("spec-1", ["channel_specialist"], "erp-batch-77")


def test_a_correlation_id_is_generated_when_absent(api):
    response = post(api, "/v1/partners", {"kind": "retailer", "name": "X"}, SPECIALIST, 201)
    generated = response.headers["x-correlation-id"]
    (applied,) = api.get(f"/v1/partners/{response.json()['id']}/history").json()["items"]
    assert applied["correlation_id"] == generated


def test_creation_answers_201_with_location_etag_version_and_position(api):
    response = post(api, "/v1/partners", {"kind": "retailer", "name": "X"}, SPECIALIST, 201)
    body = response.json()
    assert response.headers["location"] == f"/v1/partners/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert (body["version"], body["status"], body["kind"]) == (1, "applied", "retailer")
    assert body["position"] >= 1


def test_idempotent_repeat_replays_the_first_answer(api):
    contract = signed_contract(api, approved_partner(api))
    sale = {"order_id": "SO-1", "amount": "100.00", "sold_on": "2026-02-01"}
    first = post(api, f"/v1/contracts/{contract}/sales", sale, ERP, 200, **{"Idempotency-Key": "day-1-line-1"})
    again = post(api, f"/v1/contracts/{contract}/sales", sale, ERP, 200, **{"Idempotency-Key": "day-1-line-1"})
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json() == first.json()
    assert api.get(f"/v1/contracts/{contract}").json()["version"] == first.json()["version"]
    different = post(api, f"/v1/contracts/{contract}/sales", {**sale, "amount": "101.00"}, ERP, None,
                     **{"Idempotency-Key": "day-1-line-1"})
    problem(different, 422, "idempotency_key_reused")


def test_if_match_names_the_expected_version(api):
    partner = approved_partner(api, "retailer")
    stale = post(api, f"/v1/partners/{partner}/terminate", {"reason": "closing", "on": "2026-12-31"}, MANAGER,
                 None, **{"If-Match": '"1"'})
    problem(stale, 412, "version_mismatch")
    fresh = post(api, f"/v1/partners/{partner}/terminate", {"reason": "closing", "on": "2026-12-31"}, MANAGER,
                 200, **{"If-Match": '"2"'})
    assert fresh.headers["etag"] == '"3"'
    problem(post(api, f"/v1/partners/{partner}/suspend", {"reason": "x"}, MANAGER, None,
                 **{"If-Match": "yesterday"}), 400, "invalid_if_match")


def test_malformed_json_is_400_and_wrong_fields_422_naming_the_field(api):
    response = api.client.post("/v1/partners", content=b'{"kind": "retailer",', headers={
        **api.headers(*SPECIALIST[:1], *SPECIALIST[1]), "Content-Type": "application/json"})
    problem(response, 400, "malformed_json")
    body = problem(post(api, "/v1/partners", {"kind": "retailer"}, SPECIALIST, None), 422, "validation_error")
    assert body["errors"][0]["field"] == "name"
    body = problem(post(api, "/v1/partners", {"kind": "retailer", "name": "X", "colour": "red"}, SPECIALIST, None),
                   422, "validation_error")
    assert body["errors"][0]["field"] == "colour"


def test_money_as_a_json_number_is_refused_never_rounded(api):
    contract = signed_contract(api, approved_partner(api))
    for amount in (100.5, 100, "100.005", "-5.00"):
        response = post(api, f"/v1/contracts/{contract}/sales",
                        {"order_id": "SO-1", "amount": amount, "sold_on": "2026-02-01"}, ERP, None)
        assert problem(response, 422, "validation_error")["errors"][0]["field"] == "amount"
    assert api.get(f"/v1/contracts/{contract}").json()["orders"] == 0


def test_a_body_over_one_mebibyte_is_413_and_nothing_is_written(api):
    huge = {"kind": "retailer", "name": "X" * (1024 * 1024 + 10)}
    problem(post(api, "/v1/partners", huge, SPECIALIST, None), 413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_413_too(api):
    def chunks():
        yield b'{"kind": "retailer", "name": "'
        for _ in range(300):
            yield b"x" * 4096
        yield b'"}'

    response = api.client.post("/v1/partners", content=chunks(), headers={
        **api.headers("spec-1", "channel_specialist"), "Content-Type": "application/json"})
    problem(response, 413, "payload_too_large")


def test_unknown_record_is_404(api):
    problem(api.get("/v1/contracts/00000000-0000-0000-0000-000000000001"), 404, "not_found")
    problem(post(api, "/v1/contracts/00000000-0000-0000-0000-000000000001/submit", None, MANAGER, None), 404, "not_found")


def test_segregation_of_duties_is_403_with_its_code(api):
    partner = post(api, "/v1/partners", {"kind": "retailer", "name": "X"},
                   ("boss", ("channel_specialist", "channel_manager")), 201).json()["id"]
    refused = post(api, f"/v1/partners/{partner}/review", {"decision": "approve"},
                   ("boss", ("channel_specialist", "channel_manager")), None)
    problem(refused, 403, "segregation_of_duties")


def test_openapi_documents_every_endpoint_with_examples(api):
    spec = api.client.get("/openapi.json").json()
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) >= 50
    for path, method, operation in operations:
        if method == "post" and path != "/health":
            assert "422" in operation["responses"] or path == "/v1/sales/import", path
    assert api.client.get("/docs").status_code == 200
    schemas = spec["components"]["schemas"]
    assert schemas["Sale"]["examples"] and schemas["Draft"]["examples"]


def test_approver_roles_follow_the_table(api):
    partner = approved_partner(api, "retailer")
    contract = post(api, "/v1/contracts", {"partner_id": partner, "starts_on": "2026-01-01", "ends_on": "2026-12-31",
                                            "commission": {"type": "flat", "rate": "0.03"}}, MANAGER, 201).json()["id"]
    problem(post(api, f"/v1/contracts/{contract}/submit", None, GM, None), 403, "forbidden")


def test_an_unreachable_database_answers_503_with_retry_after():
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")) as client:
        first = client.get("/v1/partners/00000000-0000-0000-0000-000000000001", headers={"Authorization": "Bearer cd_x"})
        started = time.monotonic()
        then = client.get("/v1/partners/00000000-0000-0000-0000-000000000001", headers={"Authorization": "Bearer cd_x"})
        waited = time.monotonic() - started
    for response in (first, then):
        problem(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "1"
    assert waited < 0.5  # the first found the database away: the next is refused at once


def test_absurd_versions_and_cursors_are_refused_not_crashed(api):
    partner = approved_partner(api, "retailer")
    problem(api.get(f"/v1/partners/{partner}", version=10**30), 422, "validation_error")
    # A cursor no answer ever gave is refused, not read as "from the start" (api/cursors.py).
    problem(api.get(f"/v1/partners/{partner}/history", cursor="9" * 40), 422, "validation_error")


def test_a_repeat_while_the_first_is_still_running_is_409(api):
    contract = signed_contract(api, approved_partner(api))
    department = api.client.app.state.department
    sale = {"order_id": "SO-1", "amount": "100.00", "sold_on": "2026-02-01"}
    with department.event_recorder.key_in_flight("erp", "slow-key"):
        response = post(api, f"/v1/contracts/{contract}/sales", sale, ERP, None, **{"Idempotency-Key": "slow-key"})
    problem(response, 409, "idempotency_key_in_flight")
    post(api, f"/v1/contracts/{contract}/sales", sale, ERP, 200, **{"Idempotency-Key": "slow-key"})
