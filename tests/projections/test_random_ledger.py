"""The randomised test of issue 13's "Done means", through the commissions projection itself:
random sales (late ones too), partial and full returns, flat and tiered amendments with past
effective dates, on a consignee's tiered contract and a retailer's flat one, recorded on a
clock that crosses months. The projection prices them as they come, in batches of random size,
sometimes forgetting what it holds in memory (so it reloads from its own tables); a fresh
`ContractCommissions` fed the contracts' events afresh must book the very same lines. And the
§6 invariants are checked on the ledger directly."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import psycopg
from psycopg.rows import dict_row

from channel_domain.aggregate import ChannelAggregate
from channel_domain.commission import ContractCommissions, cents
from channel_domain.company_time import recorded_month
from channel_domain.store.projecting import ProjectionRunner
from channel_domain.values import CommissionTerms
from projections.commissions import Commissions, statement_totals
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract
from tests.channel_domain.test_contract_requests import approve_amendment, request_amendment

ZERO = D("0.00")
FEE_RATE = D("0.0175")


def random_terms(rng: random.Random) -> dict:
    rates = [f"0.0{rng.randint(100, 999)}" for _ in range(2)]
    if rng.random() < 0.4:
        return {"type": "flat", "rate": rates[0]}
    return {"type": "tiered", "tiers": [{"up_to": f"{rng.randint(5, 60)}000.00", "rate": rates[0]},
                                        {"rate": rates[1]}]}


def ledger(database_url: str) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM commission_lines ORDER BY position, line_no").fetchall()


def test_random_stories_through_the_projection_book_what_a_fresh_pricing_books(app, database_url, monkeypatch):
    rng = random.Random(13)
    clock = [datetime(2026, 1, 20, 15, 0, tzinfo=UTC)]
    monkeypatch.setattr(ChannelAggregate.Event, "create_timestamp", staticmethod(lambda: clock[0]))
    consignee = partner(app, "consignee")
    contracts = {
        signed_contract(app, consignee, commission={"type": "tiered", "tiers": [
            {"up_to": "20000.00", "rate": "0.0333"}, {"rate": "0.0517"}]}, fee_rate=str(FEE_RATE)): consignee,
        signed_contract(app, partner(app, "retailer"), commission={"type": "flat", "rate": "0.0275"}): None,
    }
    projection = Commissions()
    runner = ProjectionRunner(app, [projection], batch_size=rng.randint(3, 12))
    left: dict[tuple, tuple[D, date]] = {}  # (contract, order) -> (not yet returned, sold on)
    seen: list[dict] = []
    for step in range(240):
        clock[0] += timedelta(hours=rng.randint(1, 40))
        contract = rng.choice(sorted(contracts))
        roll = rng.random()
        with as_("erp", "integration"):
            returnable = sorted(key for key, (amount, _) in left.items() if amount and key[0] == contract)
            if roll < 0.05:
                amendment = request_amendment(app, contract, str(date(2026, 1, 1) + timedelta(days=rng.randint(0, 90))),
                                              random_terms(rng), reason="new scale")
                approve_amendment(app, contract, amendment)
            elif roll < 0.4 and returnable:
                key = rng.choice(returnable)
                held, sold_on = left[key]
                amount = held if rng.random() < 0.4 else min(held, D(rng.randint(1, int(held * 100))) / 100)
                app.record_return(contract, key[1], str(amount), str(sold_on + timedelta(days=rng.randint(0, 40))))
                left[key] = (held - amount, sold_on)
            elif roll < 0.43 and contracts[contract]:
                with as_("fin-1", "finance"):
                    app.record_remittance(contracts[contract], f"2026-0{rng.randint(1, 4)}",
                                          str(D(rng.randint(1, 500000)) / 100), "2026-05-10")
            else:
                order, amount = f"S{step}", D(rng.randint(1, 2_500_000)) / 100
                sold_on = date(2026, 1, 1) + timedelta(days=rng.randint(0, 100))
                app.record_sale(contract, order, str(amount), str(sold_on))
                left[(contract, order)] = (amount, sold_on)
        if rng.random() < 0.15:
            if rng.random() < 0.4:
                projection.reset()  # as after a restart: each contract reloads from the tables
            runner.catch_up(projection)
            lines = ledger(database_url)
            assert lines[:len(seen)] == seen  # a line once booked stays as it was
            seen = lines
    runner.catch_up(projection)
    lines = ledger(database_url)
    assert lines[:len(seen)] == seen

    for contract, consignee_id in contracts.items():
        history = app.history(contract)
        returns = {entry.position: entry.data["order_id"] for entry in history if entry.type == "Contract.ReturnRecorded"}
        booked = [line for line in lines if line["contract_id"] == contract]
        # A return books only its own negative lines, naming its order, and nothing else.
        for line in booked:
            if line["position"] in returns:
                assert (line["kind"], line["order_id"]) == ("return", returns[line["position"]])
                assert line["amount"] < 0 and line["commission"] <= 0
        # Afresh: the contract's events fed to a fresh book, in recording order, book the same lines.
        fresh, replayed = None, []
        for entry in history:
            data, recorded_in = entry.data, recorded_month(entry.recorded_at)
            if entry.type == "Contract.Drafted":
                fresh = ContractCommissions(CommissionTerms.parse(data["commission"]))
            elif entry.type == "Contract.SaleRecorded":
                made = fresh.sale(data["order_id"], data["amount"], data["sold_on"], entry.position, recorded_in)
            elif entry.type == "Contract.ReturnRecorded":
                made = fresh.return_(data["order_id"], data["amount"], data["returned_on"], entry.position, recorded_in)
            elif entry.type == "Contract.Amended":
                made = fresh.amendment(data["effective_on"], CommissionTerms.parse(data["commission"]), recorded_in)
            else:
                continue
            if entry.type != "Contract.Drafted":
                replayed += [(entry.position, n, line.kind, line.period, line.order_id, line.amount, line.rate,
                              line.commission, line.corrects_period) for n, line in enumerate(made, start=1)]
        assert replayed == [(line["position"], line["line_no"], line["kind"], line["period"], line["order_id"],
                             line["amount"], line["rate"], line["commission"], line["corrects_period"])
                            for line in booked]
        # A fully returned order nets 0.00, and each month's lines add up to what it should earn.
        for (owner, order), (amount, _) in left.items():
            if owner == contract and not amount:
                assert fresh.order_commission(order) == ZERO
        months: dict[str, D] = defaultdict(lambda: ZERO)
        for line in booked:
            months[line["corrects_period"] or line["period"]] += line["commission"]
        assert dict(months) == {month: total for month, total in fresh.ideal().items() if month in months}
        if consignee_id is None:
            continue
        # A consignee's month is remitted or paid, never both, and nothing is carried.
        with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.cursor() as cursor:
            for period in sorted({line["period"] for line in booked}):
                month = [line for line in booked if line["period"] == period]
                proceeds = sum((line["amount"] for line in month if line["kind"] != "adjustment"), ZERO)
                commission = sum((line["commission"] for line in month if line["kind"] != "adjustment"), ZERO)
                adjustments = sum((line["commission"] for line in month if line["kind"] == "adjustment"), ZERO)
                settlement = proceeds - commission - cents(FEE_RATE * proceeds) - adjustments
                figures = statement_totals(cursor, consignee_id, period)
                assert not (figures["remittance_due"] > 0 and figures["total_due"] > 0)
                assert figures["remittance_due"] - figures["total_due"] == settlement
                assert figures["carried_in"] == figures["carried_out"] == ZERO
                assert figures["remittance_outstanding"] == figures["remittance_due"] - figures["remitted"]
