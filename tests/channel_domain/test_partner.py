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
    partner = with_payout_account(active())
    with as_("spec-1", "channel_specialist"):
        partner.prepare_housing_subsidy("2026-03", "800.00")
        with refused("duplicate_subsidy"):
            partner.prepare_housing_subsidy("2026-03", "800.00")
        with refused("validation_error"):
            partner.prepare_housing_subsidy("2026-Q2", "800.00")
        for kind, extra in (("direct_store", {"grade": "A"}), ("broker", {"commission_rate": "0.01"})):
            with refused("subsidy_not_applicable"):
                with_payout_account(active(kind=kind, **extra) if kind != "broker" else approved(kind=kind, **extra)
                                    ).prepare_housing_subsidy("2026-03", "800.00")
        with refused("no_payout_account"):
            active(kind="retailer").prepare_housing_subsidy("2026-03", "800.00")


def test_housing_subsidy_passes_three_people_then_is_paid_to_the_approved_account():
    partner = with_payout_account(active(kind="distributor"))
    with as_("spec-1", "channel_specialist"):
        partner.prepare_housing_subsidy("2026-03", "800.00")
    with as_("gm-1", "general_manager"), refused("invalid_transition"):
        partner.approve_housing_subsidy("2026-03")  # never approved before finance verified it
    with as_("spec-1", "channel_specialist", "finance"), refused("segregation_of_duties"):
        partner.verify_housing_subsidy("2026-03")
    with as_("mgr-1", "channel_manager"), refused("role_required"):
        partner.verify_housing_subsidy("2026-03")
    with as_("fin-1", "finance"):
        with refused("invalid_transition"):
            partner.pay_housing_subsidy("2026-03", "2026-04-10")
        partner.verify_housing_subsidy("2026-03")
    with as_("fin-1", "finance", "general_manager"), refused("segregation_of_duties"):
        partner.approve_housing_subsidy("2026-03")
    with as_("spec-1", "channel_specialist", "general_manager"), refused("segregation_of_duties"):
        partner.approve_housing_subsidy("2026-03")
    with as_("gm-1", "general_manager"):
        partner.approve_housing_subsidy("2026-03")
        with refused("role_required"):
            partner.pay_housing_subsidy("2026-03", "2026-04-10")
        with refused("not_found"):
            partner.verify_housing_subsidy("2026-04")
    with as_("fin-2", "finance"):
        partner.pay_housing_subsidy("2026-03", "2026-04-10")
        with refused("invalid_transition"):
            partner.pay_housing_subsidy("2026-03", "2026-04-11")
    subsidy = partner.housing_subsidies["2026-03"]
    assert {k: subsidy[k] for k in ("amount", "account", "status", "prepared_by", "verified_by", "approved_by",
                                    "paid_on")} == {
        "amount": Decimal("800.00"), "account": "6222 0000 1111", "status": "paid", "prepared_by": "spec-1",
        "verified_by": "fin-1", "approved_by": "gm-1", "paid_on": date(2026, 4, 10)}
    paid = partner.collect_events()[-1]
    assert (type(paid).__name__, paid.account, paid.paid_on) == ("HousingSubsidyPaid", "6222 0000 1111",
                                                                  date(2026, 4, 10))


def test_a_subsidy_granted_in_one_step_before_reads_as_prepared_by_whoever_granted_it():
    partner = with_payout_account(active(kind="retailer"))
    with as_("old-clerk", "finance"):
        partner.trigger_event(Partner.HousingSubsidyGranted, period="2026-02", amount=Decimal("500.00"))
    replayed = None
    for stored in partner.collect_events():
        replayed = stored.mutate(replayed)
    subsidy = replayed.housing_subsidies["2026-02"]
    assert (subsidy["status"], subsidy["amount"], subsidy["prepared_by"]) == ("prepared", Decimal("500.00"), "old-clerk")
    with as_("old-clerk", "finance"), refused("segregation_of_duties"):
        replayed.verify_housing_subsidy("2026-02")


def test_finance_records_a_consignees_remittances_for_a_month():
    consignee = active(kind="consignee")
    with as_("fin-1", "finance"):
        consignee.record_remittance("2026-03", "5000.00", "2026-04-08")
        consignee.record_remittance("2026-03", "2040.00", "2026-04-14")
        with refused("validation_error"):
            consignee.record_remittance("2026-Q1", "1.00", "2026-04-14")
        with refused("validation_error"):
            consignee.record_remittance("2026-03", "0.00", "2026-04-14")
        with refused("not_a_consignee"):
            active(kind="retailer").record_remittance("2026-03", "1.00", "2026-04-14")
    with as_("mgr-1", "channel_manager"), refused("role_required"):
        consignee.record_remittance("2026-03", "1.00", "2026-04-14")
    assert consignee.remittances == {"2026-03": Decimal("7040.00")}
    received = consignee.collect_events()[-1]
    assert (type(received).__name__, received.period, received.amount, received.received_on, received.received_by) == (
        "RemittanceReceived", "2026-03", Decimal("2040.00"), date(2026, 4, 14), "fin-1")


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


# Recruiter and reviewer, trainings ---------------------------------------------------------


def test_a_recruiter_never_reviews_their_own_recruit_whatever_name_they_act_under():
    recruiter = uuid.uuid4()
    partner = apply(recruited_by=recruiter)
    with as_("li.na", "channel_manager"), refused("segregation_of_duties"):
        partner.review("approve", reviewer_id=recruiter)  # li.na's employee record recruited it
    assert partner.status == "applied"
    with as_("mgr-1", "channel_manager"):
        partner.review("approve", reviewer_id=uuid.uuid4())
    assert partner.status == "approved"


def test_a_training_records_who_trained_how_many_attended_and_passed():
    partner = approved()
    trainer = uuid.uuid4()
    with as_("spec-1", "channel_specialist"):
        training = partner.record_training("2026-04-10", "Product line 2026", trainer, 12, 10)
    event = partner.collect_events()[-1]
    assert type(event).__name__ == "TrainingRecorded"
    assert (event.training_id, event.held_on, event.topic, event.trainer_id, event.attendees, event.passed) == (
        training, date(2026, 4, 10), "Product line 2026", trainer, 12, 10)


@pytest.mark.parametrize(
    ("attendees", "passed"),
    [(10, 11), (-1, 0), (5, -1), (5, "3"), (5.0, 3), (True, 0)],
)
def test_training_head_counts_are_whole_numbers_and_passed_never_exceeds_attendees(attendees, passed):
    partner = approved()
    with as_("spec-1", "channel_specialist"), refused("validation_error"):
        partner.record_training("2026-04-10", "Pricing", uuid.uuid4(), attendees, passed)


def test_no_training_for_an_application_not_yet_approved():
    with as_("spec-1", "channel_specialist"), refused("invalid_transition"):
        apply().record_training("2026-04-10", "Pricing", uuid.uuid4(), 3, 3)
