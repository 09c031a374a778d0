"""The seeds' story, end to end over HTTP.

The channel department hires a channel manager and a sales representative; recruits an
enterprise agent for Zhejiang, which a different manager approves once its licence and its
legal representative's identity are on file; drafts its contract, which the general manager
approves, and signs it. The agent sells inside its territory (an order from Jiangsu is
refused), a customer returns part of an order, and when a second sales agent is proposed
while one is already in force, the signature is refused — until the first, after a poor
evaluation and a failed corrective plan, is terminated, which ends its contract. Finance closes
March once the agent's payout is prepared; an order reported late for March then lands in the
first open month, and a dispute of one March line, raised by the channel manager and upheld by
finance, is booked as an adjustment in the month it is resolved — March itself never changes.
"""

from __future__ import annotations

from datetime import datetime

from channel_domain.company_time import recorded_month
from tests.api.flows import (
    CONTENTS, ERP, FINANCE, FINANCE_2, GM, HR, MANAGER, REPORTING, SPECIALIST, file_archive, post, problem,
)
from tests.api.test_commissions import statement, with_account


def test_the_channel_department_story(api):
    # HR hires the channel manager and a sales representative who reports to her.
    manager = post(api, "/v1/employees", {"name": "Zhou Min", "role": "manager", "hired_on": "2026-01-05",
                                          "contract_months": 36}, HR, 201).json()
    assert manager["probation_months"] == 3  # three-year contract: the law allows 6, the company caps at 3
    rep = post(api, "/v1/employees", {"name": "Xu Tao", "role": "sales_rep", "hired_on": "2026-01-12",
                                      "manager_id": manager["id"]}, HR, 201).json()
    assert rep["probation_months"] == 2

    # The rep recruits an enterprise agent for Zhejiang; the channel manager reviews it.
    agent = post(api, "/v1/partners", {"kind": "enterprise_agent", "name": "Hangzhou Trading Co.",
                                       "region": "Zhejiang", "recruited_by": rep["id"]}, SPECIALIST, 201).json()
    problem(post(api, f"/v1/partners/{agent['id']}/review", {"decision": "approve"}, MANAGER, None), 422,
            "archive_incomplete")
    file_archive(api, agent["id"])
    assert post(api, f"/v1/partners/{agent['id']}/review", {"decision": "approve"}, MANAGER).json()["status"] == "approved"

    # The manager drafts the contract; the general manager approves; the manager signs.
    contract = post(api, "/v1/contracts", {
        "partner_id": agent["id"], "starts_on": "2026-02-01", "ends_on": "2027-01-31", "territory": "Zhejiang",
        "commission": {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]},
        **CONTENTS,
    }, MANAGER, 201).json()["id"]
    post(api, f"/v1/contracts/{contract}/submit", None, MANAGER)
    problem(post(api, f"/v1/contracts/{contract}/approve", None, MANAGER, None), 403, "segregation_of_duties")
    post(api, f"/v1/contracts/{contract}/approve", None, GM)
    post(api, f"/v1/contracts/{contract}/sign", {"signed_on": "2026-01-28"}, MANAGER)
    assert api.get(f"/v1/partners/{agent['id']}").json()["status"] == "active"

    # Sales arrive from the ERP: inside the territory they land, outside they are refused.
    sale = {"order_id": "HZ-0001", "amount": "60000.00", "sold_on": "2026-03-02", "region": "Zhejiang",
            "employee_id": rep["id"]}
    post(api, f"/v1/contracts/{contract}/sales", sale, ERP)
    post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "HZ-0002", "amount": "70000.00"}, ERP)
    problem(post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "JS-0001", "region": "Jiangsu"}, ERP,
                 None), 422, "outside_territory")

    # A customer returns part of the first order.
    state = post(api, f"/v1/contracts/{contract}/returns",
                 {"order_id": "HZ-0001", "amount": "5000.00", "returned_on": "2026-03-10"}, ERP).json()
    assert (state["orders"], state["gross_sales"], state["returns"]) == (2, "130000.00", "5000.00")

    # One sales agent at a time: the first is signed, a second is refused while it is in force.
    def sales_agent_contract(name: str, starts_on: str) -> str:
        partner = post(api, "/v1/partners", {"kind": "sales_agent", "name": name}, SPECIALIST, 201).json()["id"]
        file_archive(api, partner)
        post(api, f"/v1/partners/{partner}/review", {"decision": "approve"}, MANAGER)
        drafted = post(api, "/v1/contracts", {"partner_id": partner, "starts_on": starts_on, "ends_on": "2026-12-31",
                                              "commission": {"type": "flat", "rate": "0.02"}, **CONTENTS},
                       MANAGER, 201).json()["id"]
        post(api, f"/v1/contracts/{drafted}/submit", None, MANAGER)
        post(api, f"/v1/contracts/{drafted}/approve", None, GM)
        return drafted

    first = sales_agent_contract("National Sales Ltd.", "2026-02-01")
    post(api, f"/v1/contracts/{first}/sign", {"signed_on": "2026-01-30"}, MANAGER)
    second = sales_agent_contract("Rival Sales Ltd.", "2026-07-01")
    problem(post(api, f"/v1/contracts/{second}/sign", {"signed_on": "2026-06-28"}, MANAGER, None), 422,
            "exclusive_sales_agent_exists")
    # The first agent's second quarter is poor: a corrective plan is set, and fails.
    national = api.get(f"/v1/contracts/{first}").json()["partner_id"]
    post(api, f"/v1/partners/{national}/evaluations", {"period": "2026-Q2", "scores": {"sales_revenue": 40}})
    plan = post(api, f"/v1/partners/{national}/corrective-plans",
                {"actions": ["weekly pipeline review"], "due_on": "2026-06-30"}).json()["plan_id"]
    post(api, f"/v1/partners/{national}/corrective-plans/{plan}/close", {"outcome": "failed"})
    # 「取消合作资格」: terminated with 30 June as its last day of business, its contract ends
    # that day too, and the slot is free for the second from 1 July.
    ended = post(api, f"/v1/partners/{national}/terminate", {"reason": "targets missed", "on": "2026-06-30"}).json()
    assert ended["terminated_contracts"] == [first]
    assert api.get(f"/v1/contracts/{first}").json()["last_day_in_force"] == "2026-06-30"
    post(api, f"/v1/contracts/{second}/sign", {"signed_on": "2026-06-28"}, MANAGER)

    # Every step is on record, attributed.
    history = api.get(f"/v1/contracts/{contract}/history").json()["items"]
    assert [(h["type"], h["actor"]) for h in history[:4]] == [
        ("Contract.Drafted", "mgr-1"), ("Contract.Submitted", "mgr-1"), ("Contract.Approved", "gm-1"),
        ("Contract.Signed", "mgr-1"),
    ]
    assert history[4]["effective_on"] == "2026-03-02" and history[4]["data"]["employee_id"] == rep["id"]

    # March's statement: 60 000 × 3 % = 1 800; HZ-0002's 70 000 fills the tier, 40 000 × 3 % = 1 200, and
    # 30 000 × 4.5 % = 1 350 above it; the return of 5 000 claws back HZ-0001's top slice, 5 000 × 3 % = 150.
    march = statement(api, agent["id"], "2026-03", REPORTING)
    assert (march["net_sales"], march["commission"], march["total_due"]) == ("125000.00", "4200.00", "4200.00")
    # Finance closes March only once the agent's payout is prepared.
    problem(post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, None), 422, "payouts_not_prepared")
    with_account(api, agent["id"])
    post(api, f"/v1/partners/{agent['id']}/payouts", {"period": "2026-03", "amount": "4200.00"}, SPECIALIST)
    api.catch_up()
    assert post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, 201).json()["status"] == "closed"
    closed = statement(api, agent["id"], "2026-03", REPORTING)
    assert closed["period_status"] == "closed"

    # An order of 28 March reported late: March's sales already stand at 130 000, so its 10 000 earns
    # 4.5 % = 450 — booked in the month it is recorded (open), as an adjustment correcting March.
    post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "HZ-0003", "amount": "10000.00",
                                                  "sold_on": "2026-03-28"}, ERP)
    reported = api.get(f"/v1/contracts/{contract}/history").json()["items"][-1]
    late_in = recorded_month(datetime.fromisoformat(reported["recorded_at"]))
    late = statement(api, agent["id"], late_in, REPORTING)
    assert [(line["kind"], line["moved_kind"], line["corrects_period"], line["commission"]) for line in late["lines"]] == [
        ("adjustment", "sale", "2026-03", "450.00")]
    assert (late["adjusted_sales"], late["total_due"]) == ("10000.00", "450.00")
    assert statement(api, agent["id"], "2026-04", REPORTING)["lines"] == []

    # The agent says HZ-0002 was a launch order with 5 % agreed above the tier: the channel manager
    # disputes its lines; finance upholds 30 000 × (5 % − 4.5 %) = 150.
    hz2 = {line["position"] for line in closed["lines"] if line["order_id"] == "HZ-0002"}.pop()
    dispute = post(api, f"/v1/commissions/statements/{agent['id']}/2026-03/disputes",
                   {"line_position": hz2, "reason": "launch order: 5 % agreed above 100 000"}, MANAGER, 201).json()
    post(api, f"/v1/commissions/statements/{agent['id']}/2026-03/disputes/{dispute['dispute_id']}/resolve",
         {"outcome": "upheld", "note": "launch terms confirmed by the GM's letter", "amount": "150.00"}, FINANCE)
    resolution = api.get(f"/v1/commissions/disputes/{dispute['dispute_id']}/history").json()["items"][-1]
    booked_in = recorded_month(datetime.fromisoformat(resolution["recorded_at"]))
    booked = statement(api, agent["id"], booked_in, REPORTING)
    upheld = [(line["kind"], line["corrects_period"], line["commission"], line["dispute_id"])
              for line in booked["lines"] if line["dispute_id"] is not None]
    assert upheld == [("adjustment", "2026-03", "150.00", dispute["dispute_id"])]
    # Both corrections of March in the month they were recorded: 450 + 150 due (one month unless the
    # test ran across a month's end).
    assert booked["total_due"] == ("600.00" if booked_in == late_in else "150.00")
    march = statement(api, agent["id"], "2026-03", REPORTING)
    assert [(d["status"], d["amount"], d["adjustment"]["period"]) for d in march["disputes"]] == [
        ("upheld", "150.00", booked_in)]
    assert {**march, "disputes": []} == {**closed, "disputes": []}  # March reads as it was closed


def test_a_consignees_month_and_an_agents_housing_subsidy(api):
    """A consignee sells on consigned stock, a customer brings one order back in three parts,
    the consignee keeps its commission and fees and remits the rest; an agent's housing subsidy
    passes three people and is shown on its statement, apart from what it is owed."""
    consignee = post(api, "/v1/partners", {"kind": "consignee", "name": "Ningbo Consignment"}, SPECIALIST, 201).json()
    file_archive(api, consignee["id"])
    post(api, f"/v1/partners/{consignee['id']}/review", {"decision": "approve"}, MANAGER)
    contract = post(api, "/v1/contracts", {
        "partner_id": consignee["id"], "starts_on": "2026-01-01", "ends_on": "2026-12-31", "fee_rate": "0.02",
        "commission": {"type": "flat", "rate": "0.05"}, **CONTENTS}, MANAGER, 201).json()["id"]
    post(api, f"/v1/contracts/{contract}/submit", None, MANAGER)
    post(api, f"/v1/contracts/{contract}/approve", None, GM)
    post(api, f"/v1/contracts/{contract}/sign", {"signed_on": "2026-01-01"}, MANAGER)
    for order, amount, day in (("NB-1", "20000.00", "2026-03-02"), ("NB-2", "99.99", "2026-03-03")):
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": order, "amount": amount, "sold_on": day}, ERP)
    for day in ("2026-03-04", "2026-03-05", "2026-03-06"):  # a third each: 1.67, 1.67, then what is left, 1.66
        post(api, f"/v1/contracts/{contract}/returns", {"order_id": "NB-2", "amount": "33.33", "returned_on": day}, ERP)
    march = statement(api, consignee["id"], "2026-03", REPORTING)
    nb2 = [line["commission"] for line in march["lines"] if line["order_id"] == "NB-2"]
    assert nb2 == ["5.00", "-1.67", "-1.67", "-1.66"]  # the order returned in full nets 0.00
    # Proceeds 20 000; commission 1 000; fees 2 % = 400: the consignee remits 18 600 and is owed nothing.
    assert (march["commission"], march["fees"], march["remittance_due"], march["total_due"]) == (
        "1000.00", "400.00", "18600.00", "0.00")
    post(api, f"/v1/partners/{consignee['id']}/remittances",
         {"period": "2026-03", "amount": "18600.00", "received_on": "2026-04-12"}, FINANCE)
    march = statement(api, consignee["id"], "2026-03", REPORTING)
    assert (march["remitted"], march["remittance_outstanding"]) == ("18600.00", "0.00")

    # The consignee's housing subsidy for March: prepared, verified, approved, paid — four hands.
    with_account(api, consignee["id"])
    subsidies = f"/v1/partners/{consignee['id']}/housing-subsidies"
    post(api, subsidies, {"period": "2026-03", "amount": "1500.00"}, SPECIALIST)
    post(api, f"{subsidies}/2026-03/verify", None, FINANCE)
    post(api, f"{subsidies}/2026-03/approve", None, GM)
    post(api, f"{subsidies}/2026-03/pay", {"paid_on": "2026-04-15"}, FINANCE_2)
    march = statement(api, consignee["id"], "2026-03", REPORTING)
    assert (march["housing_subsidy"], march["total_due"]) == ({"amount": "1500.00", "status": "paid"}, "0.00")
