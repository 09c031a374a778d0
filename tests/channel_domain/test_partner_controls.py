"""What a partner's lifecycle stops, its archive, corrective plans, inventory (PSI) reports
and the rejection of a payout-account change (domain.md §1, issue 13 items 8 and 15)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from channel_domain.employee import Employee
from channel_domain.partner import Partner
from tests.channel_domain.helpers import as_, on_day, refused
from tests.channel_domain.test_partner import active, applied_without_archive


def broker() -> Partner:
    with as_("spec-1", "channel_specialist"):
        partner = Partner.apply_for_partnership(kind="broker", name="Li Wei", commission_rate="0.01")
    with as_("mgr-1", "channel_manager"):
        partner.review("approve")
    return partner


# Lifecycle, by date ----------------------------------------------------------------------


def test_a_deal_dated_while_suspended_is_refused_one_dated_before_is_taken_during_it():
    partner = broker()
    with as_("mgr-1", "channel_manager"):
        partner.suspend("late reports", "2026-04-10")
        partner.reinstate("reports caught up", "2026-04-20")
    with as_("erp", "integration"):
        partner.record_deal("D-1", "100.00", "2026-04-09")  # the day before the suspension
        for day in ("2026-04-10", "2026-04-19"):  # its first day and the day before the reinstatement
            with refused("partner_not_active"):
                partner.record_deal(f"D-{day}", "100.00", day)
        partner.record_deal("D-2", "100.00", "2026-04-20")  # reinstated that day
    assert set(partner.deals) == {"D-1", "D-2"}


def test_a_suspended_partner_takes_a_deal_dated_before_the_suspension():
    partner = broker()
    with as_("mgr-1", "channel_manager"):
        partner.suspend("late reports", "2026-04-10")
    with as_("erp", "integration"):
        partner.record_deal("D-1", "100.00", "2026-04-01")
        with refused("partner_not_active"):
            partner.record_deal("D-2", "100.00", "2026-05-01")  # still suspended: no end yet


def test_the_termination_day_still_does_business_a_deal_dated_after_it_is_refused():
    partner = broker()
    with as_("mgr-1", "channel_manager"):
        partner.terminate("fraud", "2026-06-01")
    with as_("erp", "integration"):
        partner.record_deal("D-1", "100.00", "2026-05-31")
        partner.record_deal("D-2", "100.00", "2026-06-01")  # api.md: refused only after the termination's on
        with refused("partner_not_active"):
            partner.record_deal("D-3", "100.00", "2026-06-02")
    assert partner.is_active_on(date(2026, 6, 1)) and not partner.is_active_on(date(2026, 6, 2))


def test_suspension_and_reinstatement_default_to_today():
    partner = active()
    with on_day("mgr-1", "2026-04-10", "channel_manager"):
        partner.suspend("late reports")
    with on_day("mgr-1", "2026-04-15", "channel_manager"):
        partner.reinstate("caught up")
    assert partner.suspensions == [[date(2026, 4, 10), date(2026, 4, 15)]]


def test_a_reinstatement_before_its_suspension_or_a_suspension_inside_an_earlier_one_is_refused():
    partner = active()
    with as_("mgr-1", "channel_manager"):
        partner.suspend("late reports", "2026-04-10")
        with refused("validation_error"):
            partner.reinstate("caught up", "2026-04-09")
        partner.reinstate("caught up", "2026-04-15")
        with refused("validation_error"):
            partner.suspend("again", "2026-04-14")


def _as_recorded_before_on_existed(app, event) -> object:
    """The event stored as class version 1 wrote it: no `on`, no class_version."""
    stored = app.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    state.pop("on")
    state.pop("class_version", None)
    old = type(stored)(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())
    return app.mapper.to_domain_event(old)


def test_an_old_suspension_without_a_date_reads_as_the_day_it_was_recorded_in_beijing(app):
    partner = active()
    # Recorded at 20:30 UTC on 9 April: already 10 April in Beijing.
    with as_("mgr-1", "channel_manager"):
        partner.suspend("late reports", "2026-04-01")
        partner.reinstate("caught up", "2026-04-02")
    suspended, reinstated = partner.collect_events()[-2:]
    for event in (suspended, reinstated):
        object.__setattr__(event, "timestamp", datetime(2026, 4, 9, 20, 30, tzinfo=UTC))
    old_suspension = _as_recorded_before_on_existed(app, suspended)
    old_reinstatement = _as_recorded_before_on_existed(app, reinstated)
    assert (old_suspension.on, old_reinstatement.on) == (date(2026, 4, 10), date(2026, 4, 10))
    assert old_suspension.reason == "late reports"


def test_a_partner_snapshot_from_before_suspensions_were_dated_is_upcast(app):
    with as_("spec-1", "channel_specialist"):
        created = app.register_partner(kind="retailer", name="Corner Shop")
    with as_("mgr-1", "channel_manager"):
        app.review_partner(created.id, "approve")
    record = app.get(Partner, created.id)
    old = Partner.Snapshot.take(record)
    old.state.pop("class_version")
    for added in ("suspensions", "documents", "corrective_plans", "stock"):
        old.state.pop(added)
    old.state["status"] = "suspended"
    app.snapshots.put([old])
    app.records.forget(created.id)
    loaded = app.get(Partner, created.id)
    assert loaded.suspensions == [[record.modified_on.astimezone(ZoneInfo("Asia/Shanghai")).date(), None]]
    assert (loaded.documents, loaded.corrective_plans, loaded.stock) == ({}, {}, {})


# Archive ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["enterprise_agent", "sales_agent", "consignee", "distributor"])
def test_agents_consignees_and_distributors_are_approved_only_with_licence_and_representative(kind):
    partner = applied_without_archive(kind=kind, region="Zhejiang" if kind == "enterprise_agent" else None)
    with as_("mgr-1", "channel_manager"), refused("archive_incomplete"):
        partner.review("approve")
    with as_("spec-1", "channel_specialist"):
        partner.record_document("business_licence", "91330100MA2B3C4D5E", "2024-03-01", "2044-02-29")
    with as_("mgr-1", "channel_manager"):
        with pytest.raises(Exception) as missing:
            partner.review("approve")
        assert missing.value.details["missing"] == ["legal_representative_id"]
    with as_("spec-1", "channel_specialist"):
        partner.record_document("legal_representative_id", "330102198001011234")
    with as_("mgr-1", "channel_manager"):
        partner.review("approve")
    assert partner.status == "approved"


@pytest.mark.parametrize("kind", ["retailer", "direct_store"])
def test_other_kinds_need_no_archive_to_be_approved(kind):
    partner = applied_without_archive(kind=kind, grade="A" if kind == "direct_store" else None)
    with as_("mgr-1", "channel_manager"):
        partner.review("approve")
    assert partner.status == "approved"


def test_an_expired_licence_is_not_on_file_and_a_rejection_needs_no_archive():
    partner = applied_without_archive()
    with as_("spec-1", "channel_specialist"):
        partner.record_document("business_licence", "OLD-1", "2010-01-01", "2020-12-31")
        partner.record_document("legal_representative_id", "330102198001011234")
    with on_day("mgr-1", "2026-03-01", "channel_manager"), refused("archive_incomplete"):
        partner.review("approve")
    other = applied_without_archive()
    with as_("mgr-1", "channel_manager"):
        other.review("reject", "no premises")
    assert other.status == "rejected"


def test_a_document_is_one_of_the_kinds_and_expires_after_it_was_issued():
    partner = applied_without_archive()
    with as_("spec-1", "channel_specialist"):
        with refused("validation_error"):
            partner.record_document("passport", "X")
        with refused("validation_error"):
            partner.record_document("business_licence", "X", "2026-01-02", "2026-01-01")
        with refused("validation_error"):
            partner.record_document("business_licence", "  ")
        document = partner.record_document("key_staff", "sales lead: Wang Fang")
    assert partner.documents[str(document)]["kind"] == "key_staff"


# Corrective plans ----------------------------------------------------------------------------


def test_a_corrective_plan_is_recorded_then_closed_once():
    partner = active()
    with as_("mgr-1", "channel_manager"):
        with refused("validation_error"):
            partner.record_corrective_plan([], "2026-06-30")
        plan = partner.record_corrective_plan(["weekly report", "train two staff"], "2026-06-30")
        with refused("validation_error"):
            partner.close_corrective_plan(plan, "partly")
        partner.close_corrective_plan(plan, "failed")
        with refused("invalid_transition"):
            partner.close_corrective_plan(plan, "met")
        with refused("not_found"):
            partner.close_corrective_plan(uuid.uuid4(), "met")
    assert partner.corrective_plans[str(plan)] == {"due_on": date(2026, 6, 30), "status": "failed"}


# Inventory (PSI) -----------------------------------------------------------------------------


def _line(product="router", opening=100, received=50, sold=30, closing=120):
    return {"product": product, "opening": opening, "received": received, "sold": sold, "closing": closing}


def test_only_distributors_and_consignees_report_inventory():
    with as_("erp", "integration"), refused("inventory_not_applicable"):
        active().report_inventory("2026-03-31", [_line()])


def test_inventory_lines_are_whole_units_that_add_up():
    partner = active(kind="distributor", region=None)
    with as_("erp", "integration"):
        for bad in (_line(closing=121), _line(opening=-1, closing=19), _line(sold=1.5), _line(received=True),
                    _line(opening="100")):
            with refused("validation_error"):
                partner.report_inventory("2026-03-31", [bad])
        with refused("validation_error"):
            partner.report_inventory("2026-03-31", [_line(), _line()])  # one product twice
        with refused("validation_error"):
            partner.report_inventory("2026-03-31", [])


def test_each_report_opens_where_the_last_closed_unless_it_is_a_correction():
    partner = active(kind="consignee", region=None)
    with as_("erp", "integration"):
        partner.report_inventory("2026-03-31", [_line()])  # 100 + 50 - 30 = 120
        with refused("inventory_chain_broken"):
            partner.report_inventory("2026-04-30", [_line(opening=110, received=0, sold=10, closing=100)])
        partner.report_inventory("2026-04-30", [_line(opening=120, received=0, sold=20, closing=100),
                                                _line(product="switch", opening=5, received=0, sold=5, closing=0)])
        with refused("inventory_out_of_order"):
            partner.report_inventory("2026-04-15", [_line(opening=100, received=0, sold=0, closing=100)])
        # A stock count found 3 units missing: the correction restarts the chain.
        partner.report_inventory("2026-05-01", [_line(opening=97, received=0, sold=0, closing=97)],
                                 correction_reason="stock count found 3 units missing")
        with refused("inventory_chain_broken"):
            partner.report_inventory("2026-05-31", [_line(opening=100, received=0, sold=0, closing=100)])
        partner.report_inventory("2026-05-31", [_line(opening=97, received=3, sold=0, closing=100)])
    assert partner.stock["router"] == {"as_of": date(2026, 5, 31), "closing": 100}
    assert partner.stock["switch"] == {"as_of": date(2026, 4, 30), "closing": 0}


def _month(opening, received, sold, product="router"):
    return [_line(product, opening, received, sold, opening + received - sold)]


def test_a_correction_of_an_earlier_report_corrects_history_without_moving_the_chain_head():
    partner = active(kind="distributor", region=None)
    with as_("erp", "integration"):
        partner.report_inventory("2026-01-31", _month(0, 100, 40))  # closes 60
        partner.report_inventory("2026-02-28", _month(60, 10, 20))  # closes 50
        partner.report_inventory("2026-03-31", _month(50, 0, 10))  # closes 40
        # January was miscounted: 45 sold, not 40. March's 40 is still the latest stock.
        partner.report_inventory("2026-01-31", _month(0, 100, 45), correction_reason="recount")
        assert partner.stock["router"] == {"as_of": date(2026, 3, 31), "closing": 40}
        with refused("inventory_chain_broken"):  # opening at the corrected January's 55
            partner.report_inventory("2026-04-30", _month(55, 0, 5))
        partner.report_inventory("2026-04-30", _month(40, 0, 5))  # continues March
    assert partner.stock["router"] == {"as_of": date(2026, 4, 30), "closing": 35}


def test_a_correction_of_the_heads_own_date_replaces_the_head():
    partner = active(kind="consignee", region=None)
    with as_("erp", "integration"):
        partner.report_inventory("2026-01-31", _month(0, 100, 40))  # closes 60
        partner.report_inventory("2026-02-28", _month(60, 0, 20))  # closes 40
        partner.report_inventory("2026-02-28", _month(60, 0, 25), correction_reason="five more sold")  # 35
        assert partner.stock["router"] == {"as_of": date(2026, 2, 28), "closing": 35}
        with refused("inventory_chain_broken"):
            partner.report_inventory("2026-03-31", _month(40, 0, 0))
        partner.report_inventory("2026-03-31", _month(35, 0, 0))


def test_a_regular_report_for_a_date_already_reported_is_a_correction():
    partner = active(kind="distributor", region=None)
    with as_("erp", "integration"):
        partner.report_inventory("2026-01-31", _month(0, 100, 40))  # closes 60
        # Opening at the head's closing would pass a chain check, but it is a second January.
        with refused("inventory_out_of_order"):
            partner.report_inventory("2026-01-31", _month(60, 0, 0))
        # Another product's first report on that date starts its own chain.
        partner.report_inventory("2026-01-31", _month(0, 5, 0, product="switch"))
    assert partner.stock == {"router": {"as_of": date(2026, 1, 31), "closing": 60},
                             "switch": {"as_of": date(2026, 1, 31), "closing": 5}}


def test_a_correction_moves_each_products_head_only_forward():
    partner = active(kind="distributor", region=None)
    with as_("erp", "integration"):
        partner.report_inventory("2026-03-31", _month(0, 10, 0))  # router closes 10 in March
        # A late correction of February covers the router and a switch never reported before.
        partner.report_inventory("2026-02-28", _month(0, 8, 0) + _month(0, 3, 1, product="switch"),
                                 correction_reason="February was never reported")
    assert partner.stock == {"router": {"as_of": date(2026, 3, 31), "closing": 10},
                             "switch": {"as_of": date(2026, 2, 28), "closing": 2}}


# Payout-account change rejection --------------------------------------------------------------


def test_a_payout_account_change_is_rejected_by_someone_other_than_the_requester():
    partner = active()
    with as_("li", "channel_specialist", "finance"):
        change = partner.request_payout_account_change("6222 0000 1111")
        with refused("segregation_of_duties"):
            partner.reject_payout_account_change(change, "not the partner's account")
    with as_("fin-1", "finance"):
        partner.reject_payout_account_change(change, "not the partner's account")
        with refused("invalid_transition"):
            partner.approve_payout_account_change(change)
        with refused("not_found"):
            partner.reject_payout_account_change(uuid.uuid4())
    assert partner.account_changes[str(change)]["status"] == "rejected"
    assert partner.payout_account is None
    rejected = partner.collect_events()[-1]
    assert (type(rejected).__qualname__, rejected.rejected_by) == ("Partner.PayoutAccountChangeRejected", "fin-1")


# Employees ----------------------------------------------------------------------------------


def test_an_employee_is_employed_from_the_hire_date_to_the_day_they_leave():
    with as_("hr-1", "hr"):
        employee = Employee.hire(name="Xu", role="sales_rep", hired_on="2026-01-12")
    assert not employee.is_employed_on(date(2026, 1, 11))
    assert employee.is_employed_on(date(2026, 1, 12))
    # a one-year labour contract that reaches its end without renewal ends the employment
    assert employee.is_employed_on(date(2027, 1, 11)) and not employee.is_employed_on(date(2027, 1, 12))
    with as_("hr-1", "hr"):
        employee.fail_probation("2026-02-20", "missed every target")
    assert employee.is_employed_on(date(2026, 2, 20)) and not employee.is_employed_on(date(2026, 2, 21))


def test_a_suspension_or_termination_never_reaches_back_over_a_deal_already_taken():
    partner = broker()
    with as_("erp", "integration"):
        partner.record_deal("D-1", "100.00", "2026-04-15")
    with as_("mgr-1", "channel_manager"):
        with refused("sales_after_suspension"):
            partner.suspend("late reports", "2026-04-15")
        with refused("sales_after_termination"):
            partner.terminate("fraud", "2026-04-01")
        partner.suspend("late reports", "2026-04-16")
    assert partner.suspensions == [[date(2026, 4, 16), None]]


def test_a_partner_is_terminated_on_the_day_of_its_last_deal_at_the_earliest():
    partner = broker()
    with as_("erp", "integration"):
        partner.record_deal("D-1", "100.00", "2026-04-15")
    with as_("mgr-1", "channel_manager"):
        with refused("sales_after_termination"):
            partner.terminate("fraud", "2026-04-14")
        partner.terminate("fraud", "2026-04-15")  # the deal falls on its last day of business
    assert partner.terminated_on == date(2026, 4, 15)
