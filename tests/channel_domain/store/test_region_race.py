"""One enterprise agent per region a day (「分别在不同的地区」) under a race: many managers sign
overlapping enterprise-agent contracts for one region at the same instant; exactly one may win,
whatever the interleaving — and a contract for another region is not held up by them."""

from __future__ import annotations

import psycopg

from tests.channel_domain.store.test_exclusive_sales_agent_race import RACERS, race_to_sign


def race_for_a_region(database_url: str) -> tuple[list, list[str]]:
    # The first contract is for another region: it must win too.
    contracts, signed, refusals = race_to_sign(database_url, "enterprise_agent",
                                               lambda n: "Zhejiang" if n else "Jiangsu")
    assert contracts[0] in signed
    return signed, refusals


def test_exactly_one_of_many_racing_signatures_for_a_region_wins(database_url):
    signed, refusals = race_for_a_region(database_url)
    assert len(signed) == 2  # one for Zhejiang, and the one for Jiangsu
    assert refusals == ["region_taken"] * (RACERS - 2)
    with psycopg.connect(database_url) as conn:
        in_force = conn.execute("SELECT territory, count(*) FROM contracts_in_force GROUP BY 1 ORDER BY 1").fetchall()
    assert in_force == [("Jiangsu", 1), ("Zhejiang", 1)]


def test_control_without_the_constraint_the_race_lets_several_win(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE contracts_in_force DROP CONSTRAINT one_enterprise_agent_per_region")
    signed, _ = race_for_a_region(database_url)
    assert len(signed) > 2, "nothing but the exclusion constraint should stand in the way"
