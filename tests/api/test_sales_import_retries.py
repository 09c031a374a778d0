"""POST /v1/sales/import retried: an Idempotency-Key replays the first answer and writes
nothing; return ids stop a return from being booked twice; the rejections listed are capped."""

from __future__ import annotations

from tests.api.flows import ERP, HR, MANAGER, approved_partner, post, problem, signed_contract
from tests.api.test_sales_import import ndjson


def send(api, body, key=None, who=ERP):
    headers = {**api.headers(who[0], *who[1]), "Content-Type": "application/x-ndjson"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return api.client.post("/v1/sales/import", content=body, headers=headers)


def _day(api, contract):
    sale = {"kind": "sale", "contract_id": contract, "amount": "100.00", "sold_on": "2026-03-02"}
    return ndjson(
        {**sale, "order_id": "SO-1"},
        {**sale, "order_id": "SO-2"},
        {"kind": "return", "contract_id": contract, "order_id": "SO-1", "amount": "30.00",
         "returned_on": "2026-03-04", "return_id": "RMA-1"},
        {**sale, "order_id": "SO-3", "product": "switch"},
    )


def test_a_retried_import_replays_its_first_answer_and_writes_nothing(api):
    contract = signed_contract(api, approved_partner(api))
    body = _day(api, contract)
    first = send(api, body, key="erp-2026-03-02")
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    assert first.json() == {"accepted": 3, "rejected_total": 1, "rejected": [
        {"line": 4, "code": "product_not_in_contract", "detail": first.json()["rejected"][0]["detail"]}]}
    version = api.get(f"/v1/contracts/{contract}").json()["version"]

    again = send(api, body, key="erp-2026-03-02")
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    state = api.get(f"/v1/contracts/{contract}").json()
    assert (state["version"], state["returns"]) == (version, "30.00")

    other = send(api, body + ndjson({"kind": "sale", "contract_id": contract, "order_id": "SO-9",
                                     "amount": "1.00", "sold_on": "2026-03-02"}), key="erp-2026-03-02")
    problem(other, 422, "idempotency_key_reused")
    assert api.get(f"/v1/contracts/{contract}").json()["version"] == version


def test_without_a_key_a_retry_books_no_return_twice_when_returns_carry_ids(api):
    contract = signed_contract(api, approved_partner(api))
    body = _day(api, contract)
    send(api, body)
    retry = send(api, body).json()
    assert retry["accepted"] == 0
    assert [r["code"] for r in retry["rejected"]] == [
        "duplicate_order", "duplicate_order", "duplicate_return", "product_not_in_contract"]
    assert api.get(f"/v1/contracts/{contract}").json()["returns"] == "30.00"


def test_an_import_whose_key_is_still_running_is_409(api):
    contract = signed_contract(api, approved_partner(api))
    department = api.client.app.state.department
    with department.keyed_import("erp", "slow-import"):
        problem(send(api, _day(api, contract), key="slow-import"), 409, "idempotency_key_in_flight")
    assert api.get(f"/v1/contracts/{contract}").json()["orders"] == 0
    assert send(api, _day(api, contract), key="slow-import").json()["accepted"] == 3


def test_at_most_1000_rejections_are_listed_and_all_are_counted(api):
    contract = signed_contract(api, approved_partner(api))
    lines = [b"{not json"] * 1500 + [ndjson({"kind": "sale", "contract_id": contract, "order_id": "SO-1",
                                             "amount": "1.00", "sold_on": "2026-03-02", "product": "switch"})[:-1]]
    result = send(api, ndjson(*lines)).json()
    assert (result["accepted"], result["rejected_total"], len(result["rejected"])) == (0, 1501, 1000)
    assert [r["line"] for r in result["rejected"]] == list(range(1, 1001))


def test_import_lines_are_checked_against_the_partner_the_product_and_the_employee(api):
    agent = approved_partner(api)
    contract = signed_contract(api, agent)
    rep = post(api, "/v1/employees", {"name": "Xu", "role": "sales_rep", "hired_on": "2026-03-01"}, HR, 201).json()
    post(api, f"/v1/partners/{agent}/suspend", {"reason": "late reports", "on": "2026-04-10"}, MANAGER)
    sale = {"kind": "sale", "contract_id": contract, "amount": "100.00", "sold_on": "2026-03-02"}
    result = send(api, ndjson(
        {**sale, "order_id": "SO-1", "employee_id": rep["id"]},
        {**sale, "order_id": "SO-2", "sold_on": "2026-04-10"},
        {**sale, "order_id": "SO-3", "employee_id": rep["id"], "sold_on": "2026-02-27"},
        {**sale, "order_id": "SO-4", "product": "switch"},
        {"kind": "return", "contract_id": contract, "order_id": "SO-1", "amount": "1.00", "returned_on": "2026-04-12"},
    )).json()
    assert result["accepted"] == 2
    assert [(r["line"], r["code"]) for r in result["rejected"]] == [
        (2, "partner_not_active"), (3, "unknown_employee"), (4, "product_not_in_contract")]
