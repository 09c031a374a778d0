"""The application service on a real database: rules that span records, idempotency,
optimistic concurrency, time travel, history and snapshots."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from channel_domain.application import ChannelDepartment, SalesLine
from channel_domain.contract import Contract
from channel_domain.employee import Employee
from channel_domain.errors import DomainError
from channel_domain.partner import Partner
from channel_domain.sales_target import SalesTarget
from channel_domain.store.log import EventLog
from tests.channel_domain.helpers import as_, refused

CONTENTS = {
    "goals": "grow", "products": ["router"], "price_policy": "list", "obligations": "report",
    "support": "training", "confidentiality": "2 years",
}
KPIS = {"sales_revenue": "0.7", "new_partners": {"weight": "0.3", "goal": "2"}}


def partner(app: ChannelDepartment, kind: str = "sales_agent", **fields):
    with as_("spec-1", "channel_specialist"):
        created = app.register_partner(kind=kind, name=f"{kind} partner", **fields)
        for document in ("business_licence", "legal_representative_id"):
            if kind in ("enterprise_agent", "sales_agent", "consignee", "distributor"):
                app.record_partner_document(created.id, document, f"{document} of {kind}")
    with as_("mgr-1", "channel_manager"):
        app.review_partner(created.id, "approve")
    return created.id


def signed_contract(app, partner_id, starts_on="2026-01-01", ends_on="2026-12-31", **fields):
    fields = {"commission": {"type": "flat", "rate": "0.03"}, **CONTENTS, **fields}
    with as_("mgr-1", "channel_manager"):
        contract = app.draft_contract(partner_id=partner_id, starts_on=starts_on, ends_on=ends_on, **fields)
        app.submit_contract(contract.id)
    with as_("gm-1", "general_manager"):
        app.approve_contract(contract.id)
    with as_("mgr-1", "channel_manager"):
        app.sign_contract(contract.id, starts_on)
    return contract.id


# Rules that span records --------------------------------------------------------------


def test_signing_the_first_contract_activates_the_partner_in_the_same_commit(app):
    agent = partner(app, "enterprise_agent")
    contract_id = signed_contract(app, agent, territory="Zhejiang")
    assert app.get(Partner, agent).status == "active"
    assert app.get(Contract, contract_id).status == "signed"


def test_second_sales_agent_refused_while_one_is_in_force(app):
    first = signed_contract(app, partner(app), "2026-01-01", "2026-12-31")
    second = partner(app)
    with as_("mgr-1", "channel_manager"):
        overlapping = app.draft_contract(partner_id=second, starts_on="2026-06-01", ends_on="2027-05-31",
                                         commission={"type": "flat", "rate": "0.02"}, **CONTENTS)
        app.submit_contract(overlapping.id)
    with as_("gm-1", "general_manager"):
        app.approve_contract(overlapping.id)
    with as_("mgr-1", "channel_manager"), refused("exclusive_sales_agent_exists"):
        app.sign_contract(overlapping.id, "2026-05-20")
    assert app.get(Contract, overlapping.id).status == "approved", "the refused signature wrote nothing"
    assert app.get(Partner, second).status == "approved"

    # Terminating the first contract from 1 June frees those days for the second agent.
    with as_("mgr-1", "channel_manager"):
        app.terminate_contract(first, "2026-06-01", "agent retired")
        app.sign_contract(overlapping.id, "2026-05-20")
    assert app.get(Partner, second).status == "active"


def test_renewal_into_another_sales_agents_term_is_refused_when_approved(app):
    first = signed_contract(app, partner(app), "2026-01-01", "2026-06-30")
    signed_contract(app, partner(app), "2026-07-01", "2026-12-31")
    with as_("mgr-1", "channel_manager"):
        renewal_id = app.request_renewal(first, "2026-09-30").extra["renewal_id"]
    with as_("gm-1", "general_manager"), refused("exclusive_sales_agent_exists"):
        app.approve_renewal(first, renewal_id)
    assert app.get(Contract, first).ends_on.isoformat() == "2026-06-30"


def test_sales_agent_rate_compared_with_enterprise_agents_in_force(app):
    signed_contract(app, partner(app, "enterprise_agent"), territory="Zhejiang",
                    commission={"type": "flat", "rate": "0.04"})
    agent = partner(app)
    with as_("mgr-1", "channel_manager"):
        with refused("rate_justification_required"):
            app.draft_contract(partner_id=agent, starts_on="2026-03-01", ends_on="2026-12-31",
                               commission={"type": "flat", "rate": "0.04"}, **CONTENTS)
        low = app.draft_contract(partner_id=agent, starts_on="2026-03-01", ends_on="2026-12-31",
                                 commission={"type": "flat", "rate": "0.035"}, **CONTENTS)
    assert app.get(Contract, low.id).status == "draft"


def test_contracts_only_for_known_approved_non_broker_partners(app):
    with as_("spec-1", "channel_specialist"):
        applicant = app.register_partner(kind="retailer", name="Corner shop")
    broker = partner(app, "broker", commission_rate="0.01")
    terms = {"starts_on": "2026-01-01", "ends_on": "2026-12-31", "commission": {"type": "flat", "rate": "0.03"}}
    with as_("mgr-1", "channel_manager"):
        with refused("partner_not_eligible"):
            app.draft_contract(partner_id=applicant.id, **terms)
        with refused("broker_has_no_contract"):
            app.draft_contract(partner_id=broker, **terms)
        with refused("unknown_partner"):
            app.draft_contract(partner_id=applicant.id.__class__(int=1), **terms)


def test_second_tier_agent_names_a_known_parent(app):
    parent = partner(app, "enterprise_agent")
    with as_("spec-1", "channel_specialist"):
        child = app.register_partner(kind="retailer", name="Sub-agent", parent_partner_id=parent)
        with refused("unknown_parent_partner"):
            app.register_partner(kind="retailer", name="Orphan", parent_partner_id=child.id.__class__(int=7))
    assert app.get(Partner, child.id).parent_partner_id == parent


def test_manager_must_be_a_current_employee(app):
    with as_("hr-1", "hr"):
        manager = app.hire_employee(name="Chen Jie", role="manager", hired_on="2026-01-05")
        rep = app.hire_employee(name="Liu Yang", role="sales_rep", hired_on="2026-01-05", manager_id=manager.id)
        with refused("unknown_employee"):
            app.hire_employee(name="X", role="sales_rep", hired_on="2026-01-05", manager_id=rep.id.__class__(int=3))
    assert app.get(Employee, rep.id).manager_id == manager.id


def employees(app, *names: str, **fields) -> list:
    with as_("hr-1", "hr"):
        return [app.hire_employee(name=name, role="sales_rep", hired_on="2026-01-05", **fields).id for name in names]


def test_decomposition_in_one_step_must_sum_exactly(app):
    leader, a, b = employees(app, "leader", "a", "b")
    with as_("mgr-1", "channel_manager"):
        parent = app.set_target(assignee_type="team", assignee_id=leader, period="2026", amount="1000.00", kpis=KPIS)
        child = {"assignee_type": "employee", "period": "2026", "kpis": KPIS}
        with refused("decomposition_must_sum_to_parent"):
            app.decompose_target(parent.id, [{**child, "assignee_id": a, "amount": "600.00"},
                                             {**child, "assignee_id": b, "amount": "399.99"}])
        with refused("unknown_assignee"):
            app.decompose_target(parent.id, [{**child, "assignee_id": a, "amount": "600.00"},
                                             {**child, "assignee_id": "b", "amount": "400.00"}])
        outcome = app.decompose_target(parent.id, [{**child, "assignee_id": a, "amount": "600.00"},
                                                   {**child, "assignee_id": b, "amount": "400.00"}])
    children = [app.get(SalesTarget, c) for c in outcome.extra["child_ids"]]
    assert sum(c.amount for c in children) == app.get(SalesTarget, parent.id).amount
    assert {c.parent_id for c in children} == {parent.id}


def test_approved_child_revision_moves_the_parents_allocation(app):
    leader, a = employees(app, "leader", "a")
    with as_("mgr-1", "channel_manager"):
        parent = app.set_target(assignee_type="team", assignee_id=leader, period="2026", amount="1000.00", kpis=KPIS)
        child = app.set_target(assignee_type="employee", assignee_id=a, period="2026", amount="500.00",
                               kpis=KPIS, parent_id=parent.id)
        revision = app.request_target_revision(child.id, "800.00", "bigger territory")
    with as_("gm-1", "general_manager"):
        app.approve_target_revision(child.id, revision.extra["revision_id"])
    assert app.get(SalesTarget, parent.id).allocated == Decimal("800.00")


# Idempotency ---------------------------------------------------------------------------


def test_repeat_with_the_same_key_writes_once_and_returns_the_first_outcome(app):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration", idempotency_key="sale-0001"):
        first = app.record_sale(contract, "O-1", "100.00", "2026-02-01")
    with as_("erp", "integration", idempotency_key="sale-0001"):
        again = app.record_sale(contract, "O-1", "100.00", "2026-02-01")
    assert (again.id, again.version, again.position, again.replayed) == (first.id, first.version, first.position, True)
    assert app.get(Contract, contract).version == first.version


def test_same_key_with_a_different_command_is_refused(app):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration", idempotency_key="sale-0002"):
        app.record_sale(contract, "O-2", "100.00", "2026-02-01")
    with as_("erp", "integration", idempotency_key="sale-0002"), refused("idempotency_key_reused"):
        app.record_sale(contract, "O-2", "999.00", "2026-02-01")


def test_keys_belong_to_their_actor(app):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration", idempotency_key="k"):
        app.record_sale(contract, "O-3", "100.00", "2026-02-01")
    with as_("crm", "integration", idempotency_key="k"):
        other = app.record_sale(contract, "O-4", "100.00", "2026-02-01")
    assert not other.replayed


def test_concurrent_repeats_of_one_key_write_once(app):
    contract = signed_contract(app, partner(app))
    start = threading.Barrier(6)
    outcomes, in_flight = [], []

    def send() -> None:
        start.wait()
        try:
            with as_("erp", "integration", idempotency_key="burst"):
                outcomes.append(app.record_sale(contract, "O-9", "100.00", "2026-02-01"))
        except DomainError as refusal:
            in_flight.append(refusal.code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each repeat either replays the first outcome or is told the first is still running.
    assert len(outcomes) + len(in_flight) == 6
    assert set(in_flight) <= {"idempotency_key_in_flight"}
    assert len({(o.version, o.position) for o in outcomes}) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    sales = [h for h in app.history(contract) if h.type == "Contract.SaleRecorded"]
    assert len(sales) == 1
    with as_("erp", "integration", idempotency_key="burst"):
        assert app.record_sale(contract, "O-9", "100.00", "2026-02-01").replayed


def test_a_key_whose_command_is_running_answers_in_flight(app, database_url):
    contract = signed_contract(app, partner(app))
    with app.event_recorder.key_in_flight("erp", "slow-one") as acquired:
        assert acquired
        with as_("erp", "integration", idempotency_key="slow-one"), refused("idempotency_key_in_flight"):
            app.record_sale(contract, "O-10", "100.00", "2026-02-01")
    with as_("erp", "integration", idempotency_key="slow-one"):
        assert not app.record_sale(contract, "O-10", "100.00", "2026-02-01").replayed


# Concurrency ---------------------------------------------------------------------------


def test_if_match_version_mismatch_is_refused(app):
    agent = partner(app, "retailer")  # no archive to file: approved at version 2
    with as_("mgr-1", "channel_manager", expected_version=1), refused("version_mismatch"):
        app.suspend_partner(agent, "late reports")
    with as_("mgr-1", "channel_manager", expected_version=2):
        app.terminate_partner(agent, "closing", "2026-12-31")


def test_concurrent_writers_to_one_record_never_lose_an_update(app):
    contract = signed_contract(app, partner(app))
    writers, per_writer = 6, 8
    start = threading.Barrier(writers)

    def sell(writer: int) -> None:
        start.wait()
        for n in range(per_writer):
            with as_("erp", "integration"):
                app.record_sale(contract, f"W{writer}-{n}", "10.00", "2026-02-01")

    threads = [threading.Thread(target=sell, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = app.get(Contract, contract)
    assert len(record.orders) == writers * per_writer
    assert [h.version for h in app.history(contract)] == list(range(1, record.version + 1))


# Time travel, history, snapshots -------------------------------------------------------


def test_any_record_at_a_version_or_as_of_a_moment(app):
    agent = partner(app, "retailer")
    before_termination = datetime.now(UTC)
    time.sleep(0.01)
    with as_("mgr-1", "channel_manager"):
        app.terminate_partner(agent, "closing", "2026-12-31")
    assert app.get(Partner, agent, version=1).status == "applied"
    assert app.get(Partner, agent, version=2).status == "approved"
    assert app.get(Partner, agent, as_of=before_termination).status == "approved"
    assert app.get(Partner, agent).status == "terminated"
    with refused("not_found"):
        app.get(Partner, agent, version=9)
    with refused("not_found"):
        app.get(Partner, agent, as_of=datetime(2000, 1, 1, tzinfo=UTC))
    with refused("not_found"):
        app.get(Contract, agent)  # a partner is not a contract


def test_history_tells_who_what_when_and_why(app):
    with as_("hr-1", "hr", correlation_id="req-1"):
        hired = app.hire_employee(name="Sun Li", role="sales_rep", hired_on="2026-01-05")
    with as_("hr-2", "hr", correlation_id="req-2", causation_id="review-7"):
        app.regularize_employee(hired.id, "2026-02-20")
    first, second = app.history(hired.id)
    assert (first.type, first.actor, first.roles, first.correlation_id) == ("Employee.Hired", "hr-1", ["hr"], "req-1")
    assert str(first.effective_on) == "2026-01-05"
    assert (second.type, second.actor, second.causation_id, str(second.effective_on)) == (
        "Employee.Regularized", "hr-2", "review-7", "2026-02-20")
    assert second.position > first.position and second.recorded_at >= first.recorded_at
    assert second.data == {"on": second.effective_on}


def test_snapshots_give_the_same_record_as_a_full_replay(app, database_url):
    contract = signed_contract(app, partner(app))
    for n in range(230):
        with as_("erp", "integration"):
            app.record_sale(contract, f"O-{n}", "10.00", "2026-02-01")
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute(
            "SELECT originator_version FROM snapshots WHERE originator_id = %s ORDER BY 1", (contract,))]
    assert versions == [100, 200]
    from_snapshot = app.get(Contract, contract)
    replayed = ChannelDepartment(database_url, env={"IS_SNAPSHOTTING_ENABLED": "no"})
    try:
        assert replayed.snapshots is None
        full = replayed.repository.get(contract)
    finally:
        replayed.close()
    assert vars(from_snapshot) == vars(full)
    assert app.get(Contract, contract, version=150).version == 150


def test_a_bulk_save_snapshots_the_record_it_holds_not_a_replay_of_it(app, database_url):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"):
        app.import_sales([SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "10.00",
                                                       "sold_on": "2026-02-01"}) for n in range(250)])
    head = app.get(Contract, contract).version
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute(
            "SELECT originator_version FROM snapshots WHERE originator_id = %s ORDER BY 1", (contract,))]
    assert versions == [head]  # one save crossing two multiples of 100: one snapshot, at its end
    app.records.forget(contract)
    replayed = ChannelDepartment(database_url, env={"IS_SNAPSHOTTING_ENABLED": "no"})
    try:
        assert vars(app.get(Contract, contract)) == vars(replayed.repository.get(contract))
    finally:
        replayed.close()


def test_snapshots_of_a_long_record_grow_apart_with_it(app, database_url):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"):
        for first in range(0, 3000, 100):
            app.import_sales([SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "10.00",
                                                           "sold_on": "2026-02-01"}) for n in range(first, first + 100)])
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute(
            "SELECT originator_version FROM snapshots WHERE originator_id = %s ORDER BY 1", (contract,))]
    gaps = [later - earlier for earlier, later in zip(versions, versions[1:], strict=False)]
    # Every 100 events up to 1 000, then about every tenth of the record: fewer, never further
    # apart than a tenth of the record (plus the save that crossed the mark).
    assert all(gap >= 100 for gap in gaps) and len(versions) < 3000 // 100
    assert all(later - earlier <= max(100, later // 10) + 100 for earlier, later in zip(versions, versions[1:],
                                                                                           strict=False))
    assert versions[-1] > 2800


def test_a_snapshot_from_before_orders_were_strings_is_upcast(app, database_url):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "120.00", "2026-02-01")
        app.record_return(contract, "O-1", "20.00", "2026-02-03")
    record = app.get(Contract, contract)
    old = Contract.Snapshot.take(record)
    old.state.pop("class_version")
    old.state["orders"] = {"O-1": ["120.00", "20.00", "2026-02-01"]}  # the shape of class version 1
    app.snapshots.put([old])
    app.records.forget(contract)
    loaded = app.get(Contract, contract)
    assert loaded.orders == record.orders
    assert loaded.order_line("O-1") == (Decimal("120.00"), Decimal("20.00"), date(2026, 2, 1))


def test_events_are_immutable_in_the_database(app, database_url):
    partner(app)
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE events SET state = 'x'")
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM events")


def test_every_event_of_every_aggregate_shares_one_global_order(app):
    with as_("hr-1", "hr"):
        leader = app.hire_employee(name="A", role="sales_rep", hired_on="2026-01-05")
    partner(app, "retailer")
    with as_("mgr-1", "channel_manager"):
        app.set_target(assignee_type="team", assignee_id=leader.id, period="2026", amount="1.00", kpis=KPIS)
    notifications = EventLog(app.event_recorder).read()
    assert [n.id for n in notifications] == [1, 2, 3, 4]
    assert [n.topic.split(":")[1] for n in notifications] == [
        "Employee.Hired", "Partner.Applied", "Partner.Reviewed", "SalesTarget.Set"]


def test_transfer_to_someone_who_is_not_a_current_employee_is_refused(app):
    with as_("hr-1", "hr"):
        manager = app.hire_employee(name="Chen Jie", role="manager", hired_on="2026-01-05", contract_months=0)
        rep = app.hire_employee(name="Liu Yang", role="sales_rep", hired_on="2026-01-05")
        app.warn_employee(manager.id, "dereliction", "abandoned post")
        app.dismiss_employee(manager.id, "2026-02-01", "dereliction")
        with refused("unknown_employee"):
            app.transfer_employee(rep.id, manager.id, "2026-03-01")


def test_bulk_import_refuses_lines_one_by_one_and_keeps_each_line_a_command(app):
    from channel_domain.application import SalesLine

    contract = signed_contract(app, partner(app, "enterprise_agent"), territory="Zhejiang")
    missing = contract.__class__(int=5)
    lines = [
        SalesLine(contract, "sale", {"order_id": "A", "amount": "10.00", "sold_on": "2026-02-01", "region": "Zhejiang"}),
        SalesLine(contract, "sale", {"order_id": "B", "amount": "10.00", "sold_on": "2026-02-01", "region": "Jiangsu"}),
        SalesLine(missing, "sale", {"order_id": "C", "amount": "10.00", "sold_on": "2026-02-01"}),
        SalesLine(contract, "return", {"order_id": "A", "amount": "4.00", "returned_on": "2026-02-02"}),
        SalesLine(contract, "sale", {"order_id": "A", "amount": "10.00", "sold_on": "2026-02-01", "region": "Zhejiang"}),
    ]
    with as_("erp", "integration", correlation_id="batch-9"):
        outcomes = app.import_sales(lines)
    assert [o.code if o else None for o in outcomes] == [None, "outside_territory", "not_found", None, "duplicate_order"]
    sold, returned = app.history(contract)[-2:]
    assert (sold.type, returned.type) == ("Contract.SaleRecorded", "Contract.ReturnRecorded")
    assert sold.correlation_id == returned.correlation_id == "batch-9"
    assert sold.position + 1 == returned.position
    sale_event, return_event = list(app.events.get(contract))[-2:]
    assert sale_event.meta["command_id"] != return_event.meta["command_id"]


def test_no_event_holds_a_nul_character_which_no_read_model_could_store(app):
    """Whatever the caller (the API refuses it first): such an event would stop the projections."""
    with as_("spec-1", "channel_specialist"), refused("validation_error"):
        app.register_partner(kind="retailer", name="a\x00b")
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"), refused("validation_error"):
        app.record_sale(contract, "O-\x00", "10.00", "2026-02-01")
    with psycopg.connect(app.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE position(%s IN convert_from(state, 'UTF8')) > 0",
                            ("\\u0000",)).fetchone()[0] == 0
