"""Refusal order (api.md, Precise points): role and segregation of duties (403), then existence
(404), then business rules (422). Who may take a step is settled before the state of what the
step acts on: someone who would be refused anyway hears why they may not act, not that the
record is in the wrong state. Where the step's record must be found to know who requested or
prepared it, an unknown one is 404 first."""

from __future__ import annotations

import uuid

from channel_domain.contract import Contract
from channel_domain.partner import Partner
from channel_domain.sales_target import SalesTarget
from tests.channel_domain.helpers import as_, on_day, refused
from tests.channel_domain.test_contract import draft
from tests.channel_domain.test_partner import active, applied_without_archive, with_payout_account
from tests.channel_domain.test_sales_target import set_target

# Money paid out: payouts and housing subsidies --------------------------------------------


def test_the_preparer_verifying_a_subsidy_already_verified_hears_segregation_of_duties():
    partner = with_payout_account(active(kind="retailer"))
    with as_("pat", "channel_specialist", "finance"):
        partner.prepare_housing_subsidy("2026-03", "800.00")
    with as_("fin-1", "finance"):
        partner.verify_housing_subsidy("2026-03")
    with as_("pat", "channel_specialist", "finance"), refused("segregation_of_duties"):
        partner.verify_housing_subsidy("2026-03")


def test_the_preparer_approving_unverified_money_hears_segregation_of_duties():
    partner = with_payout_account(active())
    with as_("boss", "channel_manager", "general_manager"):
        partner.prepare_payout("2026-03", "10.00")
        with refused("segregation_of_duties"):
            partner.approve_payout("2026-03")
    # The same for a subsidy: its preparer, also a general manager, approves it before finance.
    with as_("boss", "channel_manager", "general_manager"):
        partner.prepare_housing_subsidy("2026-03", "800.00")
        with refused("segregation_of_duties"):
            partner.approve_housing_subsidy("2026-03")


def test_a_step_without_its_role_is_refused_whatever_state_the_money_is_in():
    partner = with_payout_account(active())
    with as_("spec-1", "channel_specialist"):
        partner.prepare_payout("2026-03", "10.00")
    with as_("fin-1", "finance"):
        partner.verify_payout("2026-03")
    with as_("mgr-1", "channel_manager"), refused("role_required"):
        partner.verify_payout("2026-03")  # verified already, but a manager never verifies
    with as_("gm-1", "general_manager"), refused("role_required"):
        partner.pay_payout("2026-03", "2026-04-10")  # not approved yet, but only finance pays


def test_money_that_was_never_prepared_is_not_found_even_for_who_may_not_act_on_it():
    partner = with_payout_account(active())
    with as_("spec-1", "channel_specialist"):
        partner.prepare_payout("2026-03", "10.00")
    with as_("spec-1", "channel_specialist", "finance", "general_manager"):
        for step in (partner.verify_payout, partner.approve_payout, partner.verify_housing_subsidy):
            with refused("not_found"):
                step("2026-04")


# Payout-account changes and deposit refunds -------------------------------------------------


def test_the_requester_deciding_a_change_already_decided_hears_segregation_of_duties():
    partner = active(kind="retailer")
    with as_("pat", "channel_specialist", "finance"):
        change = partner.request_payout_account_change("6222 0000 1111")
    with as_("fin-1", "finance"):
        partner.reject_payout_account_change(change, "no")
    with as_("pat", "channel_specialist", "finance"):
        with refused("segregation_of_duties"):
            partner.approve_payout_account_change(change)
        with refused("segregation_of_duties"):
            partner.reject_payout_account_change(change, "again")
        with refused("not_found"):
            partner.approve_payout_account_change(uuid.uuid4())
    with as_("fin-2", "finance"), refused("invalid_transition"):
        partner.approve_payout_account_change(change)


def test_whoever_terminated_hears_segregation_of_duties_before_the_refund_is_weighed():
    partner = active()
    with as_("fin-1", "finance"):
        partner.pay_deposit("5000.00", "2026-01-10")
    with as_("boss", "channel_manager", "finance"):
        partner.terminate("contract ended", "2026-12-31")
        with refused("segregation_of_duties"):
            partner.refund_deposit("5000.01", "2027-01-10")  # more than was paid, too
    with as_("fin-1", "finance"), refused("refund_exceeds_deposit"):
        partner.refund_deposit("5000.01", "2027-01-10")


def test_remittances_need_finance_whatever_state_the_partner_is_in():
    consignee = applied_without_archive(kind="consignee", region=None)  # takes no remittance yet
    with as_("mgr-1", "channel_manager"), refused("role_required"):
        consignee.record_remittance("2026-03", "1.00", "2026-04-14")
    with as_("fin-1", "finance"), refused("invalid_transition"):
        consignee.record_remittance("2026-03", "1.00", "2026-04-14")


# Partner review and contract approval ---------------------------------------------------------


def test_the_applicant_or_recruiter_reviewing_a_decided_application_hears_segregation_of_duties():
    recruiter = uuid.uuid4()
    with as_("spec-1", "channel_specialist", "channel_manager"):
        partner = Partner.apply_for_partnership(kind="retailer", name="Corner Shop", recruited_by=recruiter)
    with as_("mgr-1", "channel_manager"):
        partner.review("reject", "incomplete")
    with as_("spec-1", "channel_specialist", "channel_manager"), refused("segregation_of_duties"):
        partner.review("approve")
    with as_("li.na", "channel_manager"), refused("segregation_of_duties"):
        partner.review("approve", reviewer_id=recruiter)
    with as_("mgr-2", "channel_manager"), refused("invalid_transition"):
        partner.review("approve")


def test_the_drafter_approving_a_contract_not_awaiting_approval_hears_segregation_of_duties():
    contract: Contract = draft()
    with as_("mgr-1", "channel_manager", "general_manager"), refused("segregation_of_duties"):
        contract.approve()  # not even submitted
    with as_("mgr-1", "channel_manager"):
        contract.submit()
    with as_("gm-1", "general_manager"):
        contract.approve()
    with as_("mgr-1", "channel_manager", "general_manager"), refused("segregation_of_duties"):
        contract.approve()  # approved already
    with as_("gm-2", "general_manager"), refused("invalid_transition"):
        contract.approve()


# Targets -------------------------------------------------------------------------------------


def test_the_requester_or_setter_approving_a_decided_revision_hears_segregation_of_duties():
    target: SalesTarget = set_target()
    with as_("mgr-2", "channel_manager"):
        revision = target.request_revision("1500000.00", "new product line")
    with as_("gm-1", "general_manager"):
        target.approve_revision(revision)
    with as_("mgr-2", "channel_manager"), refused("segregation_of_duties"):
        target.approve_revision(revision)
    with as_("mgr-1", "channel_manager"), refused("segregation_of_duties"):
        target.approve_revision(revision)  # mgr-1 set the target
    with as_("mgr-1", "channel_manager"), refused("not_found"):
        target.approve_revision(uuid.uuid4())
    with as_("gm-2", "general_manager"), refused("invalid_transition"):
        target.approve_revision(revision)


def test_a_revision_of_a_closed_target_is_refused_for_segregation_of_duties_first():
    target: SalesTarget = set_target(period="2026-03", kpis={"sales_revenue": "1"})
    with as_("mgr-2", "channel_manager"):
        revision = target.request_revision("1300000.00", "more")
    with on_day("mgr-1", "2026-04-02", "channel_manager"):
        target.close()
    with as_("mgr-2", "channel_manager"), refused("segregation_of_duties"):
        target.approve_revision(revision)
    with as_("gm-1", "general_manager"), refused("invalid_transition"):
        target.approve_revision(revision)


def test_whoever_entered_the_results_or_is_the_assignee_cannot_confirm_whatever_the_state():
    me = uuid.uuid4()
    target: SalesTarget = set_target(period="2026-03", assignee_type="employee", assignee_id=str(me))
    with on_day("li.na", "2026-03-31", "channel_manager"), refused("segregation_of_duties"):
        target.confirm_closing(confirmer_id=me)  # nothing entered yet, and it is li.na's own target
    with on_day("mgr-2", "2026-04-02", "channel_manager"):
        target.close({"partner_satisfaction": "0.9"})
    with on_day("mgr-1", "2026-04-03", "channel_manager"):
        target.confirm_closing()
    with on_day("mgr-2", "2026-04-04", "channel_manager"), refused("segregation_of_duties"):
        target.confirm_closing()  # closed already; mgr-2 entered the results
    with on_day("mgr-3", "2026-04-04", "channel_manager"), refused("invalid_transition"):
        target.confirm_closing()
