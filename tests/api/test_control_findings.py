"""The findings domain.md §7 added with the controls (migration 0017), each raised when its
cause is in the log and not raised when it is not. Dates are worked out from the company's
today, so the tests mean the same whatever day they run; where a finding waits for 30 days
to pass, the events are recorded on a clock set back."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from channel_domain.aggregate import ChannelAggregate
from channel_domain.company_time import today
from channel_domain.contract import Contract
from channel_domain.partner import Partner
from channel_domain.values import add_months
from tests.api.flows import (
    FINANCE,
    FINANCE_2,
    GM,
    HR,
    MANAGER,
    SPECIALIST,
    amend,
    approved_partner,
    post,
    signed_contract,
)
from tests.api.test_audit_findings import findings
from tests.api.test_commissions import sale, with_account
from tests.channel_domain.helpers import as_


def first_of_month(months_from_now: int) -> date:
    return add_months(today().replace(day=1), months_from_now)


@contextmanager
def recorded_at(monkeypatch: pytest.MonkeyPatch, moment: datetime):
    """Events created in this block carry `moment` as their recorded time."""
    with monkeypatch.context() as clock:
        clock.setattr(ChannelAggregate.Event, "create_timestamp", staticmethod(lambda: moment))
        yield


def test_a_sale_or_deal_dated_while_the_partner_could_not_sell(api):
    app = api.department
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner)
    sale(api, contract, "BEFORE", "1000.00", "2026-02-20")
    post(api, f"/v1/partners/{partner}/suspend", {"reason": "audit", "on": "2026-03-01"})
    post(api, f"/v1/partners/{partner}/reinstate", {"reason": "cleared", "on": "2026-04-01"})
    sale(api, contract, "AFTER", "1000.00", "2026-04-01")  # the reinstatement's day sells again
    with as_("erp", "integration"):
        record = app.get(Contract, UUID(contract))
        record._sold(order_id="DURING", amount=Decimal("500.00"), sold_on=date(2026, 3, 31), product=None,
                     region=None, employee_id=None)  # behind the domain's back
        app.save(record)

    broker = post(api, "/v1/partners", {"kind": "broker", "name": "B", "commission_rate": "0.01"}, SPECIALIST,
                  201).json()["id"]
    post(api, f"/v1/partners/{broker}/review", {"decision": "approve"})
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D1", "amount": "100.00", "closed_on": "2026-05-30"},
         SPECIALIST)
    post(api, f"/v1/partners/{broker}/terminate", {"reason": "ended", "on": "2026-05-31"})
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "LAST", "amount": "100.00", "closed_on": "2026-05-31"},
         SPECIALIST)  # the termination day is its last day of business: no finding
    with as_("spec-1", "channel_specialist"):
        record = app.get(Partner, UUID(broker))
        record._deal_closed(deal_id="D2", amount=Decimal("100.00"), closed_on=date(2026, 6, 1))
        app.save(record)

    raised = findings(api, "sale_while_partner_inactive")
    assert sorted((f["subject_id"], f["detail"].split(" dated")[0]) for f in raised) == sorted(
        [(partner, "Contract.SaleRecorded DURING"), (broker, "Partner.DealClosed D2")])
    assert all(len(f["positions"]) == 2 for f in raised)  # the suspension or termination, and the sale


def test_a_consignee_month_still_outstanding_after_the_15th_of_the_next(api):
    partner = approved_partner(api, "consignee")
    starts = first_of_month(-3)
    contract = signed_contract(api, partner, starts_on=starts.isoformat(), ends_on=first_of_month(9).isoformat(),
                               commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    overdue, settled, not_yet_due = starts, first_of_month(-2), first_of_month(0)
    for order, month in (("O", overdue), ("S", settled), ("N", not_yet_due)):
        sale(api, contract, order, "1000.00", month.isoformat())  # each month owes 1000 − 100 − 20 = 880
    remit = f"/v1/partners/{partner}/remittances"
    post(api, remit, {"period": overdue.strftime("%Y-%m"), "amount": "800.00", "received_on": today().isoformat()},
         FINANCE)
    post(api, remit, {"period": settled.strftime("%Y-%m"), "amount": "880.00", "received_on": today().isoformat()},
         FINANCE)
    raised = findings(api, "remittance_overdue")
    assert [(f["subject_id"], f["detail"].split(":")[0]) for f in raised] == [(partner, overdue.strftime("%Y-%m"))]
    assert "80.00 of 880.00 still outstanding" in raised[0]["detail"]
    assert raised[0]["raised_on"] == (add_months(overdue, 1) + timedelta(days=15)).isoformat()


def test_an_active_distributor_with_a_month_without_an_inventory_report(api):
    signed = first_of_month(-4)
    months = [first_of_month(-3), first_of_month(-2), first_of_month(-1)]  # the full months since
    distributor = approved_partner(api, "distributor")
    signed_contract(api, distributor, starts_on=signed.isoformat(), ends_on=first_of_month(8).isoformat())
    reports = f"/v1/partners/{distributor}/inventory-reports"
    post(api, reports, {"as_of": (months[0] + timedelta(days=27)).isoformat(), "lines": [
        {"product": "P", "opening": 0, "received": 10, "sold": 4, "closing": 6}]}, SPECIALIST)
    post(api, reports, {"as_of": (months[2] + timedelta(days=27)).isoformat(), "lines": [
        {"product": "P", "opening": 6, "received": 0, "sold": 1, "closing": 5}]}, SPECIALIST)
    retailer = approved_partner(api, "retailer")  # reports no inventory: never raised
    signed_contract(api, retailer, starts_on=signed.isoformat(), ends_on=first_of_month(8).isoformat())

    raised = findings(api, "inventory_report_missing")
    assert [(f["subject_id"], f["detail"]) for f in raised] == [
        (distributor, f"no inventory report for {months[1].strftime('%Y-%m')}")]


def test_a_poor_evaluation_with_neither_plan_nor_termination_within_30_days(api, monkeypatch):
    forty_days_ago = datetime.now(UTC) - timedelta(days=40)
    ignored, planned, late, terminated, good = (approved_partner(api, "retailer") for _ in range(5))
    with recorded_at(monkeypatch, forty_days_ago):
        for partner, scores in ((ignored, {"sales": "40", "service": "70"}), (planned, {"sales": "50"}),
                                (late, {"sales": "59.99"}), (terminated, {"sales": "10"}),
                                (good, {"sales": "60", "service": "60"})):
            post(api, f"/v1/partners/{partner}/evaluations", {"period": "2026-Q3", "scores": scores})
    with recorded_at(monkeypatch, forty_days_ago + timedelta(days=29)):
        post(api, f"/v1/partners/{planned}/corrective-plans", {"actions": ["weekly visits"], "due_on": "2026-12-31"})
        post(api, f"/v1/partners/{terminated}/terminate", {"reason": "poor results", "on": "2026-10-31"})
    with recorded_at(monkeypatch, forty_days_ago + timedelta(days=31)):
        post(api, f"/v1/partners/{late}/corrective-plans", {"actions": ["weekly visits"], "due_on": "2026-12-31"})
    fresh = approved_partner(api, "retailer")  # poor today: its 30 days have not passed
    post(api, f"/v1/partners/{fresh}/evaluations", {"period": "2026-Q3", "scores": {"sales": "20"}})

    raised = findings(api, "poor_evaluation_unaddressed")
    assert sorted(f["subject_id"] for f in raised) == sorted([ignored, late])
    assert "averaged 55.00" in next(f["detail"] for f in raised if f["subject_id"] == ignored)


def test_a_labour_contract_ended_without_renewal_or_separation(api):
    hired_on = (today() - timedelta(days=500)).isoformat()  # a one-year contract, long over
    forgotten = post(api, "/v1/employees", {"name": "A", "role": "sales_rep", "hired_on": hired_on}, HR, 201).json()["id"]
    separated = post(api, "/v1/employees", {"name": "B", "role": "sales_rep", "hired_on": hired_on}, HR, 201).json()["id"]
    open_ended = post(api, "/v1/employees", {"name": "C", "role": "sales_rep", "hired_on": hired_on,
                                             "contract_months": 0}, HR, 201).json()["id"]
    ended_on = api.get(f"/v1/employees/{separated}").json()["contract_ends_on"]
    post(api, f"/v1/employees/{separated}/separation", {"on": ended_on, "reason": "contract_expired"}, HR)

    raised = findings(api, "separation_missing")
    assert [f["subject_id"] for f in raised] == [forgotten]
    assert open_ended not in str(raised)


def test_a_housing_subsidy_paid_to_an_account_changed_within_30_days(api, monkeypatch):
    recent, settled = approved_partner(api, "retailer"), approved_partner(api, "retailer")
    for partner in (recent, settled):
        signed_contract(api, partner)  # a housing subsidy goes to an active partner
    with recorded_at(monkeypatch, datetime.now(UTC) - timedelta(days=45)):
        with_account(api, settled)
    with_account(api, recent)
    for partner in (recent, settled):
        subsidies = f"/v1/partners/{partner}/housing-subsidies"
        post(api, subsidies, {"period": "2026-10", "amount": "1500.00"}, SPECIALIST)
        post(api, f"{subsidies}/2026-10/verify", None, FINANCE)
        post(api, f"{subsidies}/2026-10/approve", None, GM)
        post(api, f"{subsidies}/2026-10/pay", {"paid_on": today().isoformat()}, FINANCE_2)
    raised = findings(api, "account_changed_before_subsidy")
    assert [(f["subject_id"], len(f["positions"])) for f in raised] == [(recent, 2)]


def test_an_amendment_approved_by_who_requested_it(api):
    app = api.department
    partner = approved_partner(api, "retailer")
    honest, forged = signed_contract(api, partner), signed_contract(api, approved_partner(api, "retailer"))
    amend(api, honest, {"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.04"}})
    amendment = post(api, f"/v1/contracts/{forged}/amendments",
                     {"effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.04"}}).json()
    with as_("mgr-1", "channel_manager"):
        record = app.get(Contract, UUID(forged))
        record._amended(effective_on=date(2026, 3, 1), commission={"type": "flat", "rate": "0.04"}, reason=None,
                        amendment_id=UUID(amendment["amendment_id"]), approved_by="mgr-1",
                        preview_digest="unseen")  # behind the domain's back
        app.save(record)
    raised = [f for f in findings(api, "approved_by_requester") if f["detail"].startswith("Contract.Amended")]
    assert [f["subject_id"] for f in raised] == [forged]


def test_a_sales_agent_rate_is_compared_with_the_enterprise_rates_of_the_same_days(api):
    agent = approved_partner(api, "enterprise_agent", region="Zhejiang")
    agency = signed_contract(api, agent, territory="Zhejiang", commission={"type": "flat", "rate": "0.05"})
    amend(api, agency, {"effective_on": "2026-07-01", "commission": {"type": "flat", "rate": "0.03"}})
    # January to March the enterprise agent earns 5 %: a sales agent's 4 % is below it.
    below = signed_contract(api, approved_partner(api, "sales_agent"), ends_on="2026-03-31",
                            commission={"type": "flat", "rate": "0.04"})
    # From July it earns 3 %: 4 % then is not below, and needed its justification.
    above = signed_contract(api, approved_partner(api, "sales_agent"), starts_on="2026-07-01",
                            commission={"type": "flat", "rate": "0.04"}, rate_justification="new market")
    raised = findings(api, "sales_agent_rate_not_below_enterprise_agents")
    assert [f["subject_id"] for f in raised] == [above]
    assert below not in str(raised)
    assert "enterprise agent rate 0.03" in raised[0]["detail"]
