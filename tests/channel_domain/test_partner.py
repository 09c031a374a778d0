"""Partner rules: the seven kinds, review by someone other than the applicant, lifecycle,
complaints, deposit, payout account, subsidies, broker deals and the four-hand payout."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from channel_domain.partner import Partner
from tests.channel_domain.helpers import as_, refused


def apply(**overrides) -> Partner:
    """An application with its archive on file (licence and legal representative)."""
    partner = applied_without_archive(**overrides)
    with as_("spec-1", "channel_specialist"):
        partner.record_document("business_licence", "91330100MA2B3C4D5E")
        partner.record_document("legal_representative_id", "330102198001011234")
    return partner


def applied_without_archive(**overrides) -> Partner:
    fields = {"kind": "enterprise_agent", "name": "Hangzhou Trading", "region": "Zhejiang"}
    fields.update(overrides)
    with as_("spec-1", "channel_specialist"):
        return Partner.apply_for_partnership(**fields)


def approved(**overrides) -> Partner:
    partner = apply(**overrides)
    with as_("mgr-1", "channel_manager"):
        partner.review("approve")
    return partner


def active(**overrides) -> Partner:
    partner = approved(**overrides)
    with as_("mgr-1", "channel_manager"):
        partner.activate_on_first_contract(uuid.uuid4(), date(2026, 1, 1))
    return partner


def with_payout_account(partner: Partner) -> Partner:
    with as_("spec-1", "channel_specialist"):
        change = partner.request_payout_account_change("6222 0000 1111")
    with as_("fin-1", "finance"):
        partner.approve_payout_account_change(change)
    return partner


@pytest.mark.parametrize("kind", ["enterprise_agent", "sales_agent", "consignee", "distributor", "retailer"])
def test_kinds_without_grade_or_own_rate(kind):
    assert apply(kind=kind).status == "applied"
    with refused("validation_error"):
        apply(kind=kind, grade="A")
    with refused("validation_error"):
        apply(kind=kind, commission_rate="0.01")


def test_unknown_kind_is_refused():
    with refused("validation_error"):
        apply(kind="franchise")


@pytest.mark.parametrize(("grade", "minimum"), [("A", 5), ("B", 5), ("C", 2), ("D", 2)])
def test_direct_store_is_graded_and_has_a_monthly_visit_minimum(grade, minimum):
    assert apply(kind="direct_store", grade=grade).minimum_monthly_visits == minimum


def test_direct_store_without_a_grade_is_refused():
    with refused("validation_error"):
        apply(kind="direct_store")
    with refused("validation_error"):
        apply(kind="direct_store", grade="E")


def test_broker_needs_its_rate_and_becomes_active_on_approval():
    with refused("validation_error"):
        apply(kind="broker")
    with refused("validation_error"):
        apply(kind="broker", commission_rate=0.01)  # a float is refused, never rounded
    broker = approved(kind="broker", commission_rate="0.01")
    assert broker.status == "active"
    assert broker.commission_rate == Decimal("0.01")
    with refused("broker_has_no_contract"):
        broker.require_contractable()


def test_applicant_cannot_review_their_own_application():
    partner = apply()
    with as_("spec-1", "channel_specialist", "channel_manager"), refused("segregation_of_duties"):
        partner.review("approve")


def test_rejection_is_final():
    partner = apply()
    with as_("mgr-1", "channel_manager"):
        partner.review("reject", "no showroom")
        with refused("invalid_transition"):
            partner.review("approve")
        with refused("partner_not_eligible"):
            partner.require_contractable()


def test_lifecycle_first_contract_activates_then_suspend_reinstate_terminate():
    partner = approved()
    assert partner.status == "approved"
    with as_("mgr-1", "channel_manager"):
        with refused("invalid_transition"):
            partner.suspend("late reports")  # only an active partner is suspended
        partner.activate_on_first_contract(uuid.uuid4(), date(2026, 1, 1))
        assert partner.status == "active"
        partner.suspend("late reports")
        assert partner.status == "suspended"
        partner.reinstate("reports caught up")
        partner.terminate("poor results", "2026-09-30")
        assert partner.status == "terminated"
        with refused("invalid_transition"):
            partner.reinstate("changed our mind")


def test_complaints_open_escalate_and_resolve():
    partner = active()
    with as_("spec-1", "channel_specialist"):
        minor = partner.open_complaint("late delivery")
        major = partner.open_complaint("price dispute", "customer threatens to sue")
    with as_("mgr-1", "channel_manager"):
        partner.resolve_complaint(minor, "apologised, refunded shipping")
        with refused("invalid_transition"):
            partner.escalate_complaint(minor, "too late")
        partner.escalate_complaint(major, "reported to the director")
        partner.resolve_complaint(major, "settled by the director")
        with refused("not_found"):
            partner.resolve_complaint(uuid.uuid4(), "no such complaint")
    assert partner.complaints == {str(minor): "resolved", str(major): "resolved"}


def test_deposit_is_refunded_only_after_termination_and_never_above_what_was_paid():
    partner = active()
    with as_("fin-1", "finance"):
        partner.pay_deposit("5000.00", "2026-01-10")
        with refused("partner_not_terminated"):
            partner.refund_deposit("5000.00", "2026-02-01")
    with as_("mgr-1", "channel_manager"):
        partner.terminate("contract ended", "2026-12-31")
    with as_("fin-1", "finance"):
        with refused("refund_exceeds_deposit"):
            partner.refund_deposit("5000.01", "2027-01-10")
        partner.refund_deposit("3000.00", "2027-01-10")
        with refused("refund_exceeds_deposit"):
            partner.refund_deposit("2000.01", "2027-01-11")
        partner.refund_deposit("2000.00", "2027-01-11")


def test_whoever_terminated_the_partnership_cannot_also_release_the_deposit():
    partner = active()
    with as_("fin-1", "finance"):
        partner.pay_deposit("5000.00", "2026-01-10")
    with as_("boss", "channel_manager", "finance"):
        partner.terminate("contract ended", "2026-12-31")
        with refused("segregation_of_duties"):
            partner.refund_deposit("5000.00", "2027-01-10")


def test_payout_account_change_needs_someone_else_to_approve():
    partner = active()
    with as_("spec-1", "channel_specialist", "finance"):
        change = partner.request_payout_account_change("6222 1234")
        with refused("segregation_of_duties"):
            partner.approve_payout_account_change(change)
    assert partner.payout_account is None
    with as_("fin-1", "finance"):
        partner.approve_payout_account_change(change)
        with refused("invalid_transition"):
            partner.approve_payout_account_change(change)
    assert partner.payout_account == "6222 1234"


def test_housing_subsidy_goes_to_social_channel_agents_once_a_month():
    partner = active()
    with as_("fin-1", "finance"):
        partner.grant_housing_subsidy("2026-03", "800.00")
        with refused("duplicate_subsidy"):
            partner.grant_housing_subsidy("2026-03", "800.00")
        with refused("validation_error"):
            partner.grant_housing_subsidy("2026-Q2", "800.00")
        with refused("subsidy_not_applicable"):
            active(kind="direct_store", grade="A").grant_housing_subsidy("2026-03", "800.00")


def test_only_active_brokers_record_deals_each_once():
    broker = approved(kind="broker", commission_rate="0.01")
    with as_("int-1", "integration"):
        broker.record_deal("D-1", "20000.00", "2026-03-02")
        with refused("duplicate_deal"):
            broker.record_deal("D-1", "20000.00", "2026-03-02")
        with refused("not_a_broker"):
            active().record_deal("D-2", "100.00", "2026-03-02")


def test_payout_passes_four_hands_in_order():
    partner = with_payout_account(active())
    with as_("spec-1", "channel_specialist"):
        partner.prepare_payout("2026-03", "4350.00")
        with refused("duplicate_payout"):
            partner.prepare_payout("2026-03", "4350.00")
    with as_("gm-1", "general_manager"), refused("invalid_transition"):
        partner.approve_payout("2026-03")  # never approved before finance verified it
    with as_("spec-1", "channel_specialist", "finance"), refused("segregation_of_duties"):
        partner.verify_payout("2026-03")
    with as_("mgr-1", "channel_manager"), refused("role_required"):
        partner.verify_payout("2026-03")
    with as_("fin-1", "finance"):
        partner.verify_payout("2026-03")
        with refused("role_required"):
            partner.approve_payout("2026-03")
    with as_("fin-1", "finance", "general_manager"), refused("segregation_of_duties"):
        partner.approve_payout("2026-03")
    with as_("gm-1", "general_manager"):
        partner.approve_payout("2026-03")
    with as_("fin-2", "finance"):
        partner.pay_payout("2026-03", "2026-04-10")
    payout = partner.payouts["2026-03"]
    assert (payout["status"], payout["prepared_by"], payout["verified_by"], payout["approved_by"]) == (
        "paid", "spec-1", "fin-1", "gm-1"
    )


def test_payout_needs_an_approved_account():
    partner = active()
    with as_("spec-1", "channel_specialist"), refused("no_payout_account"):
        partner.prepare_payout("2026-03", "100.00")


def test_evaluations_score_each_kpi_from_0_to_100():
    partner = active()
    with as_("mgr-1", "channel_manager"):
        with refused("validation_error"):
            partner.evaluate("2026-Q1", {"sales_revenue": 120})
        with refused("validation_error"):
            partner.evaluate("2026-Q1", {})
        partner.evaluate("2026-Q1", {"sales_revenue": 82, "partner_satisfaction": "90.5"})
        with refused("duplicate_evaluation"):
            partner.evaluate("2026-Q1", {"sales_revenue": 50})


def test_visits_are_recorded_with_date_and_employee():
    store = active(kind="direct_store", grade="B")
    employee = uuid.uuid4()
    with as_("spec-1", "channel_specialist"):
        store.record_visit("2026-03-03", employee, "checked shelf display")
    visit = store.collect_events()[-1]
    assert (type(visit).__name__, visit.employee_id, str(visit.visited_on)) == ("Visited", employee, "2026-03-03")
