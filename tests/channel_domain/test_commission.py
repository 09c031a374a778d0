"""Commission rules of domain.md §6, figures worked by hand."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal as D

from channel_domain.commission import ContractCommissions, Entry, marginal_slices
from channel_domain.values import CommissionTerms

TIERED = CommissionTerms.parse({"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]})
FLAT = CommissionTerms.parse({"type": "flat", "rate": "0.05"})


def commissions(lines):
    return [line.commission for line in lines]


def test_a_sale_crossing_a_tier_boundary_earns_each_slice_at_its_own_rate():
    book = ContractCommissions(TIERED)
    assert commissions(book.sale("A", D("60000.00"), date(2026, 3, 2), 1, "2026-03")) == [D("1800.00")]
    # 40 000 more at 3 % fills the first tier, the other 30 000 earn 4.5 %: 1 200 + 1 350.
    lines = book.sale("B", D("70000.00"), date(2026, 3, 9), 2, "2026-03")
    assert [(line.amount, line.rate, line.commission) for line in lines] == [
        (D("40000.00"), D("0.03"), D("1200.00")),
        (D("30000.00"), D("0.045"), D("1350.00")),
    ]
    assert book.booked["2026-03"] == D("4350.00")


def test_tiers_restart_each_calendar_month():
    book = ContractCommissions(TIERED)
    book.sale("A", D("120000.00"), date(2026, 3, 30), 1, "2026-03")
    assert commissions(book.sale("B", D("10000.00"), date(2026, 4, 1), 2, "2026-04")) == [D("300.00")]


def test_a_return_claws_back_its_own_sales_top_slice_first_and_leaves_other_sales_alone():
    book = ContractCommissions(TIERED)
    book.sale("A", D("60000.00"), date(2026, 3, 2), 1, "2026-03")
    book.sale("B", D("70000.00"), date(2026, 3, 9), 2, "2026-03")
    # B's top 30 000 earned 4.5 %; returning 35 000 takes all of it and 5 000 at 3 %.
    lines = book.return_("B", D("35000.00"), date(2026, 3, 20), 3, "2026-03")
    assert [(line.kind, line.order_id, line.amount, line.rate, line.commission) for line in lines] == [
        ("return", "B", D("-30000.00"), D("0.045"), D("-1350.00")),
        ("return", "B", D("-5000.00"), D("0.03"), D("-150.00")),
    ]
    # Returning part of A takes A's own 3 % — not B's higher slice.
    assert commissions(book.return_("A", D("1000.00"), date(2026, 3, 21), 4, "2026-03")) == [D("-30.00")]
    # Returns do not move the month's cumulative sales (130 000): the next sale earns 4.5 %.
    assert commissions(book.sale("C", D("10000.00"), date(2026, 3, 25), 5, "2026-03")) == [D("450.00")]


def test_a_return_in_a_later_month_is_booked_there_at_the_rates_its_sale_earned():
    book = ContractCommissions(TIERED)
    book.sale("A", D("130000.00"), date(2026, 3, 2), 1, "2026-03")
    lines = book.return_("A", D("10000.00"), date(2026, 4, 3), 2, "2026-04")
    assert [(line.period, line.commission) for line in lines] == [("2026-04", D("-450.00"))]
    assert book.booked == {"2026-03": D("4350.00"), "2026-04": D("-450.00")}


def test_a_retroactive_amendment_books_the_difference_per_month_in_the_month_it_is_recorded():
    book = ContractCommissions(FLAT)
    book.sale("A", D("10000.00"), date(2026, 1, 10), 1, "2026-01")  # 500 — before the effective date
    book.sale("B", D("20000.00"), date(2026, 2, 10), 2, "2026-02")  # 1 000
    book.sale("C", D("30000.00"), date(2026, 3, 10), 3, "2026-03")  # 1 500
    book.return_("C", D("10000.00"), date(2026, 3, 20), 4, "2026-03")  # −500
    six_percent = CommissionTerms.parse({"type": "flat", "rate": "0.06"})
    lines = book.amendment(date(2026, 2, 1), six_percent, "2026-05")
    # February: 20 000 × 1 % more = 200. March: (30 000 − 10 000) × 1 % = 200.
    assert [(line.kind, line.period, line.corrects_period, line.commission) for line in lines] == [
        ("adjustment", "2026-05", "2026-02", D("200.00")),
        ("adjustment", "2026-05", "2026-03", D("200.00")),
    ]
    # What is returned later is clawed back at the amended rate.
    assert commissions(book.return_("B", D("5000.00"), date(2026, 5, 2), 5, "2026-05")) == [D("-300.00")]


def test_a_sale_dated_before_sales_already_booked_under_tiered_terms_takes_its_place_in_date_order():
    book = ContractCommissions(TIERED)
    book.sale("late", D("90000.00"), date(2026, 3, 20), 1, "2026-03")  # 2 700
    # Recorded later but dated earlier: it comes first, 90 000 at 3 % = 2 700 …
    lines = book.sale("early", D("90000.00"), date(2026, 3, 5), 2, "2026-04")
    # … which pushes "late" to 90 000–180 000: 10 000 × 3 % + 80 000 × 4.5 % = 3 900, 1 200 more,
    # booked as an adjustment when it was learnt (April), naming March.
    assert [(line.kind, line.period, line.commission, line.corrects_period) for line in lines] == [
        ("sale", "2026-03", D("2700.00"), None),
        ("adjustment", "2026-04", D("1200.00"), "2026-03"),
    ]


def test_a_late_sale_moves_later_sales_and_the_clawback_of_their_returns():
    book = ContractCommissions(TIERED)
    book.sale("A", D("60000.00"), date(2026, 3, 1), 1, "2026-03")  # 1 800
    book.sale("B", D("60000.00"), date(2026, 3, 20), 2, "2026-03")  # 40 000 × 3 % + 20 000 × 4.5 % = 2 100
    book.return_("B", D("30000.00"), date(2026, 4, 2), 3, "2026-04")  # −900 − 10 000 × 3 % = −1 200
    # C, dated before B, puts B at 90 000–150 000: 10 000 × 3 % + 50 000 × 4.5 % = 2 550 (450 more);
    # B's April return now takes 30 000 × 4.5 % = 1 350 (150 more clawed back).
    lines = book.sale("C", D("30000.00"), date(2026, 3, 10), 4, "2026-05")
    assert [(line.kind, line.period, line.commission, line.corrects_period) for line in lines] == [
        ("sale", "2026-03", D("900.00"), None),
        ("adjustment", "2026-05", D("450.00"), "2026-03"),
        ("adjustment", "2026-05", D("-150.00"), "2026-04"),
    ]
    assert book.booked == {"2026-03": D("5250.00"), "2026-04": D("-1350.00")}


def test_under_flat_terms_order_does_not_matter_and_nothing_is_adjusted():
    book = ContractCommissions(FLAT)
    book.sale("late", D("100.00"), date(2026, 3, 20), 1, "2026-03")
    assert [line.kind for line in book.sale("early", D("100.00"), date(2026, 3, 5), 2, "2026-03")] == ["sale"]


def test_restoring_from_booked_lines_prices_exactly_as_learning_did():
    learnt = ContractCommissions(TIERED)
    learnt.sale("A", D("80000.00"), date(2026, 3, 2), 1, "2026-03")
    learnt.sale("B", D("50000.00"), date(2026, 3, 9), 2, "2026-03")
    learnt.return_("B", D("20000.00"), date(2026, 3, 12), 3, "2026-03")
    restored = ContractCommissions(TIERED)
    restored.restore(
        [Entry("sale", "A", date(2026, 3, 2), 1, D("80000.00")), Entry("sale", "B", date(2026, 3, 9), 2, D("50000.00")),
         Entry("return", "B", date(2026, 3, 12), 3, D("20000.00"))],
        [], dict(learnt.booked),
    )
    later = (("C", D("40000.00"), date(2026, 3, 28), 4, "2026-03"),)
    assert commissions(restored.sale(*later[0])) == commissions(learnt.sale(*later[0]))
    assert restored.ideal() == learnt.ideal() == restored.booked == learnt.booked


def test_marginal_slices_below_zero_net_sales_count_in_the_first_tier():
    # A month that opened with a return of last month's sale: net sales stand at −5 000.
    assert [(s.amount, s.rate) for s in marginal_slices(TIERED, D("-5000.00"), D("110000.00"))] == [
        (D("105000.00"), D("0.03")), (D("5000.00"), D("0.045"))]


def test_learning_piece_by_piece_prices_as_pricing_everything_at_once_would():
    """Sales and returns arriving out of date order, amendments with past effective dates:
    after each, every month's booked total equals its ideal, and the ideal equals a fresh
    pricing of all that is known (what a rebuild computes)."""
    rng = random.Random(7)
    # Many narrow tiers, so a sale moved along the month almost always changes slices.
    steep = CommissionTerms.parse({"type": "tiered", "tiers": [
        *({"up_to": f"{n * 50000}.00", "rate": f"0.{n:02d}"} for n in range(1, 20)), {"rate": "0.25"}]})
    book = ContractCommissions(steep)
    entries, amendments, sold = [], [], {}
    for position in range(1, 400):
        roll = rng.random()
        if roll < 0.03:
            terms = CommissionTerms.parse({"type": "tiered", "tiers": [
                {"up_to": f"{rng.randint(1, 3)}0000.00", "rate": "0.02"}, {"rate": f"0.0{rng.randint(3, 9)}"}]})
            effective_on = date(2026, rng.randint(1, 4), rng.randint(1, 28))
            amendments.append((effective_on, terms))
            book.amendment(effective_on, terms, "2026-06")
        elif roll < 0.25 and sold:
            order = rng.choice(sorted(sold))
            amount = min(sold[order][0], D(rng.randint(1, 40) * 100))
            if not amount:
                continue
            day = date(2026, rng.randint(sold[order][1].month, 5), 28)
            sold[order] = (sold[order][0] - amount, sold[order][1])
            entries.append(Entry("return", order, day, position, amount))
            book.return_(order, amount, day, position, "2026-06")
        else:
            order, amount, day = f"S{position}", D(rng.randint(1, 300) * 100), date(2026, rng.randint(1, 4), rng.randint(1, 28))
            sold[order] = (amount, day)
            entries.append(Entry("sale", order, day, position, amount))
            book.sale(order, amount, day, position, "2026-06")
        ideal = book.ideal()
        assert all(ideal.get(month, 0) == total for month, total in book.booked.items())
        assert all(book.booked[month] == total for month, total in ideal.items())
        fresh = ContractCommissions(steep)
        fresh.restore([Entry(e.kind, e.order_id, e.day, e.position, e.amount) for e in entries], amendments, {})
        assert fresh.ideal() == ideal


def test_a_late_recorded_return_dated_mid_month_books_its_own_clawback_and_nothing_else():
    """domain.md §6: a return of 10 000 of the 60 000 sale, dated in the same month and recorded
    weeks later, books −300 and nothing else (March: 4 050)."""
    book = ContractCommissions(TIERED)
    book.sale("A", D("60000.00"), date(2026, 3, 2), 1, "2026-03")  # 1 800
    book.sale("B", D("70000.00"), date(2026, 3, 9), 2, "2026-03")  # 1 200 + 1 350
    book.sale("C", D("20000.00"), date(2026, 3, 25), 3, "2026-03")  # 900, all above 100 000
    lines = book.return_("A", D("10000.00"), date(2026, 3, 5), 4, "2026-04")
    assert [(line.kind, line.period, line.order_id, line.amount, line.rate, line.commission) for line in lines] == [
        ("return", "2026-03", "A", D("-10000.00"), D("0.03"), D("-300.00"))]
    assert book.booked == {"2026-03": D("4950.00")}  # 1 800 + 2 550 + 900 − 300


def test_a_return_of_a_march_order_dated_in_april_does_not_lower_aprils_other_sales():
    book = ContractCommissions(TIERED)
    book.sale("M", D("130000.00"), date(2026, 3, 30), 1, "2026-03")  # 3 000 + 1 350
    book.sale("A1", D("90000.00"), date(2026, 4, 2), 2, "2026-04")  # 2 700
    assert commissions(book.return_("M", D("50000.00"), date(2026, 4, 3), 3, "2026-04")) == [
        D("-1350.00"), D("-600.00")]  # M's 30 000 at 4.5 %, then 20 000 at 3 %
    # April's sales stand at 90 000, whatever was returned: 10 000 × 3 % + 10 000 × 4.5 %.
    assert commissions(book.sale("A2", D("20000.00"), date(2026, 4, 20), 4, "2026-04")) == [
        D("300.00"), D("450.00")]
    assert book.booked == {"2026-03": D("4350.00"), "2026-04": D("1500.00")}  # 2 700 − 1 950 + 750


def test_the_return_that_empties_an_order_claws_back_exactly_what_it_still_holds():
    # 3 × 33.33 at 5 %: each third alone would claw back 1.67 (1.6665 rounded), 5.01 in all,
    # while the sale of 99.99 earned 5.00 (4.9995 rounded). The last return takes 1.66.
    book = ContractCommissions(FLAT)
    assert commissions(book.sale("A", D("99.99"), date(2026, 3, 2), 1, "2026-03")) == [D("5.00")]
    assert commissions(book.return_("A", D("33.33"), date(2026, 3, 3), 2, "2026-03")) == [D("-1.67")]
    assert commissions(book.return_("A", D("33.33"), date(2026, 3, 4), 3, "2026-03")) == [D("-1.67")]
    assert commissions(book.return_("A", D("33.33"), date(2026, 4, 5), 4, "2026-04")) == [D("-1.66")]
    assert book.booked["2026-03"] + book.booked["2026-04"] == D("0.00")


def test_a_fully_returned_tiered_order_nets_zero_slice_by_slice():
    book = ContractCommissions(TIERED)
    book.sale("A", D("99999.99"), date(2026, 3, 1), 1, "2026-03")
    book.sale("B", D("333.33"), date(2026, 3, 2), 2, "2026-03")  # 0.01 × 3 % = 0.00, 333.32 × 4.5 % = 15.00
    assert [(line.amount, line.commission) for line in book.return_("B", D("111.11"), date(2026, 3, 3), 3, "2026-03")] == [
        (D("-111.11"), D("-5.00"))]  # 4.99995 rounded
    assert [(line.amount, line.commission) for line in book.return_("B", D("111.11"), date(2026, 3, 4), 4, "2026-03")] == [
        (D("-111.11"), D("-5.00"))]
    # What is left: 111.10 at 4.5 % holding 5.00, and 0.01 at 3 % holding 0.00.
    assert [(line.amount, line.rate, line.commission)
            for line in book.return_("B", D("111.11"), date(2026, 3, 5), 5, "2026-03")] == [
        (D("-111.10"), D("0.045"), D("-5.00")), (D("-0.01"), D("0.03"), D("0.00"))]
    assert book.booked["2026-03"] == D("3000.00")  # A's 99 999.99 × 3 %, B's nothing


def test_a_partial_return_never_claws_back_more_than_its_slice_still_holds():
    half_percent = CommissionTerms.parse({"type": "flat", "rate": "0.005"})
    book = ContractCommissions(half_percent)
    assert commissions(book.sale("A", D("3.01"), date(2026, 3, 1), 1, "2026-03")) == [D("0.02")]  # 0.01505
    assert commissions(book.return_("A", D("1.00"), date(2026, 3, 2), 2, "2026-03")) == [D("-0.01")]  # 0.005
    assert commissions(book.return_("A", D("1.00"), date(2026, 3, 3), 3, "2026-03")) == [D("-0.01")]
    assert commissions(book.return_("A", D("1.00"), date(2026, 3, 4), 4, "2026-03")) == [D("0.00")]  # nothing left
    assert commissions(book.return_("A", D("0.01"), date(2026, 3, 5), 5, "2026-03")) == [D("0.00")]
    assert book.booked["2026-03"] == D("0.00")


def test_returns_of_one_order_claw_back_in_the_order_they_were_recorded():
    book = ContractCommissions(TIERED)
    book.sale("A", D("130000.00"), date(2026, 3, 1), 1, "2026-03")
    assert commissions(book.return_("A", D("30000.00"), date(2026, 3, 20), 2, "2026-03")) == [D("-1350.00")]
    # Dated earlier but recorded later: it takes from what the first return left, at 3 %.
    lines = book.return_("A", D("10000.00"), date(2026, 3, 10), 3, "2026-04")
    assert [(line.kind, line.commission) for line in lines] == [("return", D("-300.00"))]
