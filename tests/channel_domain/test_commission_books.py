"""CommissionPeriod and CommissionDispute rules, in memory (domain.md §5, §6)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from channel_domain.commission_dispute import CommissionDispute, DisputedLine
from channel_domain.commission_period import CommissionPeriod, LedgerFacts, next_month, period_id
from tests.channel_domain.helpers import as_, refused

# 23:30 on 31 March in Beijing, and half past midnight on 1 April.
LAST_EVENING_OF_MARCH = datetime(2026, 3, 31, 15, 30, tzinfo=UTC)
FIRST_NIGHT_OF_APRIL = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)
LINE = DisputedLine(position=42, line_no=None, event_id=uuid.uuid4(), kind="sale", commission=Decimal("500.00"),
                    contract_id=uuid.uuid4())


def test_a_month_closes_from_its_first_day_after_on_the_company_calendar():
    with as_("fin-1", "finance", now=LAST_EVENING_OF_MARCH), refused("period_not_ended"):
        CommissionPeriod.close("2026-03", None)
    with as_("fin-1", "finance", now=FIRST_NIGHT_OF_APRIL):
        closed = CommissionPeriod.close("2026-03", "2026-02")
    assert (closed.id, closed.period, closed.closes_after, closed.closed_by, closed.status) == (
        period_id("2026-03"), "2026-03", "2026-02", "fin-1", "closed")
    assert next_month("2026-12") == "2027-01"


@pytest.mark.parametrize("period", ["2026-Q1", "2026", "2026-3", "March", None])
def test_a_period_is_a_month(period):
    with as_("fin-1", "finance"), refused("validation_error"):
        CommissionPeriod.close(period, None)


@pytest.mark.parametrize("period", ["2026-02", "2026-03"])
def test_a_month_up_to_the_latest_closed_is_closed(period):
    with as_("fin-1", "finance"), refused("period_closed"):
        CommissionPeriod.close(period, "2026-03")


def test_the_ledger_refusals_name_months_and_at_most_twenty_partners():
    with as_("fin-1", "finance"):
        closing = CommissionPeriod.close("2026-03", None)
    partners = sorted(uuid.uuid4() for _ in range(25))
    with pytest.raises(Exception) as caught:
        closing.require_closable(LedgerFacts(unprepared=partners))
    error = caught.value
    assert error.code == "payouts_not_prepared"
    assert error.details == {"partners": [str(p) for p in partners[:20]], "partners_total": 25}
    assert error.message.endswith(f"{partners[19]} and 5 more")
    with refused("earlier_period_open"):
        closing.require_closable(LedgerFacts(open_before=["2026-02", "2026-01"], unprepared=partners))
    closing.require_closable(LedgerFacts())


def raised(actor="spec-1", employee=None) -> CommissionDispute:
    with as_(actor, "channel_specialist", "finance"):
        return CommissionDispute.raise_(partner_id=uuid.uuid4(), period="2026-03", line=LINE, reason="rate",
                                        raised_by_employee=employee)


def test_whoever_raised_a_dispute_never_resolves_it_by_name_or_employee_record():
    li = uuid.uuid4()
    with as_("spec-1", "finance"), refused("segregation_of_duties"):
        raised().resolve("rejected", "no")
    with as_("li.na-2", "finance"), refused("segregation_of_duties"):
        raised("li.na", employee=li).resolve("rejected", "no", resolver_employee=li)
    with as_("fin-1", "channel_manager"), refused("role_required"):
        raised().resolve("rejected", "no")


def test_an_upheld_dispute_carries_a_signed_non_zero_amount_a_rejected_one_none():
    dispute = raised()
    with as_("fin-1", "finance"):
        for outcome, amount in (("upheld", None), ("upheld", "0"), ("upheld", "1.005"), ("upheld", 1.5),
                                ("rejected", "10.00"), ("maybe", None)):
            with refused("validation_error"):
                dispute.resolve(outcome, "note", amount)
        with refused("validation_error"):
            dispute.resolve("upheld", " ", "-1.00")
        dispute.resolve("upheld", "agreed", "-150.5")
        assert (dispute.status, dispute.amount, dispute.resolved_by) == ("upheld", Decimal("-150.50"), "fin-1")
        with refused("invalid_transition"):
            dispute.resolve("rejected", "again")
    assert (dispute.line_position, dispute.line_event_id, dispute.line_commission) == (
        42, LINE.event_id, Decimal("500.00"))
