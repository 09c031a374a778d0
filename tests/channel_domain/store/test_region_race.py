"""One enterprise agent per region a day (「分别在不同的地区」) under a race: many managers sign
overlapping enterprise-agent contracts for one region at the same instant; exactly one may win,
whatever the interleaving — and a contract for another region is not held up by them."""

from __future__ import annotations

import threading

import psycopg

from channel_domain.application import ChannelDepartment
from channel_domain.contract import Contract
from channel_domain.errors import DomainError
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import CONTENTS, partner

RACERS = 12


def approved_contracts(app: ChannelDepartment) -> list:
    contracts = []
    for n in range(RACERS):
        agent = partner(app, "enterprise_agent")
        with as_("mgr-1", "channel_manager"):
            draft = app.draft_contract(
                partner_id=agent,
                starts_on=f"2026-{n % 12 + 1:02d}-01",  # every pair of terms overlaps
                ends_on="2027-12-31",
                territory="Zhejiang" if n else "Jiangsu",  # the first elsewhere: it must win too
                commission={"type": "flat", "rate": "0.03"},
                **CONTENTS,
            )
            app.submit_contract(draft.id)
        with as_("gm-1", "general_manager"):
            app.approve_contract(draft.id)
        contracts.append(draft.id)
    return contracts


def race_to_sign(database_url: str) -> tuple[list, list[str]]:
    app = ChannelDepartment(database_url, env={"POSTGRES_POOL_SIZE": str(RACERS + 2)})
    contracts = approved_contracts(app)
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
    assert contracts[0] in signed
    return signed, refusals


def test_exactly_one_of_many_racing_signatures_for_a_region_wins(database_url):
    signed, refusals = race_to_sign(database_url)
    assert len(signed) == 2  # one for Zhejiang, and the one for Jiangsu
    assert refusals == ["region_taken"] * (RACERS - 2)
    with psycopg.connect(database_url) as conn:
        in_force = conn.execute("SELECT territory, count(*) FROM contracts_in_force GROUP BY 1 ORDER BY 1").fetchall()
    assert in_force == [("Jiangsu", 1), ("Zhejiang", 1)]


def test_control_without_the_constraint_the_race_lets_several_win(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE contracts_in_force DROP CONSTRAINT one_enterprise_agent_per_region")
    signed, _ = race_to_sign(database_url)
    assert len(signed) > 2, "nothing but the exclusion constraint should stand in the way"
