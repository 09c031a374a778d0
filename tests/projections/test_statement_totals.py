"""A statement as it stands takes its months' sums from `commission_month_totals` (issue 18,
P7), kept by the commissions projection in the batch that writes the lines; as known at a past
time it sums the lines recorded by then. Both must say the same of the same ledger: a random
story of sales (late ones too), returns, a broker's deals, amendments with past effective
dates, upheld and rejected disputes, remittances, payouts and month closes (which move late
lines into open months as adjustments), for a consignee, a retailer and a broker, projected in
batches of random size, is read both ways at random points and at the end."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from channel_domain.aggregate import ChannelAggregate
from channel_domain.store.projecting import ProjectionRunner
from projections.commissions import Commissions, close_facts, statement_line, statements
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract
from tests.channel_domain.test_contract_requests import approve_amendment, request_amendment
from tests.projections.test_random_ledger import random_terms

LATER = datetime(2100, 1, 1, tzinfo=UTC)  # as known at a time after everything: every line, summed


def read_both_ways(database_url: str) -> int:
    """Every statement (a month with a line, payout or remittance) read now and as known at a
    later time; and each month's totals row against its lines. Returns the statements read."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
        curs.execute("SELECT partner_id, period FROM commission_lines UNION SELECT partner_id, period"
                     " FROM commission_payouts UNION SELECT partner_id, period FROM commission_remittances")
        keys = [(row["partner_id"], row["period"]) for row in curs.fetchall()]
        now, summed = statements(curs, keys), statements(curs, keys, as_known_at=LATER)
        assert now == summed
        # The row says which lines the month holds: how many, up to which position.
        curs.execute(
            "SELECT partner_id, period, count(*) AS lines, max(position) AS last_position FROM commission_lines"
            " GROUP BY 1, 2 ORDER BY 1, 2")
        by_lines = curs.fetchall()
        curs.execute("SELECT partner_id, period, lines, last_position FROM commission_month_totals ORDER BY 1, 2")
        assert curs.fetchall() == by_lines
        return len(keys)


def test_figures_from_the_month_totals_are_the_figures_from_the_lines(app, database_url, monkeypatch):
    rng = random.Random(18)
    clock = [datetime(2026, 1, 20, 15, 0, tzinfo=UTC)]
    monkeypatch.setattr(ChannelAggregate.Event, "create_timestamp", staticmethod(lambda: clock[0]))
    consignee = partner(app, "consignee")
    retailer = partner(app, "retailer")
    broker = partner(app, "broker", commission_rate="0.0125")
    for paid in (consignee, retailer, broker):  # a payout is prepared to an approved account
        with as_("spec-1", "channel_specialist"):
            change = app.request_payout_account_change(paid, "6222 0001").extra["change_id"]
        with as_("fin-1", "finance"):
            app.approve_payout_account_change(paid, UUID(change))
    contracts = {
        signed_contract(app, consignee, commission={"type": "tiered", "tiers": [
            {"up_to": "20000.00", "rate": "0.0333"}, {"rate": "0.0517"}]}, fee_rate="0.0175"): consignee,
        signed_contract(app, retailer, commission={"type": "flat", "rate": "0.0275"}): retailer,
    }
    runner = ProjectionRunner(app, [Commissions()], batch_size=rng.randint(3, 12))
    left: dict[tuple, tuple[D, date]] = {}  # (contract, order) -> (not yet returned, sold on)
    closed: list[str] = []
    read, happened = 0, set()
    for step in range(260):
        clock[0] += timedelta(hours=rng.randint(1, 30))
        roll = rng.random()
        contract = rng.choice(sorted(contracts))
        first_open = date(2026, len(closed) + 1, 1)
        returnable = sorted(key for key, (amount, _) in left.items() if amount and key[0] == contract)
        if roll < 0.04:
            happened.add("amendment")
            with as_("erp", "integration"):
                approve_amendment(app, contract, request_amendment(
                    app, contract, str(date(2026, 1, 1) + timedelta(days=rng.randint(0, 90))), random_terms(rng),
                    reason="new scale"))
        elif roll < 0.07 and len(closed) < 3:
            # Close the next month: first every partner it owes gets its payout prepared.
            period = f"2026-{len(closed) + 1:02d}"
            runner.catch_up_all()
            with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
                unprepared = close_facts(curs, period, closed[-1] if closed else None).unprepared
                owed = statements(curs, [(p, period) for p in unprepared])
            for owed_partner in unprepared:
                with as_("spec-1", "channel_specialist"):
                    app.prepare_payout(owed_partner, period, str(owed[(owed_partner, period)]["total_due"]))
            runner.catch_up_all()
            with as_("fin-1", "finance"):
                app.close_commission_period(period, close_facts)
            closed.append(period)
            happened.add("close")
        elif roll < 0.11:
            runner.catch_up_all()
            with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
                curs.execute("SELECT partner_id, period, position FROM commission_lines"
                             " WHERE kind <> 'adjustment' ORDER BY random() LIMIT 1")
                line = curs.fetchone()
            if line is None:
                continue
            with as_("spec-1", "channel_specialist"):
                dispute = app.raise_commission_dispute(line["partner_id"], line["period"], line["position"],
                                                       "priced wrong", statement_line).extra["dispute_id"]
            upheld = rng.random() < 0.7
            with as_("fin-2", "finance"):
                app.resolve_commission_dispute(line["partner_id"], line["period"], dispute,
                                               "upheld" if upheld else "rejected", "checked",
                                               str(D(rng.randint(-5000, 5000)) / 100) if upheld else None)
            happened.add("dispute")
        elif roll < 0.17:
            with as_("spec-1", "channel_specialist"):
                app.record_deal(broker, f"D{step}", str(D(rng.randint(100, 3_000_000)) / 100),
                                str(max(first_open - timedelta(days=rng.randint(-60, 40)), date(2026, 1, 21))))
            happened.add("deal")
        elif roll < 0.21:
            with as_("fin-1", "finance"):
                app.record_remittance(consignee, f"2026-0{rng.randint(1, 5)}", str(D(rng.randint(1, 500000)) / 100),
                                      "2026-06-10")
            happened.add("remittance")
        elif roll < 0.45 and returnable:
            key = rng.choice(returnable)
            held, sold_on = left[key]
            amount = held if rng.random() < 0.4 else min(held, D(rng.randint(1, int(held * 100))) / 100)
            with as_("erp", "integration"):
                app.record_return(contract, key[1], str(amount), str(sold_on + timedelta(days=rng.randint(0, 40))))
            left[key] = (held - amount, sold_on)
            happened.add("return")
        else:
            order, amount = f"S{step}", D(rng.randint(1, 2_500_000)) / 100
            # Some dated in a month already closed: booked as an adjustment carrying it.
            sold_on = first_open + timedelta(days=rng.randint(-45, 60))
            with as_("erp", "integration"):
                app.record_sale(contract, order, str(amount), str(max(sold_on, date(2026, 1, 1))))
            left[(contract, order)] = (amount, max(sold_on, date(2026, 1, 1)))
            happened.add("sale")
        if rng.random() < 0.15:
            runner.catch_up_all()
            read += read_both_ways(database_url)
    runner.catch_up_all()
    read += read_both_ways(database_url)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        kinds = {(row["kind"], row["moved"], row["disputed"]) for row in conn.execute(
            "SELECT kind, moved_kind IS NOT NULL AS moved, dispute_id IS NOT NULL AS disputed FROM commission_lines")}
    # The story went through every kind of line the figures are made of.
    assert {"sale", "return", "deal", "amendment", "dispute", "remittance", "close"} <= happened
    assert {("sale", False, False), ("return", False, False), ("deal", False, False), ("adjustment", False, False),
            ("adjustment", True, False), ("adjustment", False, True)} <= kinds
    assert read > 100


def test_a_statement_as_it_stands_reads_the_month_totals(app, database_url):
    """Which table the figures come from shows when the two disagree (never, but for this test)."""
    retailer = partner(app, "retailer")
    contract = signed_contract(app, retailer, commission={"type": "flat", "rate": "0.05"})
    with as_("erp", "integration"):
        app.record_sale(contract, "A", "1000.00", "2026-03-02")
    ProjectionRunner(app, [Commissions()]).catch_up_all()
    key = (retailer, "2026-03")
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as curs:
        assert statements(curs, [key])[key]["commission"] == D("50.00")
        curs.execute("UPDATE commission_month_totals SET line_commission = 49 WHERE partner_id = %s", (retailer,))
        assert statements(curs, [key])[key]["commission"] == D("49.00")
        assert statements(curs, [key], as_known_at=LATER)[key]["commission"] == D("50.00")
