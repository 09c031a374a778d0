"""Employee rules: probation caps of the Labour Contract Law, one probation, the warning
ladder, December reviews and the open-ended contract after two fixed terms."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from channel_domain.employee import Employee, probation_cap_months
from channel_domain.errors import DomainError
from tests.channel_domain.helpers import as_, on_day, refused


def hire(**overrides) -> Employee:
    fields = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2026-01-05"}
    fields.update(overrides)
    with as_("hr-1", "hr"):
        return Employee.hire(**fields)


@pytest.mark.parametrize(
    ("contract_months", "cap"),
    [(2, 0), (3, 1), (11, 1), (12, 2), (35, 2), (36, 3), (0, 3)],
)
def test_probation_cap_follows_the_law_and_never_exceeds_three_months(contract_months, cap):
    # Art. 19: <3 months none, 3-12 one month, 1-3 years two, 3+ years or open-ended six —
    # and the company's own cap of three months is lower still.
    assert probation_cap_months(contract_months) == cap


def test_standard_one_year_contract_defaults_to_two_months_probation():
    employee = hire()
    assert employee.probation_months == 2
    assert employee.probation_ends_on == date(2026, 3, 4)
    assert employee.contract_ends_on == date(2027, 1, 4)
    assert employee.status == "probation"


def test_terms_from_a_day_missing_in_the_end_month_end_on_that_months_last_day():
    leap_day = hire(hired_on="2024-02-29")  # 12 months: 2025 has no 29 February
    assert leap_day.contract_ends_on == date(2025, 2, 28)
    assert leap_day.probation_ends_on == date(2024, 4, 28)  # 2 months: 29 April exists
    month_end = hire(hired_on="2024-01-31", contract_months=6, probation_months=1)
    assert month_end.probation_ends_on == date(2024, 2, 29)
    assert month_end.contract_ends_on == date(2024, 7, 30)


def test_probation_longer_than_the_legal_cap_is_refused():
    with refused("probation_exceeds_legal_cap"):
        hire(probation_months=3)  # 12-month contract: the seeds' 3 months is illegal


def test_short_contract_has_no_probation_and_starts_regular():
    employee = hire(contract_months=2)
    assert employee.probation_months == 0
    assert employee.status == "regular"


def test_regularize_ends_probation_and_only_once():
    employee = hire()
    with as_("hr-1", "hr"):
        employee.regularize("2026-02-20")  # early, for outstanding work
        assert employee.status == "regular"
        with refused("invalid_transition"):
            employee.regularize("2026-03-01")
        with refused("invalid_transition"):
            employee.fail_probation("2026-03-01", "late complaint")


def test_failing_probation_must_happen_within_it():
    employee = hire()
    with as_("hr-1", "hr"):
        with refused("probation_over"):
            employee.fail_probation("2026-03-05", "missed targets")
        employee.fail_probation("2026-03-04", "missed targets")
    assert employee.status == "probation_failed"


def test_renewal_never_starts_a_second_probation():
    employee = hire(hired_on="2026-01-05")
    with as_("hr-1", "hr"):
        employee.regularize("2026-03-01")
        employee.review_contract("2026-12-10", "renew")
    assert employee.status == "regular"
    assert employee.contract_starts_on == date(2027, 1, 5)
    with as_("hr-1", "hr"), refused("invalid_transition"):
        employee.fail_probation("2026-12-15", "no second probation")


def test_warning_ladder_escalates_one_step_at_a_time():
    employee = hire(contract_months=0)  # still employed whenever the test runs
    with as_("hr-1", "hr"):
        with refused("warning_ladder_skipped"):
            employee.warn("written", "late")
        employee.warn("oral", "late")
        employee.warn("oral", "late again")  # repeating a level is allowed
        with refused("warning_ladder_skipped"):
            employee.warn("serious", "late")
        employee.warn("written", "late")
        with refused("dismissal_not_warranted"):
            employee.dismiss("2026-06-01", "lateness")
        employee.warn("serious", "late")
        employee.dismiss("2026-06-01", "lateness")
    assert employee.status == "dismissed"


def test_dereliction_leads_straight_to_dismissal():
    employee = hire(contract_months=0)
    with as_("hr-1", "hr"):
        employee.warn("dereliction", "left the store unattended with the till open")
        employee.dismiss("2026-02-01", "dereliction of duty")
    assert employee.status == "dismissed"


@pytest.mark.parametrize(
    ("on", "code"),
    [
        ("1900-01-01", "validation_error"),  # before the hire: would open erasure at once
        ("2026-01-04", "validation_error"),
        ("2027-01-05", "contract_already_ended"),  # the contract ended on 2027-01-04
    ],
)
def test_a_dismissal_falls_within_the_employment(on, code):
    employee = hire(hired_on="2026-01-05")
    with as_("hr-1", "hr"):
        employee.warn("dereliction", "left the store unattended with the till open")
        with refused(code):
            employee.dismiss(on, "dereliction of duty")
    assert employee.status == "probation" and employee.left_on is None


def test_contract_reviews_take_place_in_december_for_contracts_due():
    employee = hire(hired_on="2026-01-05")  # contract ends 2027-01-04
    with as_("hr-1", "hr"):
        with refused("review_outside_december"):
            employee.review_contract("2026-11-30", "renew")
        with refused("contract_not_due_for_review"):
            hire(hired_on="2026-01-05", contract_months=36).review_contract("2026-12-15", "renew")
        employee.review_contract("2026-12-15", "not_renew")
        with refused("already_reviewed"):
            employee.review_contract("2026-12-16", "renew")


def test_third_contract_must_be_open_ended():
    employee = hire(hired_on="2024-01-01")  # fixed term 1: 2024
    with as_("hr-1", "hr"):
        employee.review_contract("2024-12-15", "renew", 12)  # fixed term 2: 2025
        with refused("open_ended_contract_required"):
            employee.review_contract("2025-12-15", "renew", 12)
        employee.review_contract("2025-12-15", "renew")  # defaults to open-ended
        assert employee.contract_ends_on is None
        with refused("open_ended_contract"):
            employee.review_contract("2026-12-15", "renew")


def test_evaluations_are_quarterly_or_annual_once_per_period():
    employee = hire(contract_months=0)
    with as_("mgr-1", "channel_manager"):
        with refused("validation_error"):
            employee.evaluate("2026-03", 80)
        with refused("validation_error"):
            employee.evaluate("2026-Q1", 101)
        employee.evaluate("2026-Q1", "88.5", "strong quarter")
        employee.evaluate("2026", 90)
        with refused("duplicate_evaluation"):
            employee.evaluate("2026-Q1", 70)


def test_promotion_and_transfer_are_recorded_with_dates():
    employee = hire()
    manager = uuid.uuid4()
    with as_("hr-1", "hr"):
        employee.promote("supervisor", "2026-07-01")
        employee.transfer(manager, "2026-07-01")
        with refused("validation_error"):
            employee.transfer(employee.id, "2026-07-02")
    assert (employee.role, employee.manager_id) == ("supervisor", manager)
    events = employee.collect_events()
    assert [type(e).__name__ for e in events[-2:]] == ["Promoted", "Transferred"]
    assert events[-1].on == date(2026, 7, 1)


def test_promotion_to_the_same_role_or_an_unknown_one_is_refused():
    employee = hire()
    with as_("hr-1", "hr"):
        with refused("no_change"):
            employee.promote("sales_rep", "2026-07-01")
        with refused("validation_error"):
            employee.promote("emperor", "2026-07-01")


def test_nothing_more_happens_to_someone_who_has_left():
    employee = hire()
    with as_("hr-1", "hr"):
        employee.fail_probation("2026-02-01", "did not show up")
        for action in (
            lambda: employee.warn("oral", "late"),
            lambda: employee.promote("supervisor", "2026-03-01"),
            lambda: employee.evaluate("2026-Q1", 50),
            lambda: employee.review_contract("2026-12-15", "renew"),
        ):
            with refused("invalid_transition"):
                action()


# Separation, the end of employment, dismissal for performance, retention -----------------


def test_separation_ends_the_employment_on_its_date():
    employee = hire(hired_on="2026-01-05")
    with as_("hr-1", "hr"):
        employee.regularize("2026-03-01")
        employee.separate("2026-06-30", "resignation")
    assert (employee.status, employee.left_on, employee.separation_reason) == (
        "separated", date(2026, 6, 30), "resignation")
    assert employee.is_employed_on(date(2026, 6, 30)) and not employee.is_employed_on(date(2026, 7, 1))
    assert not employee.is_employed_on(date(2026, 1, 4))
    with as_("hr-1", "hr"), refused("invalid_transition"):
        employee.separate("2026-07-31", "resignation")


def test_a_contract_that_ends_without_renewal_ends_the_employment():
    employee = hire(hired_on="2025-01-05")  # contract ends 2026-01-04
    assert employee.employment_ends_on == date(2026, 1, 4)
    assert employee.is_employed_on(date(2026, 1, 4)) and not employee.is_employed_on(date(2026, 1, 5))
    with as_("hr-1", "hr"):
        employee.review_contract("2025-12-10", "renew")
    assert employee.is_employed_on(date(2026, 1, 5))
    assert hire(hired_on="2025-01-05", contract_months=0).employment_ends_on is None


@pytest.mark.parametrize(
    ("on", "reason", "code"),
    [
        ("2027-01-05", "resignation", "contract_already_ended"),  # the contract ended on 2027-01-04
        ("2026-12-31", "contract_expired", "contract_not_expiring"),
        ("2026-03-05", "probation_failed", "probation_over"),  # probation ended on 2026-03-04
        ("2026-06-30", "dismissal", "dismissal_not_warranted"),
        ("2026-01-04", "resignation", "validation_error"),  # before the hire
        ("2026-06-30", "retired", "validation_error"),
    ],
)
def test_separation_dates_and_reasons_must_fit_the_record(on, reason, code):
    employee = hire(hired_on="2026-01-05")
    with as_("hr-1", "hr"), refused(code):
        employee.separate(on, reason)
    assert employee.status == "probation"


def test_separation_reasons_that_fit():
    for on, reason in (("2027-01-04", "contract_expired"), ("2026-03-04", "probation_failed")):
        employee = hire(hired_on="2026-01-05")
        with as_("hr-1", "hr"):
            employee.separate(on, reason)
        assert employee.left_on == date.fromisoformat(on)
    employee = hire(hired_on="2026-01-05")
    with on_day("hr-1", "2026-01-20", "hr"):
        employee.warn("dereliction", "till left open")
        employee.separate("2026-02-01", "dismissal")
    assert employee.separation_reason == "dismissal"


def test_after_the_employment_ended_no_warning_or_evaluation_is_taken():
    employee = hire(hired_on="2026-01-05")
    with as_("hr-1", "hr"):
        employee.separate("2026-06-30", "resignation")
    # Separated: refused as for anyone who has left. Ended by the contract's end date without a
    # separation recorded: refused by date.
    expired = hire(hired_on="2025-01-05")  # contract ended 2026-01-04
    with on_day("hr-1", "2026-01-05", "hr"):
        for action in (lambda: expired.warn("oral", "late"), lambda: expired.evaluate("2025-Q4", 80)):
            with refused("employee_separated"):
                action()
    with on_day("mgr-1", "2026-01-04", "channel_manager"):
        expired.evaluate("2025-Q4", 80)  # still employed that day
        with refused("employee_separated"):
            expired.evaluate("2026-Q2", 80)  # a quarter that starts after the end
    with on_day("hr-1", "2026-01-04", "hr"):
        expired.warn("oral", "late")
    with as_("hr-1", "hr"), refused("invalid_transition"):
        employee.warn("oral", "late")


def test_a_dismissal_for_performance_is_proposed_by_the_manager_and_approved_by_hr():
    manager = uuid.uuid4()
    employee = hire(manager_id=manager)
    with as_("wang.li", "channel_manager"):
        with refused("not_the_manager"):
            employee.propose_dismissal("2026-09-30", "targets missed", proposer_id=uuid.uuid4())
        with refused("not_the_manager"):
            employee.propose_dismissal("2026-09-30", "targets missed", proposer_id=None)  # no employee record
        with refused("employee_separated"):
            employee.propose_dismissal("2027-02-01", "targets missed", proposer_id=manager)  # after the contract
        proposal = employee.propose_dismissal("2026-09-30", "targets missed", proposer_id=manager)
    assert employee.status == "probation"  # a proposal changes nothing yet
    with as_("wang.li", "channel_manager", "hr"), refused("segregation_of_duties"):
        employee.approve_dismissal(proposal, approver_id=manager)
    with as_("hr-1", "hr"):
        with refused("not_found"):
            employee.approve_dismissal(uuid.uuid4(), approver_id=None)
        employee.approve_dismissal(proposal, approver_id=None)
        with refused("invalid_transition"):
            employee.approve_dismissal(proposal, approver_id=None)
    assert (employee.status, employee.left_on) == ("dismissed", date(2026, 9, 30))
    assert employee.dismissal_proposals[str(proposal)]["approved_by"] == "hr-1"


def test_nobody_approves_their_own_dismissal():
    manager = uuid.uuid4()
    employee = hire(manager_id=manager)
    with as_("wang.li", "channel_manager"):
        proposal = employee.propose_dismissal("2026-09-30", "targets missed", proposer_id=manager)
    with as_("self", "hr"), refused("segregation_of_duties"):
        employee.approve_dismissal(proposal, approver_id=employee.id)


def test_personal_data_is_erasable_two_years_after_the_employment_ended():
    employee = hire(hired_on="2024-01-05")
    with on_day("hr-1", "2030-01-01", "hr"), refused("retention_period"):
        employee.erase_personal_data()  # the employment has not ended on record
    with as_("hr-1", "hr"):
        employee.regularize("2024-03-01")
        employee.separate("2024-06-30", "resignation")
    assert employee.erasable_from == date(2026, 6, 30)
    with on_day("hr-1", "2026-06-29", "hr"):
        with pytest.raises(DomainError) as caught:
            employee.erase_personal_data()
    assert caught.value.code == "retention_period"
    assert caught.value.details["erasable_from"] == "2026-06-30"
    with on_day("hr-1", "2026-06-30", "hr"):
        employee.erase_personal_data()
    assert employee.personal_data_erased


def test_retention_from_a_leap_day_runs_to_the_first_of_march():
    employee = hire(hired_on="2024-01-05")
    with as_("hr-1", "hr"):
        employee.separate("2024-02-29", "resignation")
    assert employee.erasable_from == date(2026, 3, 1)  # two full years: 2026 has no 29 February


def test_a_contract_review_dated_before_the_hire_is_refused():
    employee = hire(hired_on="2026-12-20")
    with as_("hr-1", "hr"):
        with refused("validation_error"):
            employee.review_contract("2026-12-10", "renew")
        employee.review_contract("2026-12-20", "renew")


def test_the_login_is_recorded_at_hire():
    assert hire(login="wang.fang").login == "wang.fang"
    assert hire().login is None
    with refused("validation_error"):
        hire(login="  ")


def test_a_hire_recorded_before_logins_existed_still_loads():
    employee = hire()
    hired = employee.collect_events()[0]
    del hired.__dict__["login"]  # the shape of a Hired event stored before this field
    replayed = hired.mutate(None)
    assert replayed.login is None and replayed.hired_on == employee.hired_on
    assert replayed.dismissal_proposals == {} and replayed.separation_reason is None


def test_a_snapshot_from_before_separations_is_upcast():
    employee = hire()
    old = Employee.Snapshot.take(employee)
    old.state.pop("class_version")
    for name in ("login", "separation_reason", "dismissal_proposals"):
        old.state.pop(name)  # the shape of class version 1
    loaded = old.mutate(None)
    assert (loaded.login, loaded.separation_reason, loaded.dismissal_proposals) == (None, None, {})
    assert loaded.contract_ends_on == employee.contract_ends_on
