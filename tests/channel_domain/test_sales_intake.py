"""Who may sell, on real PostgreSQL: the partner's lifecycle by date, the products of the
contract, the employee credited; termination ending the partner's contracts; return ids."""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal

from channel_domain.application import ChannelDepartment, SalesLine
from channel_domain.contract import Contract
from channel_domain.employee import Employee
from channel_domain.partner import Partner
from tests.channel_domain.helpers import as_, refused
from tests.channel_domain.test_application import partner, signed_contract


def employee(app, hired_on="2026-01-05") -> object:
    with as_("hr-1", "hr"):
        return app.hire_employee(name="Xu Tao", role="sales_rep", hired_on=hired_on).id


def test_a_sale_dated_while_the_partner_is_suspended_is_refused_before_the_contract_rules(app):
    agent = partner(app)
    contract = signed_contract(app, agent)
    with as_("mgr-1", "channel_manager"):
        app.suspend_partner(agent, "late reports", "2026-04-10")
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-04-09")  # before the suspension, recorded during it
        with refused("partner_not_active"):
            app.record_sale(contract, "O-2", "100.00", "2026-04-10")
        with refused("partner_not_active"):  # the partner first, though the order id is a duplicate
            app.record_sale(contract, "O-1", "100.00", "2026-04-11")
        app.record_return(contract, "O-1", "40.00", "2026-04-12")  # a return of an earlier sale is taken
    with as_("mgr-1", "channel_manager"):
        app.reinstate_partner(agent, "caught up", "2026-04-20")
    with as_("erp", "integration"):
        with refused("partner_not_active"):
            app.record_sale(contract, "O-3", "100.00", "2026-04-19")
        app.record_sale(contract, "O-4", "100.00", "2026-04-20")
    assert set(app.get(Contract, contract).orders) == {"O-1", "O-4"}


def test_terminating_a_partner_ends_its_contracts_on_that_date_and_frees_the_sales_agent_slot(app):
    first = partner(app)
    contract = signed_contract(app, first)
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "1000.00", "2026-03-02")
    second = partner(app)
    with refused("exclusive_sales_agent_exists"):
        signed_contract(app, second, starts_on="2026-07-01")
    with as_("mgr-1", "channel_manager"):
        outcome = app.terminate_partner(first, "targets missed", "2026-06-30")
    ended = app.get(Contract, contract)  # its last day is the partner's: out of force from the day after
    assert (ended.status, ended.terminated_on, ended.last_day_in_force) == (
        "terminated", date(2026, 7, 1), date(2026, 6, 30))
    assert outcome.extra["terminated_contracts"] == [str(contract)]
    # One save: the partner's and the contract's events are written together.
    assert len(outcome.positions) == 2
    signed_contract(app, second, starts_on="2026-07-01")
    with as_("erp", "integration"):
        with refused("partner_not_active"):
            app.record_sale(contract, "O-2", "10.00", "2026-07-01")
        app.record_return(contract, "O-1", "100.00", "2026-07-15")  # returns of earlier sales still come
    assert app.get(Contract, contract).returns_total == Decimal("100.00")


def test_a_contract_that_had_not_started_ends_on_its_first_day(app):
    agent = partner(app)
    current = signed_contract(app, agent, starts_on="2026-01-01", ends_on="2026-06-30")
    later = signed_contract(app, agent, starts_on="2026-07-01", ends_on="2026-12-31")
    with as_("mgr-1", "channel_manager"):
        app.terminate_partner(agent, "closing", "2026-05-01")
    assert app.get(Contract, current).last_day_in_force.isoformat() == "2026-05-01"
    never = app.get(Contract, later)
    assert (never.status, never.terminated_on.isoformat()) == ("terminated", "2026-07-01")


def test_termination_before_sales_already_recorded_is_refused_and_writes_nothing(app):
    agent = partner(app)
    contract = signed_contract(app, agent)
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-05-10")
    with as_("mgr-1", "channel_manager"), refused("sales_after_termination"):
        app.terminate_partner(agent, "closing", "2026-05-01")
    assert app.get(Partner, agent).status == "active"
    assert app.get(Contract, contract).status == "signed"


def test_the_termination_day_still_sells_on_the_partners_contracts(app):
    agent = partner(app)
    contract = signed_contract(app, agent)
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-05-10")
    with as_("mgr-1", "channel_manager"):
        app.terminate_partner(agent, "closing", "2026-05-10")  # on the day of a sale already taken
    with as_("erp", "integration"):
        app.record_sale(contract, "O-2", "100.00", "2026-05-10")  # and another that day
        with refused("partner_not_active"):
            app.record_sale(contract, "O-3", "100.00", "2026-05-11")
    ended = app.get(Contract, contract)
    assert (ended.last_day_in_force, set(ended.orders)) == (date(2026, 5, 10), {"O-1", "O-2"})


def test_a_contract_whose_own_last_day_is_the_termination_day_is_over_by_then(app):
    agent = partner(app)
    ending = signed_contract(app, agent, starts_on="2026-01-01", ends_on="2026-05-01")
    with as_("mgr-1", "channel_manager"):
        outcome = app.terminate_partner(agent, "closing", "2026-05-01")
    assert outcome.extra["terminated_contracts"] == []
    assert app.get(Contract, ending).last_day_in_force == date(2026, 5, 1)


def test_expired_and_already_terminated_contracts_are_left_as_they_are(app):
    agent = partner(app)
    old = signed_contract(app, agent, starts_on="2025-01-01", ends_on="2025-12-31")
    with as_("mgr-1", "channel_manager"):
        outcome = app.terminate_partner(agent, "closing", "2026-05-01")
    assert outcome.extra["terminated_contracts"] == []
    assert app.get(Contract, old).status == "signed"  # expired on its own end date


def test_a_sale_names_a_product_of_the_contract_and_an_employee_employed_that_day(app):
    contract = signed_contract(app, partner(app))  # products: router
    rep = employee(app, hired_on="2026-02-01")
    with as_("erp", "integration"):
        with refused("product_not_in_contract"):
            app.record_sale(contract, "O-1", "100.00", "2026-03-02", product="switch")
        app.record_sale(contract, "O-2", "100.00", "2026-03-02", product="router")
        app.record_sale(contract, "O-3", "100.00", "2026-03-02")  # no product named: not checked
        with refused("unknown_employee"):
            app.record_sale(contract, "O-4", "100.00", "2026-03-02", employee_id=uuid.uuid4())
        with refused("unknown_employee"):
            app.record_sale(contract, "O-5", "100.00", "2026-01-31", employee_id=rep)  # before the hire
        app.record_sale(contract, "O-6", "100.00", "2026-02-01", employee_id=rep)
    with as_("hr-1", "hr"):
        app.fail_probation(rep, "2026-03-10", "no sales")
    with as_("erp", "integration"):
        app.record_sale(contract, "O-7", "100.00", "2026-03-10", employee_id=rep)  # their last day
        with refused("unknown_employee"):
            app.record_sale(contract, "O-8", "100.00", "2026-03-11", employee_id=rep)
    assert set(app.get(Contract, contract).orders) == {"O-2", "O-3", "O-6", "O-7"}


def test_an_import_checks_each_line_and_reads_each_partner_and_employee_once(app, monkeypatch):
    agent = partner(app)
    contract = signed_contract(app, agent)
    rep = employee(app)
    with as_("mgr-1", "channel_manager"):
        app.suspend_partner(agent, "late reports", "2026-04-10")
    loads: list[type] = []
    load = app._load

    def counting(record_type, record_id, **options):
        loads.append(record_type)
        return load(record_type, record_id, **options)

    monkeypatch.setattr(app, "_load", counting)
    app.records.forget(agent)
    app.records.forget(rep)
    lines = [SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "10.00", "sold_on": "2026-03-02",
                                          "employee_id": rep}) for n in range(50)]
    lines += [
        SalesLine(contract, "sale", {"order_id": "S-1", "amount": "10.00", "sold_on": "2026-04-10"}),
        SalesLine(contract, "sale", {"order_id": "P-1", "amount": "10.00", "sold_on": "2026-03-02",
                                     "product": "switch"}),
        SalesLine(contract, "sale", {"order_id": "E-1", "amount": "10.00", "sold_on": "2026-01-04",
                                     "employee_id": rep}),
        SalesLine(contract, "return", {"order_id": "O-1", "amount": "5.00", "returned_on": "2026-04-12",
                                       "return_id": "R-1"}),
        SalesLine(contract, "return", {"order_id": "O-2", "amount": "5.00", "returned_on": "2026-04-12",
                                       "return_id": "R-1"}),
    ]
    with as_("erp", "integration"):
        outcomes = app.import_sales(lines)
    codes = [outcome.code if outcome else None for outcome in outcomes]
    assert codes == [None] * 50 + ["partner_not_active", "product_not_in_contract", "unknown_employee", None,
                                   "duplicate_return"]
    # A refusal is re-checked on a fresh load of the contract; the partner and the employee
    # are read once each for the whole chunk.
    assert loads.count(Partner) == 1 and loads.count(Employee) == 1


def test_a_return_id_is_taken_once_per_contract(app):
    agent = partner(app)
    contract, other = signed_contract(app, agent), signed_contract(app, agent, starts_on="2027-01-01",
                                                                   ends_on="2027-12-31")
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-03-02")
        app.record_sale(contract, "O-2", "100.00", "2026-03-02")
        app.record_sale(other, "O-1", "100.00", "2027-03-02")
        app.record_return(contract, "O-1", "10.00", "2026-03-05", return_id="RMA-1")
        with refused("duplicate_return"):
            app.record_return(contract, "O-2", "10.00", "2026-03-05", return_id="RMA-1")
        app.record_return(other, "O-1", "10.00", "2027-03-05", return_id="RMA-1")  # another contract
        app.record_return(contract, "O-1", "10.00", "2026-03-06")  # without an id, as before
    assert app.get(Contract, contract).returns_total == Decimal("20.00")
    app.records.forget(contract)
    assert app.get(Contract, contract).return_ids == {"RMA-1": "O-1"}


def test_a_suspension_made_by_another_server_process_stops_a_sale_checked_on_the_cached_partner(
        app, database_url):
    agent = partner(app)
    contract = signed_contract(app, agent)
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-04-01")  # this process now holds the partner
    other_process = ChannelDepartment(database_url)
    try:
        with as_("mgr-1", "channel_manager"):
            other_process.suspend_partner(agent, "late reports", "2026-04-10")
    finally:
        other_process.close()
    with as_("erp", "integration"), refused("partner_not_active"):
        app.record_sale(contract, "O-2", "100.00", "2026-04-10")


def test_a_return_recorded_before_returns_had_ids_still_loads(app):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-03-02")
        app.record_return(contract, "O-1", "10.00", "2026-03-05", return_id="RMA-1")
    events = list(app.repository.event_store.get(contract))
    stored = app.mapper.to_stored_event(events[-1])
    state = json.loads(stored.state)
    del state["return_id"]  # as ReturnRecorded was stored before it had one
    events[-1] = app.mapper.to_domain_event(
        type(stored)(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()))
    record = None
    for event in events:
        record = event.mutate(record)
    assert record.order_line("O-1") == (Decimal("100.00"), Decimal("10.00"), date(2026, 3, 2))
    assert record.return_ids == {}


def test_a_suspension_dated_back_over_a_recorded_sale_is_refused(app):
    agent = partner(app)
    contract = signed_contract(app, agent)
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "100.00", "2026-04-12")
    with as_("mgr-1", "channel_manager"):
        with refused("sales_after_suspension"):
            app.suspend_partner(agent, "late reports", "2026-04-10")
        app.suspend_partner(agent, "late reports", "2026-04-13")
    assert app.get(Partner, agent).suspensions == [[date(2026, 4, 13), None]]
