"""/v1/contracts over HTTP: lifecycle, amendments, termination, renewal, sales and returns."""

from __future__ import annotations

from tests.api.flows import (
    CONTENTS,
    ERP,
    GM,
    MANAGER,
    MANAGER_2,
    amend,
    approved_partner,
    post,
    problem,
    renew,
    signed_contract,
)


def test_draft_submit_approve_sign(api):
    partner = approved_partner(api, "enterprise_agent")
    body = {"partner_id": partner, "starts_on": "2026-01-01", "ends_on": "2026-12-31", "territory": "Zhejiang",
            "commission": {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]},
            **CONTENTS}
    drafted = post(api, "/v1/contracts", body, MANAGER, 201).json()
    assert drafted["commission"]["tiers"][0] == {"up_to": "100000.00", "rate": "0.03"}
    contract = drafted["id"]
    post(api, f"/v1/contracts/{contract}/submit", None, MANAGER)
    problem(post(api, f"/v1/contracts/{contract}/approve", None, MANAGER, None), 403, "segregation_of_duties")
    assert post(api, f"/v1/contracts/{contract}/approve", None, MANAGER_2).json()["approved_by"] == "mgr-2"
    signed = post(api, f"/v1/contracts/{contract}/sign", {"signed_on": "2025-12-20"}).json()
    assert signed["status"] == "signed"
    assert api.get(f"/v1/partners/{partner}").json()["status"] == "active"


def test_drafting_refusals(api):
    agent = approved_partner(api, "enterprise_agent")
    problem(post(api, "/v1/contracts", {"partner_id": agent, "starts_on": "2026-01-01", "ends_on": "2026-12-31",
                                        "commission": {"type": "flat", "rate": "0.03"}}, MANAGER, None),
            422, "validation_error")
    problem(post(api, "/v1/contracts", {"partner_id": agent, "starts_on": "2026-01-01", "ends_on": "2026-12-31",
                                        "commission": {"type": "flat", "rate": 0.03}, "territory": "Z"}, MANAGER, None),
            422, "validation_error")
    problem(post(api, "/v1/contracts", {"partner_id": "00000000-0000-0000-0000-000000000009", "starts_on": "2026-01-01",
                                        "ends_on": "2026-12-31", "commission": {"type": "flat", "rate": "0.03"}},
                 MANAGER, None), 422, "unknown_partner")
    incomplete = post(api, "/v1/contracts", {"partner_id": agent, "starts_on": "2026-01-01", "ends_on": "2026-12-31",
                                             "commission": {"type": "flat", "rate": "0.03"}, "territory": "Z"},
                      MANAGER, 201).json()["id"]
    problem(post(api, f"/v1/contracts/{incomplete}/submit", None, MANAGER, None), 422, "incomplete_contract")


def test_sales_and_returns(api):
    contract = signed_contract(api, approved_partner(api, "enterprise_agent"), territory="Zhejiang")
    sale = {"order_id": "SO-1", "amount": "60000.00", "sold_on": "2026-03-02", "region": "Zhejiang"}
    sold = post(api, f"/v1/contracts/{contract}/sales", sale, ERP).json()
    assert (sold["orders"], sold["gross_sales"]) == (1, "60000.00")
    problem(post(api, f"/v1/contracts/{contract}/sales", sale, ERP, None), 422, "duplicate_order")
    problem(post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "SO-2", "region": "Jiangsu"}, ERP, None),
            422, "outside_territory")
    problem(post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "SO-3", "sold_on": "2027-01-01"}, ERP,
                 None), 422, "contract_not_in_force")
    returned = post(api, f"/v1/contracts/{contract}/returns",
                    {"order_id": "SO-1", "amount": "1000.00", "returned_on": "2026-03-05"}, ERP).json()
    assert returned["returns"] == "1000.00"
    problem(post(api, f"/v1/contracts/{contract}/returns",
                 {"order_id": "SO-1", "amount": "59000.01", "returned_on": "2026-03-06"}, ERP, None),
            422, "return_exceeds_order")


def test_amend_terminate_renew(api):
    contract = signed_contract(api, approved_partner(api))
    amended = amend(api, contract, {"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.025"},
                                    "reason": "retroactive correction"})
    assert amended["amendments"] == [{"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.025"}}]
    renewed = renew(api, contract, "2027-06-30").json()
    assert (renewed["ends_on"], renewed["renewals"]) == ("2027-06-30", 1)
    ended = post(api, f"/v1/contracts/{contract}/terminate", {"effective_on": "2026-10-01", "reason": "merger"}).json()
    assert (ended["status"], ended["last_day_in_force"]) == ("terminated", "2026-09-30")
    problem(post(api, f"/v1/contracts/{contract}/renew", {"ends_on": "2027-12-31"}, MANAGER, None), 422,
            "invalid_transition")


def test_second_sales_agent_is_refused(api):
    signed_contract(api, approved_partner(api))
    second = approved_partner(api)
    contract = post(api, "/v1/contracts", {"partner_id": second, "starts_on": "2026-06-01", "ends_on": "2026-12-31",
                                           "commission": {"type": "flat", "rate": "0.02"}, **CONTENTS}, MANAGER,
                    201).json()["id"]
    post(api, f"/v1/contracts/{contract}/submit", None, MANAGER)
    post(api, f"/v1/contracts/{contract}/approve", None, GM)
    problem(post(api, f"/v1/contracts/{contract}/sign", {"signed_on": "2026-05-20"}, MANAGER, None), 422,
            "exclusive_sales_agent_exists")


def test_time_travel_on_a_contract(api):
    contract = signed_contract(api, approved_partner(api))
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "SO-1", "amount": "10.00", "sold_on": "2026-03-02"}, ERP)
    signed_version = api.get(f"/v1/contracts/{contract}").json()["version"] - 1
    past = api.get(f"/v1/contracts/{contract}", version=signed_version)
    assert (past.json()["orders"], past.headers["etag"]) == (0, f'"{signed_version}"')
