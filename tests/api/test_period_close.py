"""POST /v1/commissions/periods/{period}/close and what a closed month does to the ledger
(domain.md §6, "Period close"), with figures worked by hand.

Once a month is closed its statement never changes: a sale, return or deal dated in it (or in
any month before it) and recorded later is booked as an adjustment in the first open month,
naming the month it corrects; a re-pricing adjustment lands, as before, in the month it is
recorded in (open: a month closes only once it has ended).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from api.deps import projection_runner
from channel_domain.company_time import recorded_month
from channel_domain.commission_period import next_month
from channel_domain.store.period_books import ClosingPeriod
from channel_domain.store.rebuilding import Rebuilder
from projections.commissions import Commissions
from tests.api.flows import (
    ERP,
    FINANCE,
    FINANCE_2,
    GM,
    MANAGER,
    REPORTING,
    SPECIALIST,
    amend,
    approved_partner,
    post,
    problem,
    signed_contract,
)
from tests.api.conftest import _AppRequest
from tests.api.test_commissions import TIERED, give_back, sale, statement, with_account
from tests.channel_domain.helpers import as_

FLAT_5 = {"type": "flat", "rate": "0.05"}


def close(api, period: str, expect: int | None = 201, who=FINANCE, **headers):
    api.catch_up()
    return post(api, f"/v1/commissions/periods/{period}/close", None, who, expect, **headers)


def prepare(api, partner: str, period: str, amount: str, expect: int | None = 200):
    return post(api, f"/v1/partners/{partner}/payouts", {"period": period, "amount": amount}, SPECIALIST, expect)


def period_state(api, period: str, **params) -> dict:
    response = api.get(f"/v1/commissions/periods/{period}", actor=REPORTING[0], roles=REPORTING[1], **params)
    assert response.status_code == 200, response.text
    return response.json()


def now() -> str:
    return datetime.now(UTC).isoformat()


def lines(body: dict) -> list[tuple]:
    return [(line["kind"], line["moved_kind"], line["corrects_period"], line["order_id"], line["amount"],
             line["rate"], line["commission"]) for line in body["lines"]]


def figures(body: dict, *names: str) -> tuple:
    return tuple(body[name] for name in names)


def retailer(api, commission=FLAT_5) -> tuple[str, str]:
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, commission=commission)
    with_account(api, partner)
    return partner, contract


def this_month() -> str:
    """The month a line recorded now is booked in (company time)."""
    return recorded_month(datetime.now(UTC))


def test_a_month_closes_in_order_once_it_has_ended_and_its_payouts_are_prepared(api):
    a, a_contract = retailer(api)
    b, b_contract = retailer(api)
    c, c_contract = retailer(api)
    sale(api, a_contract, "F1", "2000.00", "2026-02-10")  # February: 5 % of 2 000 = 100
    sale(api, a_contract, "M1", "10000.00", "2026-03-10")  # March: 500
    sale(api, b_contract, "M2", "6000.00", "2026-03-12")  # March: 300
    sale(api, c_contract, "M3", "1000.00", "2026-03-15")  # 50, returned in full: owed nothing
    give_back(api, c_contract, "M3", "1000.00", "2026-03-16")

    problem(close(api, "2026-Q1", None), 422, "validation_error")
    problem(close(api, "2026-13", None), 422, "validation_error")
    this_month = recorded_month(datetime.now(UTC))
    refused = problem(close(api, this_month, None), 422, "period_not_ended")
    assert refused["closable_from"] == f"{next_month(this_month)}-01"
    refused = problem(close(api, "2026-03", None), 422, "earlier_period_open")
    assert refused["open_periods"] == ["2026-02"]
    refused = problem(close(api, "2026-02", None), 422, "payouts_not_prepared")
    assert (refused["partners"], refused["partners_total"]) == ([a], 1)
    assert a in refused["detail"]
    assert period_state(api, "2026-02")["status"] == "open"  # a refusal writes nothing

    prepare(api, a, "2026-02", "100.00")
    before_close = now()
    closed = close(api, "2026-02")
    assert closed.headers["location"] == "/v1/commissions/periods/2026-02"
    assert {k: closed.json()[k] for k in ("period", "status", "closed_by", "closed_with", "closes_after", "version")} == {
        "period": "2026-02", "status": "closed", "closed_by": "fin-1", "closed_with": "2026-02",
        "closes_after": None, "version": 1}

    refused = problem(close(api, "2026-03", None), 422, "payouts_not_prepared")
    assert (refused["partners"], refused["partners_total"]) == (sorted([a, b]), 2)
    prepare(api, a, "2026-03", "500.00")
    assert problem(close(api, "2026-03", None), 422, "payouts_not_prepared")["partners"] == [b]
    prepare(api, b, "2026-03", "300.00")
    assert close(api, "2026-03").json()["closes_after"] == "2026-02"

    problem(close(api, "2026-03", None), 422, "period_closed")
    assert problem(close(api, "2026-01", None), 422, "period_closed")["closed_through"] == "2026-03"
    # The first close closed every month before it; each month names the close that closed it.
    january, february, april = (period_state(api, p) for p in ("2026-01", "2026-02", "2026-04"))
    assert figures(january, "status", "closed_with", "version") == ("closed", "2026-02", 0)
    assert figures(february, "status", "closed_with", "version", "closed_by") == ("closed", "2026-02", 1, "fin-1")
    assert figures(april, "status", "closed_at", "closed_by") == ("open", None, None)
    assert period_state(api, "2026-02", as_of=before_close)["status"] == "open"
    assert statement(api, a, "2026-03")["period_status"] == "closed"
    assert statement(api, a, "2026-04")["period_status"] == "open"

    # A closed month's money stays as it was closed: nothing new is prepared for it …
    problem(prepare(api, c, "2026-03", "10.00", None), 422, "period_closed")
    problem(post(api, f"/v1/partners/{a}/housing-subsidies", {"period": "2026-03", "amount": "800.00"}, SPECIALIST,
                 None), 422, "period_closed")
    # … and what was prepared before the close is verified, approved and paid as usual.
    post(api, f"/v1/partners/{a}/payouts/2026-03/verify", None, FINANCE)
    post(api, f"/v1/partners/{a}/payouts/2026-03/approve", None, GM)
    post(api, f"/v1/partners/{a}/payouts/2026-03/pay", {"paid_on": "2026-04-10"}, FINANCE_2)
    march = statement(api, a, "2026-03")
    assert figures(march, "total_due", "payout_status", "payout_amount") == ("500.00", "paid", "500.00")
    api.catch_up()
    closes = api.get("/v1/audit/events", type="CommissionPeriod.Closed").json()["items"]
    assert [(event["data"]["period"], event["actor"]) for event in closes] == [("2026-02", "fin-1"), ("2026-03", "fin-1")]


def test_lines_recorded_after_the_close_land_in_the_month_they_are_recorded_and_the_closed_statement_never_changes(api):
    partner, contract = retailer(api)
    sale(api, contract, "A", "10000.00", "2026-03-10")  # 500
    prepare(api, partner, "2026-03", "500.00")
    api.catch_up()
    before_close = now()
    close(api, "2026-03")  # the first close: every month up to March is closed
    closed = statement(api, partner, "2026-03")
    after_close = now()

    sale(api, contract, "B", "4000.00", "2026-03-20")  # a late March sale: 4 000 × 5 % = 200
    give_back(api, contract, "A", "1000.00", "2026-03-25")  # a late March return: −50
    sale(api, contract, "J", "3000.00", "2026-01-15")  # a late January sale: 150
    sale(api, contract, "P", "2000.00", "2026-04-02")  # April's own: 100
    recorded_in = this_month()

    # Adjustments are booked in the month they are recorded (open), not in April, the month after
    # the close, which may be long over and paid (api.md, "Adjustments in closed months").
    april = statement(api, partner, "2026-04")
    assert lines(april) == [("sale", None, None, "P", "2000.00", "0.05", "100.00")]
    assert figures(april, "commission", "adjustments", "adjusted_sales", "total_due") == (
        "100.00", "0.00", "0.00", "100.00")
    booked = statement(api, partner, recorded_in)
    assert lines(booked) == [
        ("adjustment", "sale", "2026-03", "B", "4000.00", "0.05", "200.00"),
        ("adjustment", "return", "2026-03", "A", "-1000.00", "0.05", "-50.00"),
        ("adjustment", "sale", "2026-01", "J", "3000.00", "0.05", "150.00"),
    ]
    # adjustments 200 − 50 + 150 = 300, due; the carried sales 4 000 − 1 000 + 3 000, none of the month's own.
    assert figures(booked, "gross_sales", "net_sales", "commission", "adjustments", "adjusted_sales", "total_due") == (
        "0.00", "0.00", "0.00", "300.00", "6000.00", "300.00")
    assert [line["business_date"] for line in booked["lines"]] == ["2026-03-20", "2026-03-25", "2026-01-15"]

    assert statement(api, partner, "2026-03") == closed
    assert statement(api, partner, "2026-03", as_known_at=after_close) == closed
    then = statement(api, partner, "2026-03", as_known_at=before_close)
    assert then["period_status"] == "open" and {**then, "period_status": "closed"} == closed
    january = statement(api, partner, "2026-01")
    assert figures(january, "period_status", "commission", "adjustments") == ("closed", "0.00", "0.00")
    assert january["lines"] == []


def test_an_earlier_dated_tiered_sale_and_an_amendment_after_the_close(api):
    partner, contract = retailer(api, TIERED)
    sale(api, contract, "A", "60000.00", "2026-03-10")  # 1 800
    sale(api, contract, "B", "70000.00", "2026-03-20")  # 40 000 × 3 % + 30 000 × 4.5 % = 2 550
    prepare(api, partner, "2026-03", "4350.00")
    close(api, "2026-03")
    closed = statement(api, partner, "2026-03")
    assert closed["total_due"] == "4350.00"

    # C, dated before A and B, takes the first 50 000 of March's tiers: its own 50 000 × 3 % = 1 500
    # lands in the month it is recorded (open), as an adjustment. A now earns 50 000 × 3 % + 10 000 × 4.5 % = 1 950 (150
    # more), B 70 000 × 4.5 % = 3 150 (600 more): one adjustment of 750 in the month it is recorded.
    sale(api, contract, "C", "50000.00", "2026-03-05")
    recorded_in = recorded_month(datetime.now(UTC))
    # Then March is re-priced at a flat 5 %: 180 000 × 5 % = 9 000 against the 6 600 booked for it.
    preview = post(api, f"/v1/contracts/{contract}/amendments",
                   {"effective_on": "2026-03-01", "commission": FLAT_5, "reason": "new scale"}, MANAGER).json()
    shown = api.get(f"/v1/contracts/{contract}/amendments/{preview['amendment_id']}/preview",
                    actor=GM[0], roles=GM[1]).json()
    assert [(line["corrects_period"], line["booked"], line["would_book"], line["adjustment"])
            for line in shown["lines"]] == [("2026-03", "6600.00", "9000.00", "2400.00")]
    post(api, f"/v1/contracts/{contract}/amendments/{preview['amendment_id']}/approve",
         {"preview_digest": shown["digest"]}, GM)

    assert lines(statement(api, partner, "2026-04")) == []
    assert [line for line in lines(statement(api, partner, recorded_in)) if line[1] is not None] == [
        ("adjustment", "sale", "2026-03", "C", "50000.00", "0.03", "1500.00")]
    repriced = [line for line in lines(statement(api, partner, recorded_in)) if line[1] is None]
    assert repriced == [("adjustment", None, "2026-03", None, "0.00", None, "750.00"),
                        ("adjustment", None, "2026-03", None, "0.00", None, "2400.00")]
    assert statement(api, partner, "2026-03") == closed


def test_a_consignees_late_sale_and_return_carry_their_proceeds_and_fees_to_the_month_they_are_recorded(api):
    partner = approved_partner(api, "consignee")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    sale(api, contract, "C1", "10000.00", "2026-03-05")
    # March: proceeds 10 000, commission 1 000, fees 200: the consignee remits 8 800 and is owed nothing.
    close(api, "2026-03")
    closed = statement(api, partner, "2026-03")
    assert figures(closed, "commission", "fees", "remittance_due", "total_due") == (
        "1000.00", "200.00", "8800.00", "0.00")

    sale(api, contract, "C2", "5000.00", "2026-04-05")  # April's own: commission 500
    sale(api, contract, "C3", "2000.00", "2026-03-28")  # late March: 2 000 of proceeds, commission 200
    give_back(api, contract, "C1", "1000.00", "2026-03-30")  # late March: 1 000 refunded, commission −100

    recorded_in = this_month()

    april = statement(api, partner, "2026-04")
    assert lines(april) == [("sale", None, None, "C2", "5000.00", "0.10", "500.00")]
    # April's own: proceeds 5 000, commission kept 500, fees 2 % × 5 000 = 100: remitted 4 400.
    assert figures(april, "net_sales", "adjusted_sales", "commission", "adjustments", "fees", "remittance_due",
                   "total_due") == ("5000.00", "0.00", "500.00", "0.00", "100.00", "4400.00", "0.00")
    booked = statement(api, partner, recorded_in)
    assert lines(booked) == [
        ("adjustment", "sale", "2026-03", "C3", "2000.00", "0.10", "200.00"),
        ("adjustment", "return", "2026-03", "C1", "-1000.00", "0.10", "-100.00"),
    ]
    # Carried proceeds 2 000 − 1 000 = 1 000; commission kept 200 − 100 = 100; fees 2 % × 1 000 = 20:
    # remitted 1 000 − 100 − 20 = 880.
    assert figures(booked, "net_sales", "adjusted_sales", "commission", "adjustments", "fees", "remittance_due",
                   "total_due") == ("0.00", "1000.00", "0.00", "100.00", "20.00", "880.00", "0.00")
    with psycopg.connect(api.database_url) as conn:  # what a BI tool reads says the same
        rows = conn.execute("SELECT period, adjusted_sales, fees, remittance_due, total_due, period_status"
                            " FROM commission_statements WHERE partner_id = %s ORDER BY period", (partner,)).fetchall()
    assert rows == [("2026-03", Decimal("0"), Decimal("200"), Decimal("8800"), Decimal("0"), "closed"),
                    ("2026-04", Decimal("0"), Decimal("100"), Decimal("4400"), Decimal("0"), "open"),
                    (recorded_in, Decimal("1000"), Decimal("20"), Decimal("880"), Decimal("0"), "open")]

    # March's remittance arrives after the close: received money moves, the booked figures do not.
    post(api, f"/v1/partners/{partner}/remittances",
         {"period": "2026-03", "amount": "8800.00", "received_on": "2026-04-12"}, FINANCE)
    march = statement(api, partner, "2026-03")
    assert figures(march, "remitted", "remittance_outstanding") == ("8800.00", "0.00")
    assert {**march, "remitted": closed["remitted"], "remittance_outstanding": closed["remittance_outstanding"]} == closed


def test_the_balance_carried_out_of_a_closed_month_stays_and_late_lines_carry_on_from_it(api):
    partner, contract = retailer(api)
    sale(api, contract, "F", "10000.00", "2026-02-10")  # February: 500
    give_back(api, contract, "F", "8000.00", "2026-03-05")  # March: −400, carried out
    prepare(api, partner, "2026-02", "500.00")
    close(api, "2026-02")
    close(api, "2026-03")  # owed nothing in March: no payout needed
    closed = statement(api, partner, "2026-03")
    assert figures(closed, "commission", "total_due", "carried_out") == ("-400.00", "0.00", "-400.00")

    sale(api, contract, "P", "2000.00", "2026-04-02")  # 100
    give_back(api, contract, "F", "1000.00", "2026-03-30")  # late March: −50, booked in the month recorded
    sale(api, contract, "Q", "10000.00", "2026-05-03")  # 500

    april = statement(api, partner, "2026-04")
    # 100 − 400 carried in = −300: nothing due, −300 carried on.
    assert figures(april, "commission", "adjustments", "carried_in", "total_due", "carried_out") == (
        "100.00", "0.00", "-400.00", "0.00", "-300.00")
    may = statement(api, partner, "2026-05")
    assert figures(may, "commission", "carried_in", "total_due", "carried_out") == (
        "500.00", "-300.00", "200.00", "0.00")
    # May paid off the carry; the −50 recorded now starts a carry of its own.
    booked = statement(api, partner, this_month())
    assert figures(booked, "commission", "adjustments", "carried_in", "total_due", "carried_out") == (
        "0.00", "-50.00", "0.00", "0.00", "-50.00")
    assert statement(api, partner, "2026-03") == closed


def test_a_brokers_late_deal_lands_in_the_month_it_is_recorded(api):
    broker = approved_partner(api, "broker", commission_rate="0.01")
    with_account(api, broker)
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-1", "amount": "50000.00", "closed_on": "2026-03-10"}, ERP)
    prepare(api, broker, "2026-03", "500.00")
    close(api, "2026-03")
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-2", "amount": "20000.00", "closed_on": "2026-03-25"}, ERP)
    assert lines(statement(api, broker, "2026-04")) == []
    booked = statement(api, broker, this_month())
    assert lines(booked) == [("adjustment", "deal", "2026-03", "D-2", "20000.00", "0.01", "200.00")]
    assert booked["lines"][0]["contract_id"] is None
    assert figures(booked, "gross_sales", "adjustments", "total_due") == ("0.00", "200.00", "200.00")
    assert statement(api, broker, "2026-03")["total_due"] == "500.00"


def test_a_close_is_idempotent_and_refuses_while_the_ledger_lags(api, monkeypatch):
    partner, contract = retailer(api)
    sale(api, contract, "A", "10000.00", "2026-03-10")
    prepare(api, partner, "2026-03", "500.00")
    # Not caught up: the close waits for the ledger, then answers 503 and writes nothing.
    monkeypatch.setenv("CHANNEL_DOMAIN_PERIOD_CLOSE_WAIT_S", "0.2")
    lagging = post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, None)
    problem(lagging, 503, "projection_lagging")
    assert lagging.headers["retry-after"] == "1"
    assert period_state(api, "2026-03")["status"] == "open"

    first = close(api, "2026-03", **{"Idempotency-Key": "close-march"})
    again = post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, 201, **{"Idempotency-Key": "close-march"})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    problem(close(api, "2026-03", None), 422, "period_closed")  # without the key: a new command


def test_a_rebuild_books_the_same_ledger_after_closes(api):
    partner, contract = retailer(api, TIERED)
    sale(api, contract, "A", "60000.00", "2026-03-10")
    sale(api, contract, "B", "70000.00", "2026-03-20")
    prepare(api, partner, "2026-03", "4350.00")
    close(api, "2026-03")
    sale(api, contract, "C", "50000.00", "2026-03-05")
    give_back(api, contract, "B", "10000.00", "2026-03-28")
    amend(api, contract, {"effective_on": "2026-03-15", "commission": FLAT_5, "reason": "mid-month"})
    line = statement(api, partner, "2026-03")["lines"][0]
    dispute = post(api, f"/v1/commissions/statements/{partner}/2026-03/disputes",
                   {"line_position": line["position"], "reason": "rate"}, SPECIALIST, 201).json()
    post(api, f"/v1/commissions/statements/{partner}/2026-03/disputes/{dispute['dispute_id']}/resolve",
         {"outcome": "upheld", "note": "agreed", "amount": "-25.00"}, FINANCE)
    api.catch_up()

    def ledger() -> list:
        with psycopg.connect(api.database_url) as conn:
            return [conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
                    for table in ("commission_lines", "commission_periods", "commission_disputes")]

    built = ledger()
    # A; B's two slices; C carried to April and March's re-pricing; B's late return carried; the
    # amendment's adjustment; the dispute's.
    assert (len(built[0]), len(built[1]), len(built[2])) == (8, 1, 1)
    Rebuilder(api.department, Commissions()).rebuild(lambda *_: None)
    assert ledger() == built


@pytest.mark.parametrize("who", [("mgr-1", ("channel_manager",)), ("spec-1", ("channel_specialist",))])
def test_only_finance_closes(api, who):
    problem(post(api, "/v1/commissions/periods/2026-03/close", None, who, None), 403, "forbidden")


def test_a_late_sale_committed_while_the_close_reads_the_ledger_is_not_missed(api, monkeypatch):
    """The close reads the ledger through the log's settled head, then appends its event after
    it: a late March sale committing in between precedes the close in log order, so it lands in
    March — unseen by the reading. The close finds it between the two and decides again on a
    fresh reading, which sees the partner owed 4 000 × 5 % = 200 with no payout prepared."""
    a, a_contract = retailer(api)
    b, b_contract = retailer(api)
    sale(api, a_contract, "A", "10000.00", "2026-03-10")
    prepare(api, a, "2026-03", "500.00")
    api.catch_up()
    readings = []
    original = ClosingPeriod.before

    def before(self, cursor):  # noqa: ANN001, ANN202
        try:
            original(self, cursor)
        finally:
            readings.append(self.head)  # the head it read the ledger through
        if len(readings) == 1:  # between the first reading and the close's append
            with as_("erp", "integration"):
                api.department.record_sale(b_contract, "LATE", "4000.00", "2026-03-20")

    monkeypatch.setattr(ClosingPeriod, "before", before)
    stop = threading.Event()  # the ledger keeps up in the background, as `serve` keeps it
    worker = threading.Thread(target=projection_runner(_AppRequest(api.client.app)).run, args=(stop,),
                              kwargs={"idle_wait": 0.01})
    worker.start()
    try:
        refused = problem(post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, None), 422,
                          "payouts_not_prepared")
    finally:
        stop.set()
        worker.join()
    assert len(readings) == 2 and readings[1] > readings[0]
    assert refused["partners"] == [b]
    assert period_state(api, "2026-03")["status"] == "open"
    assert [line["order_id"] for line in statement(api, b, "2026-03")["lines"]] == ["LATE"]
    prepare(api, b, "2026-03", "200.00")
    close(api, "2026-03")


def test_a_payout_racing_a_close_is_prepared_before_it_or_refused_after_it(api, monkeypatch):
    """Closes take the books' lock exclusively and preparations take it shared, both before they
    write: a payout for the month either commits first (and the close's reading sees it) or is
    refused `period_closed` — never prepared after the close in log order. The close lingers
    between its append and its commit, and the payouts start at staggered moments, so some of
    them arrive then (without the lock, those are prepared after the close)."""
    original = ClosingPeriod.after

    def lingering(self, cursor, positions):  # noqa: ANN001, ANN202
        original(self, cursor, positions)
        time.sleep(0.15)

    monkeypatch.setattr(ClosingPeriod, "after", lingering)
    a, a_contract = retailer(api)
    b, _ = retailer(api)  # owed nothing: its payout is not needed for the close
    months = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
    for month in months:
        sale(api, a_contract, f"A-{month}", "1000.00", f"{month}-10")
        prepare(api, a, month, "50.00")
    stop = threading.Event()
    worker = threading.Thread(target=projection_runner(_AppRequest(api.client.app)).run, args=(stop,),
                              kwargs={"idle_wait": 0.01})
    worker.start()
    outcomes = []
    try:
        for delay, month in enumerate(months):
            start = threading.Barrier(2)
            answers: dict[str, int] = {}

            def run(name: str, path: str, body, who) -> None:  # noqa: ANN001
                start.wait()
                if name == "payout":
                    time.sleep(0.03 * delay)
                answers[name] = api.post(path, body, actor=who[0], roles=who[1]).status_code

            racers = [threading.Thread(target=run, args=("close", f"/v1/commissions/periods/{month}/close", None,
                                                         FINANCE)),
                      threading.Thread(target=run, args=("payout", f"/v1/partners/{b}/payouts",
                                                         {"period": month, "amount": "10.00"}, SPECIALIST))]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join()
            outcomes.append((answers["close"], answers["payout"]))
    finally:
        stop.set()
        worker.join()
    assert {close_ for close_, _ in outcomes} == {201}
    assert {payout for _, payout in outcomes} <= {200, 422}
    api.catch_up()
    events = api.get("/v1/audit/events", stream_id=b, type="Partner.PayoutPrepared").json()["items"]
    closes = {e["data"]["period"]: e["position"] for e in
              api.get("/v1/audit/events", type="CommissionPeriod.Closed").json()["items"]}
    assert all(event["position"] < closes[event["data"]["period"]] for event in events)
    assert len(events) == sum(1 for _, payout in outcomes if payout == 200)
    for event in events:  # each one the close saw is on its closed statement
        assert statement(api, b, event["data"]["period"])["payout_status"] == "prepared"


def test_a_month_closed_with_more_due_than_its_prepared_payout_is_a_finding(api):
    partner, contract = retailer(api)
    sale(api, contract, "A", "2000.00", "2026-04-02")  # 100
    prepare(api, partner, "2026-04", "100.00")  # right when prepared: no finding
    sale(api, contract, "L", "4000.00", "2026-04-20")  # late, April still open: +200
    api.catch_up()
    assert api.get("/v1/audit/findings", kind="payout_not_total_due").json()["items"] == []
    close(api, "2026-04")  # a payout is prepared, as the close asks
    assert statement(api, partner, "2026-04")["total_due"] == "300.00"
    api.catch_up()
    raised = api.get("/v1/audit/findings", kind="payout_not_total_due").json()["items"]
    closes = api.get("/v1/audit/events", type="CommissionPeriod.Closed").json()["items"]
    payouts = api.get("/v1/audit/events", type="Partner.PayoutPrepared").json()["items"]
    assert [(f["subject_id"], f["detail"], f["positions"]) for f in raised] == [
        (partner, "payout for 2026-04 prepared for 100.00; the month closed with a total due of 300.00, booked after"
                  " the payout was prepared", [payouts[0]["position"], closes[0]["position"]])]
