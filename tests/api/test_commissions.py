"""GET /v1/commissions/statements with figures worked by hand (domain.md §6).

Tiered terms throughout: 3 % up to 100 000.00 of the month's sales (returns do not move it), 4.5 % above.
"""

from __future__ import annotations

from datetime import UTC, datetime

from channel_domain.company_time import recorded_month
from tests.api.flows import (
    AUDITOR,
    ERP,
    FINANCE,
    FINANCE_2,
    GM,
    MANAGER,
    REPORTING,
    SPECIALIST,
    amend,
    approved_partner,
    post,
    problem,
    signed_contract,
)
from api.routes.commissions import Statement
from tests.api.test_read_side import catch_up

TIERED = {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]}


def statement(api, partner: str, period: str, who=REPORTING, **params) -> dict:
    catch_up(api)
    response = api.get(f"/v1/commissions/statements/{partner}/{period}", actor=who[0], roles=who[1], **params)
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Projection-Position"]) > 0
    # The endpoint answers without re-validating its body: hold it to the documented shape here.
    # Unset: the fields only ?proofs=true answers (proof_checkpoint, inclusion_proof) stay absent.
    return Statement.model_validate(response.json(), strict=True).model_dump(exclude_unset=True) | response.json()


def sale(api, contract: str, order: str, amount: str, day: str) -> None:
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": order, "amount": amount, "sold_on": day}, ERP)


def give_back(api, contract: str, order: str, amount: str, day: str) -> None:
    post(api, f"/v1/contracts/{contract}/returns", {"order_id": order, "amount": amount, "returned_on": day}, ERP)


def pay(api, partner: str, period: str, amount: str) -> None:
    post(api, f"/v1/partners/{partner}/payouts", {"period": period, "amount": amount}, SPECIALIST)
    post(api, f"/v1/partners/{partner}/payouts/{period}/verify", None, FINANCE)
    post(api, f"/v1/partners/{partner}/payouts/{period}/approve", None, GM)
    post(api, f"/v1/partners/{partner}/payouts/{period}/pay", {"paid_on": "2026-04-10"}, FINANCE_2)


def with_account(api, partner: str) -> None:
    change = post(api, f"/v1/partners/{partner}/payout-account/changes", {"account": "6222 0001"}, SPECIALIST).json()
    post(api, f"/v1/partners/{partner}/payout-account/changes/{change['change_id']}/approve", None, FINANCE)


def money_lines(body: dict) -> list[tuple]:
    return [(line["kind"], line["order_id"], line["amount"], line["rate"], line["commission"]) for line in body["lines"]]


def test_a_sale_crossing_the_tier_boundary_earns_each_slice_at_its_rate(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission=TIERED)
    sale(api, contract, "A", "60000.00", "2026-03-02")
    sale(api, contract, "B", "70000.00", "2026-03-09")
    body = statement(api, partner, "2026-03")
    assert money_lines(body) == [
        ("sale", "A", "60000.00", "0.03", "1800.00"),
        ("sale", "B", "40000.00", "0.03", "1200.00"),
        ("sale", "B", "30000.00", "0.045", "1350.00"),
    ]
    assert {k: body[k] for k in ("gross_sales", "returns", "net_sales", "commission", "adjustments", "carried_in",
                                 "total_due", "carried_out", "payout_status")} == {
        "gross_sales": "130000.00", "returns": "0.00", "net_sales": "130000.00", "commission": "4350.00",
        "adjustments": "0.00", "carried_in": "0.00", "total_due": "4350.00", "carried_out": "0.00",
        "payout_status": "none"}
    assert body["fees"] is None and body["remittance_due"] is None  # not a consignee
    history = api.get(f"/v1/contracts/{contract}/history").json()["items"]
    sold_b = next(item for item in history if item["data"].get("order_id") == "B")
    assert {line["position"] for line in body["lines"][1:]} == {sold_b["position"]}  # provenance


def test_a_return_after_payout_is_clawed_back_in_its_month_and_the_deficit_carried_forward(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission=TIERED)
    with_account(api, partner)
    sale(api, contract, "A", "60000.00", "2026-03-02")
    sale(api, contract, "B", "70000.00", "2026-03-09")
    catch_up(api)
    pay(api, partner, "2026-03", "4350.00")
    give_back(api, contract, "B", "35000.00", "2026-04-03")
    sale(api, contract, "C", "60000.00", "2026-05-05")

    march = statement(api, partner, "2026-03")
    assert (march["total_due"], march["payout_status"], march["payout_amount"]) == ("4350.00", "paid", "4350.00")
    april = statement(api, partner, "2026-04")
    # B's top 30 000 earned 4.5 % (1 350), the next 5 000 3 % (150).
    assert money_lines(april) == [("return", "B", "-30000.00", "0.045", "-1350.00"),
                                  ("return", "B", "-5000.00", "0.03", "-150.00")]
    assert (april["returns"], april["net_sales"], april["commission"], april["total_due"], april["carried_out"]) == (
        "35000.00", "-35000.00", "-1500.00", "0.00", "-1500.00")
    may = statement(api, partner, "2026-05")
    # A new month starts at the first tier again: 60 000 × 3 % = 1 800, less the 1 500 carried in.
    assert (may["commission"], may["carried_in"], may["total_due"], may["carried_out"]) == (
        "1800.00", "-1500.00", "300.00", "0.00")
    assert statement(api, partner, "2026-06")["carried_in"] == "0.00"


def test_a_retroactive_amendment_is_an_adjustment_in_the_month_it_is_recorded(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.05"})
    sale(api, contract, "J", "10000.00", "2026-01-10")
    sale(api, contract, "F", "20000.00", "2026-02-10")
    catch_up(api)
    before = datetime.now(UTC).isoformat()
    amend(api, contract, {"effective_on": "2026-02-01", "commission": {"type": "flat", "rate": "0.06"},
                          "reason": "new scale"})
    amended = api.get(f"/v1/contracts/{contract}/history").json()["items"][-1]
    recorded_in = recorded_month(datetime.fromisoformat(amended["recorded_at"]))

    february = statement(api, partner, "2026-02")
    assert (february["commission"], february["adjustments"]) == ("1000.00", "0.00")  # never rewritten
    booked = statement(api, partner, recorded_in)
    assert [(line["kind"], line["corrects_period"], line["commission"], line["position"])
            for line in booked["lines"] if line["kind"] == "adjustment"] == [
        ("adjustment", "2026-02", "200.00", amended["position"])]  # 20 000 × 1 %
    assert booked["adjustments"] == "200.00"
    assert statement(api, partner, recorded_in, as_known_at=before)["adjustments"] == "0.00"
    assert statement(api, partner, "2026-01")["commission"] == "500.00"  # before the effective date


def test_a_statement_reads_as_it_stood_at_a_past_time(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.05"})
    sale(api, contract, "A", "20000.00", "2026-02-10")
    catch_up(api)
    then = datetime.now(UTC).isoformat()
    sale(api, contract, "B", "10000.00", "2026-02-12")  # a late report for February
    assert statement(api, partner, "2026-02")["total_due"] == "1500.00"
    past = statement(api, partner, "2026-02", as_known_at=then)
    assert (past["total_due"], [line["order_id"] for line in past["lines"]]) == ("1000.00", ["A"])
    naive = api.get(f"/v1/commissions/statements/{partner}/2026-02", as_known_at="2026-02-01T00:00:00")
    problem(naive, 422, "validation_error")


def test_consignee_remits_proceeds_less_commission_and_fees(api):
    partner = approved_partner(api, "consignee")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    sale(api, contract, "C1", "10000.00", "2026-03-05")
    give_back(api, contract, "C1", "2000.00", "2026-03-20")
    body = statement(api, partner, "2026-03")
    # proceeds 8 000; commission 1 000 − 200 = 800; fees 2 % × 8 000 = 160; remittance 8 000 − 800 − 160.
    assert (body["net_sales"], body["commission"], body["fees"], body["remittance_due"]) == (
        "8000.00", "800.00", "160.00", "7040.00")


def test_a_broker_earns_its_own_rate_on_each_deal(api):
    broker = approved_partner(api, "broker", commission_rate="0.01")
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-1", "amount": "50000.00", "closed_on": "2026-03-10"}, ERP)
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-2", "amount": "1234.50", "closed_on": "2026-04-01"}, ERP)
    march = statement(api, broker, "2026-03")
    assert money_lines(march) == [("deal", "D-1", "50000.00", "0.01", "500.00")]
    assert (march["gross_sales"], march["total_due"]) == ("50000.00", "500.00")
    assert statement(api, broker, "2026-04")["total_due"] == "12.35"  # 12.345 rounds half up


def test_a_payout_for_another_amount_than_the_total_due_is_a_finding(api):
    right, wrong = approved_partner(api, "retailer"), approved_partner(api, "retailer")
    for partner in (right, wrong):
        with_account(api, partner)
        sale(api, signed_contract(api, partner), "O", "10000.00", "2026-03-02")  # 3 % → 300
    catch_up(api)
    post(api, f"/v1/partners/{right}/payouts", {"period": "2026-03", "amount": "300.00"}, SPECIALIST)
    post(api, f"/v1/partners/{wrong}/payouts", {"period": "2026-03", "amount": "350.00"}, SPECIALIST)
    catch_up(api)
    raised = api.get("/v1/audit/findings", kind="payout_not_total_due").json()["items"]
    assert [(f["subject_id"], f["detail"]) for f in raised] == [
        (wrong, "payout for 2026-03 prepared for 350.00; the statement's total due was 300.00")]
    assert statement(api, right, "2026-03")["payout_status"] == "prepared"


def test_statements_are_listed_by_month_and_partner_and_paginated(api):
    partners = sorted(approved_partner(api, "retailer") for _ in range(3))
    for partner in partners:
        contract = signed_contract(api, partner)
        sale(api, contract, "X", "100.00", "2026-03-02")
        sale(api, contract, "Y", "100.00", "2026-04-02")
    catch_up(api)
    seen, cursor = [], None
    while True:
        page = api.get("/v1/commissions/statements", actor=MANAGER[0], roles=MANAGER[1], limit=2,
                       **({"cursor": cursor} if cursor else {})).json()
        seen += [(item["period"], item["partner_id"], item["total_due"]) for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(period, p, "3.00") for period in ("2026-03", "2026-04") for p in partners]
    one = api.get("/v1/commissions/statements", period="2026-04", partner_id=partners[1]).json()["items"]
    assert [(s["period"], s["partner_id"]) for s in one] == [("2026-04", partners[1])]


def test_statements_refuse_what_they_cannot_answer(api):
    partner = approved_partner(api, "retailer")
    catch_up(api)
    problem(api.get(f"/v1/commissions/statements/{partner}/2026-Q1"), 422, "validation_error")
    problem(api.get("/v1/commissions/statements/00000000-0000-0000-0000-000000000001/2026-03"), 404, "not_found")
    denied = api.get(f"/v1/commissions/statements/{partner}/2026-03", actor=ERP[0], roles=ERP[1])
    assert denied.status_code == 403
    assert statement(api, partner, "2026-03", who=AUDITOR)["total_due"] == "0.00"
    assert statement(api, partner, "2026-03", who=FINANCE)["lines"] == []
