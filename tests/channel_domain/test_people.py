"""People on a real database: logins unique under racing hires, rules that compare people
seeing through logins, target assignees that exist, trainers employed on the day, dismissal
proposals by the manager, and the idempotency fingerprint of a hire gone with its personal data."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest

from channel_domain.application import ChannelDepartment
from channel_domain.employee import Employee
from channel_domain.errors import DomainError
from channel_domain.partner import Partner
from channel_domain.sales_target import SalesTarget
from tests.channel_domain.helpers import as_, refused
from tests.channel_domain.test_application import partner, signed_contract

KPIS = {"sales_revenue": "0.5", "partner_satisfaction": "0.5"}


def hire(app: ChannelDepartment, name: str = "Li Na", **fields):
    fields = {"role": "manager", "hired_on": "2026-01-05", **fields}
    with as_("hr-1", "hr"):
        return app.hire_employee(name=name, **fields).id


def test_a_login_belongs_to_one_employee(app):
    li_na = hire(app, login="li.na")
    with as_("hr-1", "hr"), refused("login_taken"):
        app.hire_employee(name="Another Li Na", role="sales_rep", hired_on="2026-02-01", login="li.na")
    assert app.get(Employee, li_na).login == "li.na"
    with as_("li.na", "channel_manager"):
        assert app.acting_employee_id() == li_na
    with as_("someone", "channel_manager"):
        assert app.acting_employee_id() is None


def test_racing_hires_for_one_login_hire_one_employee(app, database_url):
    start = threading.Barrier(6)
    hired, refusals = [], []

    def send(n: int) -> None:
        start.wait()
        try:
            with as_("hr-1", "hr"):
                hired.append(app.hire_employee(name=f"Wang {n}", role="sales_rep", hired_on="2026-01-05",
                                               login="wang"))
        except DomainError as refusal:
            refusals.append(refusal.code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(hired) == 1 and refusals == ["login_taken"] * 5
    with psycopg.connect(database_url) as conn:
        hires = conn.execute("SELECT count(*) FROM events WHERE topic LIKE '%Employee.Hired'").fetchone()[0]
    assert hires == 1, "a refused hire writes nothing"


def test_an_actor_cannot_review_a_partner_their_employee_record_recruited(app):
    li_na = hire(app, login="li.na")
    with as_("spec-1", "channel_specialist"):
        recruit = app.register_partner(kind="retailer", name="Recruit Co.", recruited_by=li_na).id
    with as_("li.na", "channel_manager"), refused("segregation_of_duties"):
        app.review_partner(recruit, "approve")
    assert app.get(Partner, recruit).status == "applied"
    with as_("mgr-1", "channel_manager"):
        app.review_partner(recruit, "approve")
    assert app.get(Partner, recruit).status == "approved"


def test_a_target_assignee_must_exist(app):
    employee = hire(app)
    with as_("spec-1", "channel_specialist"):
        partner_id = app.register_partner(kind="retailer", name="R").id
    target = {"period": "2026", "amount": "1000.00", "kpis": KPIS}
    with as_("mgr-1", "channel_manager"):
        for kind, assignee in (("employee", uuid.uuid4()), ("partner", employee), ("team", partner_id),
                               ("team", "east"), ("employee", "e-1024")):
            with refused("unknown_assignee"):
                app.set_target(assignee_type=kind, assignee_id=assignee, **target)
        for kind, assignee in (("employee", employee), ("partner", partner_id), ("team", employee)):
            assert app.set_target(assignee_type=kind, assignee_id=assignee, **target).version == 1


def test_nobody_approves_a_revision_or_confirms_results_of_their_own_target(app):
    li_na = hire(app, login="li.na")
    with as_("mgr-1", "channel_manager"):
        target = app.set_target(assignee_type="employee", assignee_id=li_na, period="2025", amount="1000.00",
                                kpis=KPIS).id
        revision = app.request_target_revision(target, "1200.00", "new region").extra["revision_id"]
    with as_("li.na", "channel_manager"), refused("segregation_of_duties"):
        app.approve_target_revision(target, revision)
    with as_("mgr-1", "channel_manager"):
        app.close_target(target, {"partner_satisfaction": "0.8"})
    with as_("li.na", "general_manager"), refused("segregation_of_duties"):
        app.confirm_target_closing(target)
    with as_("mgr-1", "channel_manager"), refused("segregation_of_duties"):
        app.confirm_target_closing(target)  # mgr-1 entered the results
    with as_("gm-1", "general_manager"):
        app.confirm_target_closing(target)
    assert app.get(SalesTarget, target).status == "closed"


def test_a_trainer_is_an_employee_employed_on_the_day(app):
    trainer = hire(app, contract_months=6)  # employed 2026-01-05 to 2026-07-04
    with as_("spec-1", "channel_specialist"):
        partner_id = app.register_partner(kind="retailer", name="R").id
    with as_("mgr-1", "channel_manager"):
        app.review_partner(partner_id, "approve")
    with as_("spec-1", "channel_specialist"):
        for who, day in ((uuid.uuid4(), "2026-03-01"), (trainer, "2026-01-04"), (trainer, "2026-07-05")):
            with refused("unknown_employee"):
                app.record_training(partner_id, day, "Pricing", who, 10, 8)
        outcome = app.record_training(partner_id, "2026-07-04", "Pricing", trainer, 10, 8)
    assert uuid.UUID(outcome.extra["training_id"])
    with as_("spec-1", "channel_specialist"), pytest.raises(DomainError) as missing:
        app.record_training(uuid.uuid4(), "2026-03-01", "Pricing", uuid.uuid4(), 10, 8)
    assert missing.value.code == "not_found"  # the partner before the trainer: 404 before 422


def test_only_the_employees_manager_proposes_a_dismissal_and_hr_approves(app):
    boss = hire(app, "Zhao Lei", login="zhao.lei")
    other_manager = hire(app, "Qian Mo", login="qian.mo")
    rep = hire(app, "Sun Li", role="sales_rep", manager_id=boss)
    with as_("qian.mo", "channel_manager"), refused("not_the_manager"):
        app.propose_dismissal(rep, "2026-09-30", "targets missed")
    with as_("nobody", "channel_manager"), refused("not_the_manager"):
        app.propose_dismissal(rep, "2026-09-30", "targets missed")
    with as_("zhao.lei", "channel_manager"):
        proposal = app.propose_dismissal(rep, "2026-09-30", "targets missed").extra["proposal_id"]
    with as_("zhao.lei", "channel_manager", "hr"), refused("segregation_of_duties"):
        app.approve_dismissal(rep, proposal)
    with as_("hr-1", "hr"):
        app.approve_dismissal(rep, proposal)
    assert app.get(Employee, rep).status == "dismissed"
    assert other_manager


def test_the_fingerprint_of_a_hire_is_keyed_and_unconfirmable_after_erasure(app, database_url):
    fields = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06", "national_id": "330101199001011234"}
    with as_("hr-1", "hr", idempotency_key="hire-1"):
        employee = app.hire_employee(**fields).id
    with as_("hr-1", "hr", idempotency_key="hire-1"):
        assert app.hire_employee(**fields).replayed
    with as_("hr-1", "hr", idempotency_key="hire-1"), refused("idempotency_key_reused"):
        app.hire_employee(**{**fields, "national_id": "330101199001011235"})
    with psycopg.connect(database_url) as conn:
        (stored,) = conn.execute("SELECT fingerprint FROM command_outcomes WHERE idempotency_key = 'hire-1'").fetchone()
    assert stored.startswith("keyed:")
    with as_("hr-1", "hr"):
        app.separate_employee(employee, "2020-12-31", "resignation")
    with as_("hr-1", "hr", now=datetime(2023, 1, 2, tzinfo=UTC)):
        app.erase_personal_data(employee)
    # The key that made the fingerprint is gone: a guess can no longer be checked against it,
    # and a repeat of the key replays what it did rather than hire again.
    with as_("hr-1", "hr", idempotency_key="hire-1"):
        assert app.hire_employee(**{**fields, "national_id": "330101199001011235"}).replayed
    with as_("hr-1", "hr", idempotency_key="hire-1"):
        assert app.hire_employee(**fields).id == employee


def test_an_employment_never_ends_before_a_sale_already_credited_to_the_employee(app):
    """After the end no sales credit is accepted (domain.md §4): so an end dated before a credit
    already taken is refused, whichever way the employment ends."""
    contract = signed_contract(app, partner(app, "retailer"))
    rep = hire(app, role="sales_rep")
    with as_("erp", "integration"):
        app.record_sale(contract, "o-1", "100.00", "2026-03-10", employee_id=rep)
    with as_("hr-1", "hr"):
        with refused("sales_credited_after"):
            app.separate_employee(rep, "2026-03-01", "resignation")
        with refused("sales_credited_after"):
            app.fail_probation(rep, "2026-03-01", "missed every target")
        app.warn_employee(rep, "dereliction", "fraud")
        with refused("sales_credited_after"):
            app.dismiss_employee(rep, "2026-03-01", "fraud")
        app.separate_employee(rep, "2026-03-10", "resignation")  # the day of the sale is still employed
    assert app.get(Employee, rep).employment_ends_on == date(2026, 3, 10)
