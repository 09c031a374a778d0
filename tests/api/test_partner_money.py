"""Consignee settlement and remittances, and housing subsidies, over HTTP (domain.md §1, §6;
api.md). Figures worked by hand."""

from __future__ import annotations

from datetime import datetime

import psycopg

from channel_domain.company_time import recorded_month
from tests.api.flows import (
    AUDITOR,
    FINANCE,
    FINANCE_2,
    GM,
    MANAGER,
    SPECIALIST,
    amend,
    approved_partner,
    post,
    problem,
    signed_contract,
)
from tests.api.test_commissions import give_back, sale, statement, with_account
from tests.api.test_read_side import catch_up

SETTLEMENT = ("net_sales", "commission", "adjustments", "fees", "remittance_due", "total_due", "carried_in",
              "carried_out", "remitted", "remittance_outstanding")


def settlement(body: dict) -> tuple:
    return tuple(body[name] for name in SETTLEMENT)


def consignee(api) -> tuple[str, str]:
    partner = approved_partner(api, "consignee")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    return partner, contract


def remit(api, partner: str, period: str, amount: str, on: str, who=FINANCE, expect: int | None = 200):
    return post(api, f"/v1/partners/{partner}/remittances",
                {"period": period, "amount": amount, "received_on": on}, who, expect)


def test_a_consignee_remits_its_month_and_is_owed_no_commission(api):
    partner, contract = consignee(api)
    sale(api, contract, "C1", "10000.00", "2026-03-05")
    give_back(api, contract, "C1", "2000.00", "2026-03-20")
    # Proceeds 8 000; commission 1 000 − 200 = 800; fees 2 % × 8 000 = 160: S = 8 000 − 800 − 160 = 7 040.
    assert settlement(statement(api, partner, "2026-03")) == (
        "8000.00", "800.00", "0.00", "160.00", "7040.00", "0.00", "0.00", "0.00", "0.00", "7040.00")
    received = remit(api, partner, "2026-03", "5000.00", "2026-04-08").json()
    assert received["remittances"] == {"2026-03": "5000.00"}
    march = statement(api, partner, "2026-03")
    assert (march["remitted"], march["remittance_outstanding"]) == ("5000.00", "2040.00")
    remit(api, partner, "2026-03", "2040.00", "2026-04-14")
    assert statement(api, partner, "2026-03")["remittance_outstanding"] == "0.00"


def test_a_consignee_month_below_zero_is_paid_by_the_company_and_carries_nothing(api):
    partner, contract = consignee(api)
    sale(api, contract, "C1", "10000.00", "2026-03-05")  # March: S = 10 000 − 1 000 − 200 = 8 800 remitted
    give_back(api, contract, "C1", "4000.00", "2026-04-02")
    sale(api, contract, "C2", "1000.00", "2026-04-20")
    # April: proceeds 1 000 − 4 000 = −3 000; commission 100 − 400 = −300; fees 2 % × −3 000 = −60:
    # S = −3 000 + 300 + 60 = −2 640, which the company owes.
    assert settlement(statement(api, partner, "2026-04")) == (
        "-3000.00", "-300.00", "0.00", "-60.00", "0.00", "2640.00", "0.00", "0.00", "0.00", "0.00")
    sale(api, contract, "C3", "500.00", "2026-05-03")
    # May starts afresh: 500 − 50 − 10 = 440 to remit.
    may = statement(api, partner, "2026-05")
    assert (may["carried_in"], may["remittance_due"], may["total_due"]) == ("0.00", "440.00", "0.00")
    remit(api, partner, "2026-05", "400.00", "2026-06-10")
    catch_up(api)
    with psycopg.connect(api.database_url) as conn:  # the view BI tools read says the same
        rows = conn.execute(
            "SELECT period, remittance_due::text, total_due::text, carried_in::text, carried_out::text,"
            " remitted::text, remittance_outstanding::text FROM commission_statements"
            " WHERE partner_id = %s ORDER BY period", (partner,)).fetchall()
    assert rows == [("2026-03", "8800.00", "0", "0", "0", "0", "8800.00"),
                    ("2026-04", "0", "2640.00", "0", "0", "0", "0"),
                    ("2026-05", "440.00", "0", "0", "0", "400.00", "40.00")]


def test_a_consignees_adjustment_enters_its_settlement(api):
    partner, contract = consignee(api)
    sale(api, contract, "C1", "10000.00", "2026-01-10")
    catch_up(api)
    amend(api, contract, {"effective_on": "2026-01-01", "commission": {"type": "flat", "rate": "0.12"},
                          "reason": "new scale"})
    approved_at = api.get(f"/v1/contracts/{contract}/history").json()["items"][-1]["recorded_at"]
    recorded_in = recorded_month(datetime.fromisoformat(approved_at))
    # 10 000 × 2 % more = 200, booked in the month recorded: S = 0 − 0 − 0 − 200, owed by the company.
    booked = statement(api, partner, recorded_in)
    assert (booked["adjustments"], booked["remittance_due"], booked["total_due"]) == ("200.00", "0.00", "200.00")


def test_paying_a_consignee_the_commission_it_kept_is_a_finding(api):
    partner, contract = consignee(api)
    with_account(api, partner)
    sale(api, contract, "C1", "10000.00", "2026-03-05")
    catch_up(api)
    post(api, f"/v1/partners/{partner}/payouts", {"period": "2026-03", "amount": "1000.00"}, SPECIALIST)
    catch_up(api)
    raised = api.get("/v1/audit/findings", kind="payout_not_total_due").json()["items"]
    assert [(f["subject_id"], f["detail"]) for f in raised] == [
        (partner, "payout for 2026-03 prepared for 1000.00; the statement's total due was 0.00")]


def test_only_consignees_remit(api):
    retailer = approved_partner(api, "retailer")
    contract = signed_contract(api, retailer)
    problem(remit(api, retailer, "2026-03", "100.00", "2026-04-08", expect=None), 422, "not_a_consignee")
    sale(api, contract, "R1", "1000.00", "2026-03-05")
    body = statement(api, retailer, "2026-03", who=AUDITOR)
    assert (body["fees"], body["remittance_due"], body["remitted"], body["remittance_outstanding"]) == (
        None, None, None, None)
    partner, _ = consignee(api)
    problem(remit(api, partner, "2026-Q1", "100.00", "2026-04-08", expect=None), 422, "validation_error")
    problem(remit(api, partner, "2026-03", "100.00", "2026-04-08", MANAGER, None), 403, "forbidden")


def subsidy(api, partner: str, step: str, body=None, who=FINANCE, expect: int | None = 200):
    return post(api, f"/v1/partners/{partner}/housing-subsidies/2026-03/{step}", body, who, expect)


def test_a_housing_subsidy_passes_three_people_and_shows_apart_from_commission(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner)
    sale(api, contract, "R1", "10000.00", "2026-03-05")  # 3 % → 300
    problem(post(api, f"/v1/partners/{partner}/housing-subsidies", {"period": "2026-03", "amount": "800.00"},
                 SPECIALIST, None), 422, "no_payout_account")
    with_account(api, partner)
    prepared = post(api, f"/v1/partners/{partner}/housing-subsidies", {"period": "2026-03", "amount": "800.00"},
                    SPECIALIST).json()
    assert prepared["housing_subsidies"]["2026-03"]["status"] == "prepared"
    march = statement(api, partner, "2026-03")
    assert (march["housing_subsidy"], march["total_due"]) == ({"amount": "800.00", "status": "prepared"}, "300.00")
    problem(subsidy(api, partner, "approve", who=GM, expect=None), 422, "invalid_transition")
    both = ("spec-fin", ("channel_specialist", "finance"))
    other = approved_partner(api, "distributor")
    signed_contract(api, other)
    with_account(api, other)
    post(api, f"/v1/partners/{other}/housing-subsidies", {"period": "2026-03", "amount": "600.00"}, both)
    problem(subsidy(api, other, "verify", who=both, expect=None), 403, "segregation_of_duties")
    subsidy(api, partner, "verify")
    subsidy(api, partner, "approve", who=GM)
    paid = subsidy(api, partner, "pay", {"paid_on": "2026-04-10"}, FINANCE_2).json()
    assert {k: paid["housing_subsidies"]["2026-03"][k] for k in ("status", "account", "prepared_by", "verified_by",
                                                                 "approved_by", "paid_on")} == {
        "status": "paid", "account": "6222 0001", "prepared_by": SPECIALIST[0], "verified_by": FINANCE[0],
        "approved_by": GM[0], "paid_on": "2026-04-10"}
    march = statement(api, partner, "2026-03")
    assert (march["housing_subsidy"], march["total_due"]) == ({"amount": "800.00", "status": "paid"}, "300.00")
    assert statement(api, partner, "2026-04")["housing_subsidy"] is None
    listed = api.get("/v1/commissions/statements", partner_id=other).json()["items"]
    assert [(s["period"], s["housing_subsidy"]) for s in listed] == [
        ("2026-03", {"amount": "600.00", "status": "prepared"})]


def test_no_housing_subsidy_for_direct_stores_or_brokers(api):
    for kind, extra in (("direct_store", {"grade": "A"}), ("broker", {"commission_rate": "0.01"})):
        partner = approved_partner(api, kind, **extra)
        problem(post(api, f"/v1/partners/{partner}/housing-subsidies", {"period": "2026-03", "amount": "800.00"},
                     SPECIALIST, None), 422, "subsidy_not_applicable")
    problem(subsidy(api, "00000000-0000-0000-0000-000000000001", "verify", expect=None), 404, "not_found")
    unknown_period = approved_partner(api, "retailer")
    problem(subsidy(api, unknown_period, "verify", expect=None), 404, "not_found")


def test_openapi_documents_the_new_endpoints_with_examples(api):
    spec = api.client.get("/openapi.json").json()
    for path in ("/v1/partners/{partner_id}/remittances", "/v1/partners/{partner_id}/housing-subsidies",
                 "/v1/partners/{partner_id}/housing-subsidies/{period}/verify",
                 "/v1/partners/{partner_id}/housing-subsidies/{period}/approve",
                 "/v1/partners/{partner_id}/housing-subsidies/{period}/pay"):
        assert "422" in spec["paths"][path]["post"]["responses"], path
    schemas = spec["components"]["schemas"]
    assert schemas["Remittance"]["examples"] and schemas["Subsidy"]["examples"] and schemas["SubsidyPaid"]["examples"]
    assert {"remitted", "remittance_outstanding", "housing_subsidy"} <= set(schemas["Statement"]["properties"])
