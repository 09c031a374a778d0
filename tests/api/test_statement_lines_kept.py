"""A statement's lines are kept as built in the server (issue 18, P7) and given again only while
the month holds the same lines: a sale between two reads shows at once, with its totals, and a
rebuild of the read model, or its tables emptied and projected again, leave no copy of the old
lines behind — even when the new tables hold as many lines up to the same position.

Flat terms: 5 % of each sale, returns clawed back at the same rate."""

from __future__ import annotations

import psycopg

from api.deps import projection_runner
from api.routes.commissions import lines_cache
from channel_domain.store.rebuilding import Rebuilder
from projections.commissions import Commissions
from tests.api.conftest import _AppRequest
from tests.api.flows import approved_partner, signed_contract
from tests.api.test_commissions import give_back, money_lines, sale, statement

FLAT_5 = {"type": "flat", "rate": "0.05"}
FIGURES = ("gross_sales", "returns", "net_sales", "commission", "adjustments", "carried_in", "total_due", "carried_out")


def figures(body: dict) -> tuple:
    return tuple(body[name] for name in FIGURES)


def test_a_sale_between_two_reads_shows_in_the_second_with_its_totals(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission=FLAT_5)
    sale(api, contract, "A", "1000.00", "2026-03-02")
    first = statement(api, partner, "2026-03")
    assert money_lines(first) == [("sale", "A", "1000.00", "0.05", "50.00")]
    assert figures(first) == ("1000.00", "0.00", "1000.00", "50.00", "0.00", "0.00", "50.00", "0.00")
    kept = lines_cache(api.department)
    assert len(kept) == 1  # the month's lines are kept …
    assert statement(api, partner, "2026-03") == first  # … and given again while the month holds them

    sale(api, contract, "B", "400.00", "2026-03-05")  # 20.00
    second = statement(api, partner, "2026-03")
    assert money_lines(second) == [("sale", "A", "1000.00", "0.05", "50.00"), ("sale", "B", "400.00", "0.05", "20.00")]
    assert figures(second) == ("1400.00", "0.00", "1400.00", "70.00", "0.00", "0.00", "70.00", "0.00")

    give_back(api, contract, "A", "200.00", "2026-03-06")  # -10.00
    sale(api, contract, "C", "300.00", "2026-04-01")  # April's: March's lines stay as they were
    third = statement(api, partner, "2026-03")
    assert money_lines(third) == [("sale", "A", "1000.00", "0.05", "50.00"), ("sale", "B", "400.00", "0.05", "20.00"),
                                  ("return", "A", "-200.00", "0.05", "-10.00")]
    assert figures(third) == ("1400.00", "200.00", "1200.00", "60.00", "0.00", "0.00", "60.00", "0.00")
    assert statement(api, partner, "2026-03") == third
    april = statement(api, partner, "2026-04")
    assert money_lines(april) == [("sale", "C", "300.00", "0.05", "15.00")]
    assert figures(april) == ("300.00", "0.00", "300.00", "15.00", "0.00", "0.00", "15.00", "0.00")

    # As known before B, and with proofs: built from the lines, never from what is kept.
    known = statement(api, partner, "2026-03", as_known_at=second["lines"][1]["recorded_at"].replace("Z", "+00:00"))
    assert money_lines(known) == money_lines(second)
    before_b = statement(api, partner, "2026-03", as_known_at=first["lines"][0]["recorded_at"].replace("Z", "+00:00"))
    assert (money_lines(before_b), figures(before_b)) == (money_lines(first), figures(first))
    proven = statement(api, partner, "2026-03", proofs="true")
    assert money_lines(proven) == money_lines(third) and all("inclusion_proof" in line for line in proven["lines"])
    assert "inclusion_proof" not in statement(api, partner, "2026-03")["lines"][0]


def tamper(api, partner: str) -> None:
    """A line changed behind the projection's back (a read model gone wrong, say): what a rebuild
    is for. The month's count and last position stay as they were."""
    api.catch_up()
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        conn.execute("UPDATE commission_lines SET commission = 999.99 WHERE partner_id = %s", (partner,))


def test_no_kept_lines_outlive_a_rebuild_or_the_tables_projected_again(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission=FLAT_5)
    sale(api, contract, "A", "1000.00", "2026-03-02")
    tamper(api, partner)
    assert money_lines(statement(api, partner, "2026-03"))[0][-1] == "999.99"  # built from the bad line, and kept

    Rebuilder(api.department, Commissions()).rebuild(lambda *_: None)
    rebuilt = statement(api, partner, "2026-03")
    assert money_lines(rebuilt) == [("sale", "A", "1000.00", "0.05", "50.00")]
    assert figures(rebuilt)[3] == "50.00"

    tamper(api, partner)
    lines_cache(api.department).clear()
    assert money_lines(statement(api, partner, "2026-03"))[0][-1] == "999.99"
    # Emptied and projected again in place (the same tables): new rows, so a new version.
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(Commissions.tables)}")
        conn.execute("DELETE FROM projection_checkpoints WHERE name = 'commissions'")
    for projection in projection_runner(_AppRequest(api.client.app)).projections:
        if projection.name == "commissions":
            projection.reset()
    api.catch_up()
    again = statement(api, partner, "2026-03")
    assert money_lines(again) == [("sale", "A", "1000.00", "0.05", "50.00")]
    assert figures(again) == figures(rebuilt)


def test_a_month_row_written_by_the_previous_release_still_answers_every_line(api):
    """During a rolling upgrade (docs/deploy.md) nodes of the previous release project too, and
    their upsert names no `last_position`: the migration must not refuse it, and a row whose
    last position does not count all its lines must never bound (or keep) the lines answered."""
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission=FLAT_5)
    sale(api, contract, "A", "1000.00", "2026-03-02")
    api.catch_up()
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        # A month the previous release created: its insert has no last_position.
        conn.execute("INSERT INTO commission_month_totals (partner_id, period, sales, line_commission, lines)"
                     " SELECT partner_id, '2026-02', 0, 0, 1 FROM commission_month_totals WHERE partner_id = %s",
                     (partner,))
        conn.execute("DELETE FROM commission_month_totals WHERE partner_id = %s AND period = '2026-02'", (partner,))
    sale(api, contract, "B", "400.00", "2026-03-05")
    api.catch_up()
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        # As the previous release leaves March after B: the count moved, the last position did not.
        conn.execute("UPDATE commission_month_totals SET last_position = last_position - 1"
                     " WHERE partner_id = %s AND period = '2026-03'", (partner,))
    lines_cache(api.department).clear()
    both = [("sale", "A", "1000.00", "0.05", "50.00"), ("sale", "B", "400.00", "0.05", "20.00")]
    assert money_lines(statement(api, partner, "2026-03")) == both
    assert len(lines_cache(api.department)) == 0  # not kept under a version that does not name them
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        conn.execute("UPDATE commission_month_totals SET last_position = NULL WHERE partner_id = %s", (partner,))
    assert money_lines(statement(api, partner, "2026-03")) == both
