"""Over HTTP: what a partner's lifecycle stops, the archive, corrective plans, inventory
reports, payout-account rejection, and what a sale or return is checked against."""

from __future__ import annotations

from tests.api.flows import (
    CONTENTS,
    ERP,
    FINANCE,
    GM,
    HR,
    MANAGER,
    SPECIALIST,
    approved_partner,
    file_archive,
    post,
    problem,
    signed_contract,
)


def test_a_sale_or_deal_dated_while_suspended_or_after_termination_is_refused(api):
    agent = approved_partner(api)
    contract = signed_contract(api, agent)
    sale = {"order_id": "SO-1", "amount": "100.00", "sold_on": "2026-04-09"}
    suspended = post(api, f"/v1/partners/{agent}/suspend", {"reason": "late reports", "on": "2026-04-10"}).json()
    assert suspended["suspensions"] == [{"from": "2026-04-10", "until": None}]
    post(api, f"/v1/contracts/{contract}/sales", sale, ERP)  # dated before the suspension
    refused = post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "SO-2", "sold_on": "2026-04-10"},
                   ERP, None)
    problem(refused, 422, "partner_not_active")
    post(api, f"/v1/contracts/{contract}/returns",
         {"order_id": "SO-1", "amount": "10.00", "returned_on": "2026-04-11"}, ERP)
    reinstated = post(api, f"/v1/partners/{agent}/reinstate", {"reason": "caught up", "on": "2026-04-20"}).json()
    assert (reinstated["status"], reinstated["suspensions"]) == ("active", [{"from": "2026-04-10",
                                                                               "until": "2026-04-20"}])
    post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "SO-3", "sold_on": "2026-04-20"}, ERP)

    broker = post(api, "/v1/partners", {"kind": "broker", "name": "Li Wei", "commission_rate": "0.01"},
                  SPECIALIST, 201).json()["id"]
    post(api, f"/v1/partners/{broker}/review", {"decision": "approve"})
    post(api, f"/v1/partners/{broker}/terminate", {"reason": "fraud", "on": "2026-06-01"})
    deal = {"deal_id": "D-1", "amount": "500.00", "closed_on": "2026-06-02"}
    problem(post(api, f"/v1/partners/{broker}/deals", deal, ERP, None), 422, "partner_not_active")
    post(api, f"/v1/partners/{broker}/deals", {**deal, "closed_on": "2026-06-01"}, ERP)  # its last day


def test_termination_needs_its_date_and_terminates_the_contracts_with_it(api):
    agent = approved_partner(api)
    contract = signed_contract(api, agent)
    problem(post(api, f"/v1/partners/{agent}/terminate", {"reason": "closing"}, MANAGER, None), 422,
            "validation_error")
    ended = post(api, f"/v1/partners/{agent}/terminate", {"reason": "closing", "on": "2026-09-01"}).json()
    assert (ended["status"], ended["terminated_on"], ended["terminated_contracts"]) == (
        "terminated", "2026-09-01", [contract])
    # The partner's `on` is its last day; a contract's termination names its first day out of force.
    history = api.get(f"/v1/contracts/{contract}/history").json()["items"]
    assert (history[-1]["type"], history[-1]["effective_on"]) == ("Contract.Terminated", "2026-09-02")
    assert api.get(f"/v1/contracts/{contract}").json()["last_day_in_force"] == "2026-09-01"
    assert history[-1]["correlation_id"] == api.get(f"/v1/partners/{agent}/history").json()["items"][-1][
        "correlation_id"]


def test_the_termination_day_still_sells_and_frees_the_sales_agent_slot_from_the_day_after(api):
    agent = approved_partner(api)
    contract = signed_contract(api, agent)
    sale = {"order_id": "SO-1", "amount": "100.00", "sold_on": "2026-06-30"}
    post(api, f"/v1/partners/{agent}/terminate", {"reason": "closing", "on": "2026-06-30"})
    post(api, f"/v1/contracts/{contract}/sales", sale, ERP)  # the termination day itself
    problem(post(api, f"/v1/contracts/{contract}/sales", {**sale, "order_id": "SO-2", "sold_on": "2026-07-01"},
                 ERP, None), 422, "partner_not_active")
    successor = approved_partner(api)
    with_the_termination_day = post(api, "/v1/contracts", {
        "partner_id": successor, "starts_on": "2026-06-30", "ends_on": "2027-06-29",
        "commission": {"type": "flat", "rate": "0.03"}, **CONTENTS}, MANAGER, 201).json()["id"]
    post(api, f"/v1/contracts/{with_the_termination_day}/submit", None, MANAGER)
    post(api, f"/v1/contracts/{with_the_termination_day}/approve", None, GM)
    problem(post(api, f"/v1/contracts/{with_the_termination_day}/sign", {"signed_on": "2026-06-30"}, MANAGER, None),
            422, "exclusive_sales_agent_exists")
    signed_contract(api, successor, starts_on="2026-07-01", ends_on="2027-06-30")


def test_approval_needs_the_archive_and_says_what_is_missing(api):
    agent = post(api, "/v1/partners", {"kind": "consignee", "name": "Ningbo Consign"}, SPECIALIST, 201).json()["id"]
    post(api, f"/v1/partners/{agent}/documents",
         {"kind": "business_licence", "reference": "91330200MA2B3C4D5E", "issued_on": "2024-03-01",
          "expires_on": "2044-02-29"}, SPECIALIST)
    missing = problem(post(api, f"/v1/partners/{agent}/review", {"decision": "approve"}, MANAGER, None), 422,
                      "archive_incomplete")
    assert "legal_representative_id" in missing["detail"]
    filed = post(api, f"/v1/partners/{agent}/documents",
                 {"kind": "legal_representative_id", "reference": "330203198001011234"}, MANAGER).json()
    assert filed["documents"][filed["document_id"]] == {
        "kind": "legal_representative_id", "reference": "330203198001011234", "expires_on": None}
    problem(post(api, f"/v1/partners/{agent}/documents", {"kind": "passport", "reference": "E1"}, SPECIALIST, None),
            422, "validation_error")
    assert post(api, f"/v1/partners/{agent}/review", {"decision": "approve"}).json()["status"] == "approved"


def test_corrective_plans_are_recorded_and_closed(api):
    agent = approved_partner(api, "retailer")
    plan = post(api, f"/v1/partners/{agent}/corrective-plans",
                {"actions": ["weekly sales report"], "due_on": "2026-06-30"}).json()
    assert plan["corrective_plans"][plan["plan_id"]] == {"due_on": "2026-06-30", "status": "open"}
    closed = post(api, f"/v1/partners/{agent}/corrective-plans/{plan['plan_id']}/close", {"outcome": "met"}).json()
    assert closed["corrective_plans"][plan["plan_id"]]["status"] == "met"
    problem(post(api, f"/v1/partners/{agent}/corrective-plans/{plan['plan_id']}/close", {"outcome": "failed"},
                 MANAGER, None), 422, "invalid_transition")
    problem(post(api, f"/v1/partners/{agent}/corrective-plans/{agent}/close", {"outcome": "met"}, MANAGER, None),
            404, "not_found")
    history = api.get(f"/v1/partners/{agent}/history").json()["items"]
    assert [h["type"] for h in history[-2:]] == ["Partner.CorrectivePlanRecorded", "Partner.CorrectivePlanClosed"]
    assert history[-2]["data"]["actions"] == ["weekly sales report"]


def test_inventory_reports_chain_from_one_to_the_next(api):
    distributor = approved_partner(api, "distributor")
    line = {"product": "router", "opening": 100, "received": 50, "sold": 30, "closing": 120}
    first = post(api, f"/v1/partners/{distributor}/inventory-reports", {"as_of": "2026-03-31", "lines": [line]},
                 ERP).json()
    assert first["stock"] == {"router": {"as_of": "2026-03-31", "closing": 120}}
    nxt = {"product": "router", "opening": 100, "received": 0, "sold": 0, "closing": 100}
    problem(post(api, f"/v1/partners/{distributor}/inventory-reports", {"as_of": "2026-04-30", "lines": [nxt]},
                 SPECIALIST, None), 422, "inventory_chain_broken")
    post(api, f"/v1/partners/{distributor}/inventory-reports",
         {"as_of": "2026-04-30", "lines": [nxt], "correction_reason": "stock count: 20 units damaged"}, SPECIALIST)
    for bad in ({**line, "sold": 30.0}, {**line, "closing": 121}, {**line, "opening": -1, "closing": 19},
                {**line, "received": "50"}):
        problem(post(api, f"/v1/partners/{distributor}/inventory-reports", {"as_of": "2026-05-31", "lines": [bad]},
                     ERP, None), 422, "validation_error")
    retailer = approved_partner(api, "retailer")
    problem(post(api, f"/v1/partners/{retailer}/inventory-reports", {"as_of": "2026-03-31", "lines": [line]}, ERP,
                 None), 422, "inventory_not_applicable")


def test_a_correction_of_an_earlier_month_leaves_the_next_regular_report_continuing_the_latest(api):
    distributor = approved_partner(api, "distributor")
    path = f"/v1/partners/{distributor}/inventory-reports"

    def month(as_of, opening, received, sold, **correction):
        line = {"product": "router", "opening": opening, "received": received, "sold": sold,
                "closing": opening + received - sold}
        return post(api, path, {"as_of": as_of, "lines": [line], **correction}, ERP, None)

    month("2026-01-31", 0, 100, 40)  # closes 60
    month("2026-03-31", 60, 0, 20)  # closes 40
    corrected = month("2026-01-31", 0, 100, 45, correction_reason="recount").json()  # January closes 55
    assert corrected["stock"] == {"router": {"as_of": "2026-03-31", "closing": 40}}
    assert month("2026-04-30", 40, 0, 5).status_code == 200  # continues March
    problem(month("2026-04-30", 35, 0, 0), 422, "inventory_out_of_order")  # April is reported already


def test_a_payout_account_change_is_rejected_by_finance_other_than_the_requester(api):
    agent = approved_partner(api, "retailer")
    clerk = ("li", ("channel_specialist", "finance"))
    change = post(api, f"/v1/partners/{agent}/payout-account/changes", {"account": "6222 0001"}, clerk).json()
    path = f"/v1/partners/{agent}/payout-account/changes/{change['change_id']}/reject"
    version = change["version"]
    problem(post(api, path, {"reason": "wrong holder"}, clerk, None), 403, "segregation_of_duties")
    assert api.get(f"/v1/partners/{agent}").json()["version"] == version
    rejected = post(api, path, {"reason": "wrong holder"}, FINANCE).json()
    assert rejected["payout_account_changes"][change["change_id"]]["status"] == "rejected"
    assert rejected["payout_account"] is None
    event = api.get(f"/v1/partners/{agent}/history").json()["items"][-1]
    assert (event["type"], event["data"]["rejected_by"], event["data"]["reason"]) == (
        "Partner.PayoutAccountChangeRejected", "fin-1", "wrong holder")
    problem(post(api, path, None, FINANCE, None), 422, "invalid_transition")


def test_a_sale_names_a_contract_product_and_a_current_employee(api):
    contract = signed_contract(api, approved_partner(api))  # products: router
    rep = post(api, "/v1/employees", {"name": "Xu", "role": "sales_rep", "hired_on": "2026-03-01"}, HR, 201).json()
    sale = {"order_id": "SO-1", "amount": "100.00", "sold_on": "2026-03-02", "product": "switch"}
    problem(post(api, f"/v1/contracts/{contract}/sales", sale, ERP, None), 422, "product_not_in_contract")
    sale.update(product="router", employee_id=rep["id"], sold_on="2026-02-28")
    problem(post(api, f"/v1/contracts/{contract}/sales", sale, ERP, None), 422, "unknown_employee")
    problem(post(api, f"/v1/contracts/{contract}/sales", {**sale, "employee_id": contract, "sold_on": "2026-03-02"},
                 ERP, None), 422, "unknown_employee")
    post(api, f"/v1/contracts/{contract}/sales", {**sale, "sold_on": "2026-03-02"}, ERP)


def test_a_return_id_is_refused_the_second_time(api):
    contract = signed_contract(api, approved_partner(api))
    for order in ("SO-1", "SO-2"):
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": order, "amount": "100.00", "sold_on": "2026-03-02"},
             ERP)
    back = {"order_id": "SO-1", "amount": "10.00", "returned_on": "2026-03-05", "return_id": "RMA-1"}
    post(api, f"/v1/contracts/{contract}/returns", back, ERP)
    problem(post(api, f"/v1/contracts/{contract}/returns", {**back, "order_id": "SO-2"}, ERP, None), 422,
            "duplicate_return")
    assert api.get(f"/v1/contracts/{contract}").json()["returns"] == "10.00"


def test_the_archive_is_filed_before_approval_for_agents_only(api):
    store = post(api, "/v1/partners", {"kind": "direct_store", "name": "Store 1", "grade": "B"}, SPECIALIST,
                 201).json()["id"]
    assert post(api, f"/v1/partners/{store}/review", {"decision": "approve"}).json()["status"] == "approved"
    agent = post(api, "/v1/partners", {"kind": "enterprise_agent", "name": "Hangzhou", "region": "Zhejiang"},
                 SPECIALIST, 201).json()["id"]
    file_archive(api, agent)
    assert len(api.get(f"/v1/partners/{agent}").json()["documents"]) == 2
