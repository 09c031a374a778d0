"""/v1/partners over HTTP: every command, with the refusals that matter to clients."""

from __future__ import annotations

from tests.api.flows import (
    ERP,
    FINANCE,
    FINANCE_2,
    GM,
    MANAGER,
    SPECIALIST,
    approved_partner,
    post,
    problem,
    signed_contract,
)

EMPLOYEE = "00000000-0000-0000-0000-0000000000e1"


def active_partner(api, kind="enterprise_agent", **fields) -> str:
    partner = approved_partner(api, kind, **fields)
    if kind != "broker":
        signed_contract(api, partner, territory="Zhejiang" if kind == "enterprise_agent" else None)
    return partner


def test_application_review_and_kind_rules(api):
    problem(post(api, "/v1/partners", {"kind": "direct_store", "name": "Store"}, SPECIALIST, None), 422, "validation_error")
    store = post(api, "/v1/partners", {"kind": "direct_store", "name": "Store", "grade": "A"}, SPECIALIST, 201).json()
    assert store["minimum_monthly_visits"] == 5
    rejected = post(api, f"/v1/partners/{store['id']}/review", {"decision": "reject", "notes": "no site"}, MANAGER).json()
    assert rejected["status"] == "rejected"
    problem(post(api, f"/v1/partners/{store['id']}/review", {"decision": "approve"}, MANAGER, None), 422,
            "invalid_transition")


def test_suspend_reinstate_terminate(api):
    partner = active_partner(api)
    assert post(api, f"/v1/partners/{partner}/suspend", {"reason": "late reports"}).json()["status"] == "suspended"
    assert post(api, f"/v1/partners/{partner}/reinstate", {"reason": "caught up"}).json()["status"] == "active"
    ended = post(api, f"/v1/partners/{partner}/terminate", {"reason": "poor results", "on": "2026-09-30"}).json()
    assert (ended["status"], ended["terminated_on"]) == ("terminated", "2026-09-30")


def test_visits_evaluations_complaints(api):
    partner = active_partner(api)
    visited = post(api, f"/v1/partners/{partner}/visits", {"visited_on": "2026-03-03", "employee_id": EMPLOYEE}, SPECIALIST)
    assert visited.json()["visits"] == 1
    scored = post(api, f"/v1/partners/{partner}/evaluations", {"period": "2026-Q1", "scores": {"sales_revenue": 82}})
    assert scored.json()["evaluations"] == {"2026-Q1": {"sales_revenue": "82"}}
    opened = post(api, f"/v1/partners/{partner}/complaints", {"subject": "late delivery"}, SPECIALIST).json()
    complaint = opened["complaint_id"]
    assert opened["complaints"] == {complaint: "opened"}
    post(api, f"/v1/partners/{partner}/complaints/{complaint}/escalate", {"note": "to the director"})
    resolved = post(api, f"/v1/partners/{partner}/complaints/{complaint}/resolve", {"note": "settled"}).json()
    assert resolved["complaints"][complaint] == "resolved"
    problem(post(api, f"/v1/partners/{partner}/complaints/{EMPLOYEE}/resolve", {"note": "x"}, MANAGER, None),
            404, "not_found")


def test_deposit_paid_and_refunded_after_termination(api):
    partner = active_partner(api)
    post(api, f"/v1/partners/{partner}/deposit/payments", {"amount": "5000.00", "on": "2026-01-10"}, FINANCE)
    problem(post(api, f"/v1/partners/{partner}/deposit/refunds", {"amount": "5000.00", "on": "2026-02-01"}, FINANCE,
                 None), 422, "partner_not_terminated")
    post(api, f"/v1/partners/{partner}/terminate", {"reason": "ended", "on": "2026-12-31"})
    problem(post(api, f"/v1/partners/{partner}/deposit/refunds", {"amount": "5000.01", "on": "2027-01-05"}, FINANCE,
                 None), 422, "refund_exceeds_deposit")
    refunded = post(api, f"/v1/partners/{partner}/deposit/refunds", {"amount": "5000.00", "on": "2027-01-05"}, FINANCE)
    assert refunded.json()["deposit"] == {"paid": "5000.00", "refunded": "5000.00", "held": "0.00"}


def test_payout_account_subsidy_and_the_four_hand_payout(api):
    partner = active_partner(api)
    change = post(api, f"/v1/partners/{partner}/payout-account/changes", {"account": "6222 0001"}, SPECIALIST).json()
    approved = post(api, f"/v1/partners/{partner}/payout-account/changes/{change['change_id']}/approve", None, FINANCE)
    assert approved.json()["payout_account"] == "6222 0001"
    post(api, f"/v1/partners/{partner}/housing-subsidies", {"period": "2026-03", "amount": "800.00"}, SPECIALIST)
    post(api, f"/v1/partners/{partner}/payouts", {"period": "2026-03", "amount": "4350.00"}, SPECIALIST)
    problem(post(api, f"/v1/partners/{partner}/payouts/2026-03/approve", None, GM, None), 422, "invalid_transition")
    post(api, f"/v1/partners/{partner}/payouts/2026-03/verify", None, FINANCE)
    post(api, f"/v1/partners/{partner}/payouts/2026-03/approve", None, GM)
    paid = post(api, f"/v1/partners/{partner}/payouts/2026-03/pay", {"paid_on": "2026-04-10"}, FINANCE_2).json()
    assert paid["payouts"]["2026-03"]["status"] == "paid"
    assert paid["payouts"]["2026-03"]["amount"] == "4350.00"


def test_verifier_who_prepared_is_refused(api):
    partner = active_partner(api)
    both = ("li", ("channel_specialist", "finance"))
    change = post(api, f"/v1/partners/{partner}/payout-account/changes", {"account": "6222 0001"}, both).json()
    problem(post(api, f"/v1/partners/{partner}/payout-account/changes/{change['change_id']}/approve", None, both,
                 None), 403, "segregation_of_duties")
    post(api, f"/v1/partners/{partner}/payout-account/changes/{change['change_id']}/approve", None, FINANCE)
    post(api, f"/v1/partners/{partner}/payouts", {"period": "2026-03", "amount": "10.00"}, both)
    problem(post(api, f"/v1/partners/{partner}/payouts/2026-03/verify", None, both, None), 403, "segregation_of_duties")


def test_broker_deals(api):
    broker = approved_partner(api, "broker", commission_rate="0.01")
    dealt = post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-1", "amount": "20000.00", "closed_on": "2026-03-02"},
                 ERP).json()
    assert dealt["deals"] == {"D-1": "20000.00"} and dealt["commission_rate"] == "0.01"
    problem(post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-1", "amount": "1.00", "closed_on": "2026-03-02"},
                 ERP, None), 422, "duplicate_deal")
    problem(post(api, "/v1/partners", {"kind": "broker", "name": "No rate"}, SPECIALIST, None), 422, "validation_error")


def test_a_partners_name_shows_in_its_history_for_every_reader(api):
    # Only an employee's `name` is personal data; a partner's is a company's and was once
    # dropped from the history of every reader without the hr role.
    partner = post(api, "/v1/partners", {"kind": "retailer", "name": "杭州联华超市"}, SPECIALIST, 201).json()
    for reader in ("auditor", "channel_manager", "reporting"):
        first = api.get(f"/v1/partners/{partner['id']}/history", actor=f"{reader}-1", roles=(reader,)).json()
        assert first["items"][0]["data"]["name"] == "杭州联华超市", reader
