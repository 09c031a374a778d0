"""「本公司在同一时期只能委托一家销售代理商」 under a race: many managers sign overlapping
sales-agent contracts at the same instant; exactly one may win, whatever the interleaving."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg

from channel_domain.application import ChannelDepartment
from channel_domain.contract import Contract
from channel_domain.errors import DomainError
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import CONTENTS, partner

RACERS = 12


def approved_contracts(app: ChannelDepartment, kind: str, territory: Callable[[int], str | None]) -> list:
    contracts = []
    for n in range(RACERS):
        agent = partner(app, kind)
        with as_("mgr-1", "channel_manager"):
            draft = app.draft_contract(
                partner_id=agent,
                starts_on=f"2026-{n % 12 + 1:02d}-01",  # every pair of terms overlaps
                ends_on="2027-12-31",
                territory=territory(n),
                commission={"type": "flat", "rate": "0.02"},
                **CONTENTS,
            )
            app.submit_contract(draft.id)
        with as_("gm-1", "general_manager"):
            app.approve_contract(draft.id)
        contracts.append(draft.id)
    return contracts


def race_to_sign(database_url: str, kind: str = "sales_agent",
                 territory: Callable[[int], str | None] = lambda n: None) -> tuple[list, list, list[str]]:
    """Signs RACERS approved contracts of `kind` at once; returns them, the signed, the refusals."""
    app = ChannelDepartment(database_url, env={"POSTGRES_POOL_SIZE": str(RACERS + 2)})
    contracts = approved_contracts(app, kind, territory)
    start = threading.Barrier(RACERS)
    signed, refusals = [], []

    def sign(contract_id) -> None:
        start.wait()
        try:
            with as_("mgr-1", "channel_manager"):
                app.sign_contract(contract_id, "2025-12-20")
            signed.append(contract_id)
        except DomainError as refusal:
            refusals.append(refusal.code)

    threads = [threading.Thread(target=sign, args=(c,)) for c in contracts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [app.get(Contract, c).status for c in contracts]
    app.close()
    assert statuses.count("signed") == len(signed)
    return contracts, signed, refusals


def test_exactly_one_of_many_racing_signatures_wins(database_url):
    _, signed, refusals = race_to_sign(database_url)
    assert len(signed) == 1
    assert refusals == ["exclusive_sales_agent_exists"] * (RACERS - 1)
    with psycopg.connect(database_url) as conn:
        in_force = conn.execute("SELECT count(*) FROM contracts_in_force").fetchone()[0]
    assert in_force == 1


def test_control_without_the_constraint_the_race_lets_several_win(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE contracts_in_force DROP CONSTRAINT one_sales_agent_at_a_time")
    _, signed, _ = race_to_sign(database_url)
    assert len(signed) > 1, "nothing but the exclusion constraint should stand in the way"
