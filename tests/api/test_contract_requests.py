"""Amendments and renewals over HTTP: requested, previewed, approved by someone else; one
enterprise agent per region a day."""

from __future__ import annotations

from datetime import UTC, datetime

from channel_domain.company_time import recorded_month
from tests.api.flows import (
    AUDITOR,
    CONTENTS,
    ERP,
    FINANCE,
    GM,
    MANAGER,
    MANAGER_2,
    approved_partner,
    post,
    problem,
    renew,
    signed_contract,
)
from tests.api.test_commissions import statement

NOBODY = "00000000-0000-0000-0000-00000000000b"


def sale(api, contract: str, order: str, amount: str, sold_on: str) -> None:
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": order, "amount": amount, "sold_on": sold_on}, ERP)


def preview(api, contract: str, amendment: str, who=GM):
    return api.get(f"/v1/contracts/{contract}/amendments/{amendment}/preview", actor=who[0], roles=who[1])


def test_an_amendment_request_answers_with_its_id_and_changes_no_terms(api):
    contract = signed_contract(api, approved_partner(api))
    before = api.get(f"/v1/contracts/{contract}").json()
    requested = post(api, f"/v1/contracts/{contract}/amendments",
                     {"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.04"}}).json()
    assert requested["version"] == before["version"] + 1
    assert (requested["commission"], requested["amendments"]) == (before["commission"], [])
    assert requested["amendment_requests"] == [{
        "amendment_id": requested["amendment_id"], "effective_on": "2026-03-01",
        "commission": {"type": "flat", "rate": "0.04"}, "reason": None, "rate_justification": None,
        "requested_by": "mgr-1", "status": "requested"}]
    problem(post(api, f"/v1/contracts/{contract}/amendments",
                 {"effective_on": "2027-03-01", "commission": {"type": "flat", "rate": "0.04"}}, MANAGER, None),
            422, "outside_contract_term")


def test_the_approver_approves_the_previewed_figures_and_the_statements_book_them(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.05"})
    sale(api, contract, "J", "10000.00", "2026-01-10")
    sale(api, contract, "F", "20000.00", "2026-02-10")
    amendment = post(api, f"/v1/contracts/{contract}/amendments",
                     {"effective_on": "2026-02-01", "commission": {"type": "flat", "rate": "0.06"},
                      "reason": "new scale"}).json()["amendment_id"]
    seen = preview(api, contract, amendment, FINANCE).json()
    # February: 20 000 × 5 % = 1 000.00 booked; at 6 %, 1 200.00.
    assert seen["lines"] == [{"corrects_period": "2026-02", "booked": "1000.00", "would_book": "1200.00",
                              "adjustment": "200.00"}]
    assert (seen["total"], seen["contract_version"], len(seen["digest"])) == ("200.00", 7, 64)
    assert seen["books_in"] == recorded_month(datetime.now(UTC))  # the statement month it lands on
    assert preview(api, contract, amendment, AUDITOR).json()["digest"] == seen["digest"]

    approve = f"/v1/contracts/{contract}/amendments/{amendment}/approve"
    problem(post(api, approve, {"preview_digest": seen["digest"]}, MANAGER, None), 403, "segregation_of_duties")
    problem(post(api, approve, {}, GM, None), 422, "validation_error")
    sale(api, contract, "F2", "10000.00", "2026-02-20")  # the ledger moves under the preview
    stale = problem(post(api, approve, {"preview_digest": seen["digest"]}, GM, None), 422, "preview_stale")
    fresh = preview(api, contract, amendment).json()
    assert "digest" not in stale and fresh["digest"] != seen["digest"]  # a fresh preview is read, not handed out
    assert fresh["lines"][0]["adjustment"] == "300.00"  # 30 000 × 1 %
    approved = post(api, approve, {"preview_digest": fresh["digest"]}, MANAGER_2).json()
    assert approved["amendments"] == [{"effective_on": "2026-02-01", "commission": {"type": "flat", "rate": "0.06"}}]
    problem(post(api, approve, {"preview_digest": fresh["digest"]}, GM, None), 422, "invalid_transition")

    # What the statements book is what was previewed, line for line.
    amended = api.get(f"/v1/contracts/{contract}/history").json()["items"][-1]
    assert (amended["type"], amended["data"]["preview_digest"], amended["data"]["approved_by"]) == (
        "Contract.Amended", fresh["digest"], "mgr-2")
    booked = statement(api, partner, recorded_month(datetime.fromisoformat(amended["recorded_at"])))
    assert [(line["corrects_period"], line["commission"]) for line in booked["lines"] if line["kind"] == "adjustment"] \
        == [(line["corrects_period"], line["adjustment"]) for line in fresh["lines"]]


def test_unknown_and_decided_amendments(api):
    contract = signed_contract(api, approved_partner(api))
    problem(preview(api, contract, NOBODY), 404, "not_found")
    problem(preview(api, NOBODY, NOBODY), 404, "not_found")
    problem(post(api, f"/v1/contracts/{contract}/amendments/{NOBODY}/approve", {"preview_digest": "x"}, GM, None),
            404, "not_found")
    amendment = post(api, f"/v1/contracts/{contract}/amendments",
                     {"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.04"}}).json()["amendment_id"]
    digest = preview(api, contract, amendment).json()["digest"]
    reject = f"/v1/contracts/{contract}/amendments/{amendment}/reject"
    problem(post(api, reject, {"reason": "mine"}, MANAGER, None), 403, "segregation_of_duties")
    rejected = post(api, reject, {"reason": "not this year"}, GM).json()
    assert rejected["amendments"] == []
    problem(post(api, f"/v1/contracts/{contract}/amendments/{amendment}/approve", {"preview_digest": digest}, GM, None),
            422, "invalid_transition")
    problem(preview(api, contract, amendment), 422, "invalid_transition")


def test_a_renewal_takes_effect_on_approval_by_someone_else(api):
    contract = signed_contract(api, approved_partner(api))
    requested = post(api, f"/v1/contracts/{contract}/renew", {"ends_on": "2027-06-30"}).json()
    assert (requested["ends_on"], requested["renewals"], len(requested["renewal_id"])) == ("2026-12-31", 0, 36)
    approve = f"/v1/contracts/{contract}/renewals/{requested['renewal_id']}/approve"
    problem(post(api, approve, None, MANAGER, None), 403, "segregation_of_duties")
    problem(post(api, f"/v1/contracts/{contract}/renewals/{NOBODY}/approve", None, GM, None), 404, "not_found")
    approved = post(api, approve, None, GM).json()
    assert (approved["ends_on"], approved["renewals"]) == ("2027-06-30", 1)
    assert approved["renewal_requests"] == [{"renewal_id": requested["renewal_id"], "ends_on": "2027-06-30",
                                             "requested_by": "mgr-1", "status": "approved"}]
    problem(post(api, approve, None, GM, None), 422, "invalid_transition")

    longer = post(api, f"/v1/contracts/{contract}/renew", {"ends_on": "2027-12-31"}).json()["renewal_id"]
    problem(post(api, f"/v1/contracts/{contract}/renewals/{longer}/reject", {}, GM, None), 422, "validation_error")
    assert post(api, f"/v1/contracts/{contract}/renewals/{longer}/reject", {"reason": "one year at a time"},
                GM).json()["ends_on"] == "2027-06-30"


def test_one_enterprise_agent_per_region_a_day(api):
    first = signed_contract(api, approved_partner(api, "enterprise_agent"), "2026-01-01", "2026-06-30",
                            territory="Zhejiang")
    second = approved_partner(api, "enterprise_agent")
    contract = post(api, "/v1/contracts", {"partner_id": second, "starts_on": "2026-06-01", "ends_on": "2026-12-31",
                                           "territory": "Zhejiang", "commission": {"type": "flat", "rate": "0.03"},
                                           **CONTENTS}, MANAGER, 201).json()["id"]
    post(api, f"/v1/contracts/{contract}/submit", None, MANAGER)
    post(api, f"/v1/contracts/{contract}/approve", None, GM)
    problem(post(api, f"/v1/contracts/{contract}/sign", {"signed_on": "2026-05-20"}, MANAGER, None), 422,
            "region_taken")
    signed_contract(api, approved_partner(api, "enterprise_agent"), "2026-07-01", "2026-12-31", territory="Zhejiang")
    problem(renew(api, first, "2026-07-31", expect=None), 422, "region_taken")
    assert api.get(f"/v1/contracts/{first}").json()["ends_on"] == "2026-06-30"


def test_a_contract_that_ends_before_it_starts_is_refused(api):
    agent = approved_partner(api, "enterprise_agent")
    body = {"partner_id": agent, "starts_on": "2026-06-01", "ends_on": "2026-05-31", "territory": "Zhejiang",
            "commission": {"type": "flat", "rate": "0.03"}, **CONTENTS}
    assert problem(post(api, "/v1/contracts", body, MANAGER, None), 422, "validation_error")["detail"].startswith(
        "ends_on")
