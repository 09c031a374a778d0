"""A sale dated while the partner is suspended, or credited to an employee after the
employment ended, must be impossible (domain.md §1, §7) — whatever copy of the partner a
server process checked the sale on, and however a sale and a suspension race."""

from __future__ import annotations

import random
import threading
import time
from datetime import date

import psycopg

from channel_domain.application import ChannelDepartment
from channel_domain.contract import Contract
from channel_domain.errors import DomainError
from channel_domain.partner import Partner
from tests.channel_domain.helpers import as_, refused
from tests.channel_domain.test_application import CONTENTS, partner, signed_contract

PROCESSES = 4  # server processes, each with its own record cache
ROUNDS = 6
SUSPENDED_ON = "2026-05-10"


def test_a_suspension_by_another_process_stops_a_sale_checked_on_its_cached_partner(app, database_url):
    agent = partner(app, "enterprise_agent")
    contract_id = signed_contract(app, agent, territory="Zhejiang")
    with ChannelDepartment(database_url) as other:
        with as_("int-1", "integration"):
            other.record_sale(contract_id, "o-1", "100.00", "2026-03-01", region="Zhejiang")  # caches the partner
        with as_("mgr-1", "channel_manager"):
            app.suspend_partner(agent, "fraud investigation", on="2026-03-05")
        assert app.get(Partner, agent).status == "suspended"
        with as_("int-1", "integration"), refused("partner_not_active"):
            other.record_sale(contract_id, "o-2", "100.00", "2026-03-10", region="Zhejiang")
        with as_("int-1", "integration"):  # the import path, too
            (outcome,) = other.import_sales([_sale(contract_id, "o-3", "2026-03-11", region="Zhejiang")])
        assert outcome is not None and outcome.code == "partner_not_active"
    assert set(app.get(Contract, contract_id).orders) == {"o-1"}


def test_an_import_line_checked_on_the_stale_copy_is_caught_though_a_later_line_read_a_fresh_one(
        app, database_url):
    agent = partner(app)
    contract_id = signed_contract(app, agent)
    with as_("mgr-1", "channel_manager"):
        app.suspend_partner(agent, "late reports", on="2026-01-10")
        app.reinstate_partner(agent, "caught up", on="2026-01-20")
    with ChannelDepartment(database_url) as other:
        with as_("erp", "integration"):
            other.record_sale(contract_id, "o-1", "100.00", "2026-03-01")  # caches the partner
        with as_("mgr-1", "channel_manager"):
            app.suspend_partner(agent, "fraud investigation", on="2026-03-05")
        other.records.forget(contract_id)  # refusals on a cached contract are re-run on a fresh one: not this time
        with as_("erp", "integration"):
            outcomes = other.import_sales([
                _sale(contract_id, "o-2", "2026-03-10"),  # passes on the stale copy
                _sale(contract_id, "o-3", "2026-01-15"),  # refused on it: the fresh copy is read
                _sale(contract_id, "o-4", "2026-02-01"),  # passes on the fresh copy
            ])
    assert [outcome.code if outcome else None for outcome in outcomes] == [
        "partner_not_active", "partner_not_active", None]
    assert set(app.get(Contract, contract_id).orders) == {"o-1", "o-4"}


def test_a_separation_by_another_process_stops_a_sale_credited_on_its_cached_employee(app, database_url):
    contract_id = signed_contract(app, partner(app))
    with as_("hr-1", "hr"):
        rep = app.hire_employee(name="Xu Tao", role="sales_rep", hired_on="2026-01-05").id
    with ChannelDepartment(database_url) as other:
        with as_("erp", "integration"):
            other.record_sale(contract_id, "o-1", "100.00", "2026-03-01", employee_id=rep)  # caches the employee
        with as_("hr-1", "hr"):
            app.separate_employee(rep, "2026-03-05", "resignation")
        with as_("erp", "integration"), refused("unknown_employee"):
            other.record_sale(contract_id, "o-2", "100.00", "2026-03-10", employee_id=rep)
    assert set(app.get(Contract, contract_id).orders) == {"o-1"}


def _sale(contract_id, order_id: str, sold_on: str, **fields):  # noqa: ANN202
    from channel_domain.application import SalesLine

    return SalesLine(contract_id, "sale", {"order_id": order_id, "amount": "100.00", "sold_on": sold_on, **fields})


def race_suspension_against_sales(database_url: str) -> list[tuple[bool, list[date]]]:
    """Per round, a partner with a contract in each process: one process suspends the partner
    from SUSPENDED_ON while every process sells on its own contract dated that day, each on
    the partner it cached a moment before. (suspension committed, sale dates committed)."""
    processes = [ChannelDepartment(database_url) for _ in range(PROCESSES)]
    results = []
    try:
        for round_ in range(ROUNDS):
            agent = partner(processes[0], "retailer")
            contracts = [signed_contract(processes[0], agent) for _ in processes]
            for n, (process, contract_id) in enumerate(zip(processes, contracts, strict=True)):
                with as_("erp", "integration"):  # each process caches the partner, active
                    process.record_sale(contract_id, f"warm-{n}", "100.00", "2026-05-01")
            start = threading.Barrier(PROCESSES + 1)
            suspended = []

            def suspend() -> None:
                start.wait()
                try:
                    with as_("mgr-1", "channel_manager"):
                        processes[0].suspend_partner(agent, "fraud investigation", on=SUSPENDED_ON)
                    suspended.append(True)
                except DomainError as refusal:
                    assert refusal.code == "sales_after_suspension", refusal

            def sell(process: ChannelDepartment, contract_id, n: int) -> None:
                start.wait()
                time.sleep(random.uniform(0, 0.002 * 2 ** round_))  # some before the suspension, some after
                for attempt in range(3):
                    try:
                        with as_("erp", "integration"):
                            process.record_sale(contract_id, f"r{round_}-{n}-{attempt}", "100.00", SUSPENDED_ON)
                    except DomainError as refusal:
                        assert refusal.code == "partner_not_active", refusal
                    time.sleep(random.uniform(0, 0.005))

            threads = [threading.Thread(target=suspend)] + [
                threading.Thread(target=sell, args=(process, contract_id, n))
                for n, (process, contract_id) in enumerate(zip(processes, contracts, strict=True))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            fresh = ChannelDepartment(database_url)
            try:
                sold = [day for contract_id in contracts
                        for day in _sale_days(fresh.get(Contract, contract_id)) if day >= date(2026, 5, 10)]
            finally:
                fresh.close()
            results.append((bool(suspended), sold))
    finally:
        for process in processes:
            process.close()
    return results


def _sale_days(contract: Contract) -> list[date]:
    return [date.fromisoformat(order.split("|")[2]) for order in contract.orders.values()]


def test_no_sale_dated_in_a_suspension_commits_however_they_race(database_url):
    results = race_suspension_against_sales(database_url)
    for suspension_committed, sales_in_it in results:
        if suspension_committed:
            assert sales_in_it == [], "a sale dated while the partner is suspended committed"
        else:
            assert sales_in_it, "the suspension was refused for sales that are not there"
    with psycopg.connect(database_url) as conn:  # every suspension moved its partner's gate
        gates = conn.execute("SELECT count(*) FROM selling_gates").fetchone()[0]
    assert gates == sum(committed for committed, _ in results)


def test_an_if_match_sale_is_no_412_when_only_its_partner_moved(app, database_url):
    """A gate moved by a suspension from a later date is not the contract moving: a sale dated
    before it, pinned to the contract's version, is taken, not answered version_mismatch."""
    agent = partner(app, "retailer")
    first, second = signed_contract(app, agent), signed_contract(app, agent)
    with ChannelDepartment(database_url) as other:
        with as_("erp", "integration"):
            other.record_sale(first, "o-1", "100.00", "2026-03-01")  # other's copy of the partner
        with as_("mgr-1", "channel_manager"):
            app.suspend_partner(agent, "audit", on="2026-06-01")
        version = app.get(Contract, second).version
        with as_("erp", "integration", expected_version=version):
            other.record_sale(second, "o-2", "100.00", "2026-03-02")
    assert "o-2" in app.get(Contract, second).orders


def test_a_contract_signed_while_its_partner_is_terminated_does_not_outlive_the_partner(app, database_url):
    """domain.md §1: terminating a partner ends every contract of its in force or signed. A
    signature racing the termination is checked on the partner's gate like a sale: either it
    commits first and the termination ends it too, or it sees the termination and is refused."""
    agent = partner(app, "retailer")
    signed_contract(app, agent)  # the termination ends it, and so writes the registry
    with as_("mgr-1", "channel_manager"):
        pending = app.draft_contract(partner_id=agent, starts_on="2026-02-01", ends_on="2026-12-31",
                                     commission={"type": "flat", "rate": "0.03"}, **CONTENTS).id
        app.submit_contract(pending)
    with as_("gm-1", "general_manager"):
        app.approve_contract(pending)
    with ChannelDepartment(database_url) as other, psycopg.connect(database_url, autocommit=True) as holder:
        # Registry writers take turns on this lock (migration 0014): holding it lets the
        # termination pass its own checks and wait, while the signature is started beside it.
        holder.execute("SELECT pg_advisory_lock(7438190523601042)")
        outcomes: list = []

        def run(name, command) -> None:
            try:
                command()
                outcomes.append(name)
            except DomainError as refused_:
                outcomes.append(refused_.code)

        def terminate() -> None:
            with as_("mgr-1", "channel_manager"):
                app.terminate_partner(agent, "fraud", on="2026-04-30")

        def sign() -> None:
            with as_("mgr-2", "channel_manager"):
                other.sign_contract(pending, "2026-02-01")

        threads = [threading.Thread(target=run, args=("terminated", terminate)),
                   threading.Thread(target=run, args=("signed", sign))]
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        holder.execute("SELECT pg_advisory_unlock(7438190523601042)")
        for thread in threads:
            thread.join()
    assert app.get(Partner, agent).status == "terminated", outcomes
    contract = app.get(Contract, pending)
    assert contract.status != "signed" or contract.last_day_in_force <= date(2026, 4, 30), outcomes
