"""Contract rules: contents, approval by someone else, territory, exclusivity inputs,
effective-dated amendments, termination, renewal, sales and returns."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from channel_domain.amendment_preview import price_amendment
from channel_domain.contract import Contract, PartnerTerms
from channel_domain.errors import DomainError
from channel_domain.values import CommissionTerms
from tests.channel_domain.helpers import as_, refused

FLAT = {"type": "flat", "rate": "0.05"}
TIERED = {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]}
CONTENTS = {
    "goals": "grow Zhejiang revenue 20 %",
    "products": ["router", "switch"],
    "price_policy": "list price less 8 %",
    "obligations": "monthly sales report",
    "support": "training and co-marketing",
    "confidentiality": "two years after the term",
}


def draft(kind: str = "enterprise_agent", **overrides) -> Contract:
    fields = {
        "partner": PartnerTerms(uuid.uuid4(), kind),
        "starts_on": "2026-01-01",
        "ends_on": "2026-12-31",
        "commission": FLAT,
        "territory": "Zhejiang" if kind == "enterprise_agent" else None,
        **CONTENTS,
    }
    if kind == "consignee":
        fields["fee_rate"] = "0.01"
    fields.update(overrides)
    with as_("mgr-1", "channel_manager"):
        return Contract.draft(**fields)


def signed(kind: str = "enterprise_agent", **overrides) -> Contract:
    contract = draft(kind, **overrides)
    with as_("mgr-1", "channel_manager"):
        contract.submit()
    with as_("gm-1", "general_manager"):
        contract.approve()
    with as_("mgr-1", "channel_manager"):
        contract.sign("2025-12-20")
    return contract


def test_enterprise_agent_contract_names_its_region_and_sales_agent_has_none():
    with refused("validation_error"):
        draft("enterprise_agent", territory=None)
    with refused("validation_error"):
        draft("sales_agent", territory="Zhejiang")
    assert draft("sales_agent").territory is None


def test_fee_rate_belongs_to_consignee_contracts_only():
    with refused("validation_error"):
        draft("consignee", fee_rate=None)
    with refused("validation_error"):
        draft("retailer", fee_rate="0.01")
    assert draft("consignee").fee_rate == Decimal("0.01")


@pytest.mark.parametrize(
    "commission",
    [
        {"type": "flat", "rate": 0.05},  # float
        {"type": "flat", "rate": "1.2"},
        {"type": "flat"},
        {"type": "percent", "rate": "0.05"},
        {"type": "tiered", "tiers": []},
        {"type": "tiered", "tiers": [{"up_to": "100", "rate": "0.03"}]},  # last tier capped
        {"type": "tiered", "tiers": [{"up_to": "100", "rate": "0.03"}, {"up_to": "50", "rate": "0.04"}, {"rate": "0.05"}]},
    ],
)
def test_malformed_commission_terms_are_refused(commission):
    with refused("validation_error"):
        draft(commission=commission)


def test_end_before_start_is_refused():
    with refused("validation_error"):
        draft(starts_on="2026-06-01", ends_on="2026-05-31")


def test_sales_agent_rate_at_or_above_lowest_enterprise_rate_needs_justification():
    with refused("rate_justification_required"):
        draft("sales_agent", commission=FLAT, lowest_enterprise_agent_rate=Decimal("0.05"))
    justified = draft(
        "sales_agent", commission=FLAT, lowest_enterprise_agent_rate=Decimal("0.05"),
        rate_justification="national coverage, no regional overlap",
    )
    assert justified.rate_justification
    assert draft("sales_agent", commission={"type": "flat", "rate": "0.04"}, lowest_enterprise_agent_rate=Decimal("0.05"))


def test_submission_needs_every_content_the_seeds_require():
    contract = draft(support=None, confidentiality="")
    with as_("mgr-1", "channel_manager"), refused("incomplete_contract"):
        contract.submit()


def test_drafter_and_submitter_cannot_approve():
    contract = draft()
    with as_("mgr-2", "channel_manager"):
        contract.submit()
    with as_("mgr-1", "channel_manager", "general_manager"), refused("segregation_of_duties"):
        contract.approve()
    with as_("mgr-2", "channel_manager", "general_manager"), refused("segregation_of_duties"):
        contract.approve()
    with as_("gm-1", "general_manager"):
        contract.approve()
    assert contract.status == "approved"


def test_lifecycle_order_is_enforced():
    contract = draft()
    with as_("mgr-1", "channel_manager"):
        with refused("invalid_transition"):
            contract.sign("2026-01-01")
        with refused("invalid_transition"):
            contract.record_return("A-1", "1.00", "2026-01-02")
    with as_("gm-1", "general_manager"), refused("invalid_transition"):
        contract.approve()


def test_sale_must_fall_in_the_term_and_the_territory():
    contract = signed()
    with as_("int-1", "integration"):
        with refused("contract_not_in_force"):
            contract.record_sale("A-0", "100.00", "2025-12-31", region="Zhejiang")
        with refused("outside_territory"):
            contract.record_sale("A-1", "100.00", "2026-02-01", region="Jiangsu")
        with refused("validation_error"):
            contract.record_sale("A-1", "100.00", "2026-02-01")
        contract.record_sale("A-1", "100.00", "2026-02-01", region="Zhejiang")
        with refused("duplicate_order"):
            contract.record_sale("A-1", "50.00", "2026-02-02", region="Zhejiang")


def test_unsigned_contract_takes_no_sales():
    contract = draft("sales_agent")
    with as_("int-1", "integration"), refused("contract_not_in_force"):
        contract.record_sale("S-1", "100.00", "2026-02-01")


def test_sales_agent_sells_anywhere():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        contract.record_sale("S-1", "100.00", "2026-02-01", region="Xinjiang")


def test_money_must_be_positive_decimal_with_two_places():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        for amount in (0.5, "-1.00", "0", "10.001", "ten"):
            with refused("validation_error"):
                contract.record_sale("S-1", amount, "2026-02-01")


def test_return_never_exceeds_what_is_left_of_its_order():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        contract.record_sale("S-1", "1000.00", "2026-02-01")
        with refused("unknown_order"):
            contract.record_return("S-9", "1.00", "2026-02-03")
        with refused("validation_error"):
            contract.record_return("S-1", "1.00", "2026-01-31")
        contract.record_return("S-1", "600.00", "2026-02-03")
        with refused("return_exceeds_order"):
            contract.record_return("S-1", "400.01", "2026-02-04")
        contract.record_return("S-1", "400.00", "2026-02-04")
    assert contract.order_line("S-1")[1] == Decimal("1000.00")


def price(contract: Contract, amendment_id, now: datetime | None = None):
    """Prices a requested amendment on the contract's events so far, positions in recording order."""
    history = list(enumerate(contract.pending_events, start=1))
    return lambda day, terms: price_amendment(history, amendment_id, day, terms, now or datetime.now(UTC))


def approve(contract: Contract, amendment_id, actor: str = "gm-1") -> None:
    request = contract.amendment_request(amendment_id)
    preview = price(contract, amendment_id)(request["effective_on"], CommissionTerms.parse(request["commission"]))
    with as_(actor, "general_manager"):
        contract.approve_amendment(amendment_id, preview.digest, price(contract, amendment_id))


def test_amendment_changes_terms_from_its_effective_date_even_in_the_past():
    contract = signed()
    with as_("mgr-1", "channel_manager"):
        later = contract.request_amendment("2026-07-01", TIERED, "volume incentive")
        earlier = contract.request_amendment("2026-03-01", {"type": "flat", "rate": "0.06"}, "retroactive correction")
        with refused("outside_contract_term"):
            contract.request_amendment("2027-01-01", FLAT)
    approve(contract, later)
    approve(contract, earlier)
    assert contract.terms_on(date(2026, 2, 28)).highest_rate == Decimal("0.05")
    assert contract.terms_on(date(2026, 3, 1)).highest_rate == Decimal("0.06")
    assert contract.terms_on(date(2026, 7, 1)).type == "tiered"
    amended = contract.pending_events[-1]
    assert (amended.effective_on, amended.amendment_id, amended.approved_by) == (date(2026, 3, 1), earlier, "gm-1")


def test_a_requested_amendment_changes_nothing_until_someone_else_approves_it():
    contract = signed()
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-03-01", {"type": "flat", "rate": "0.06"}, "new scale")
    assert contract.terms_on(date(2026, 6, 1)).highest_rate == Decimal("0.05")
    assert contract.amendment_request(amendment_id)["status"] == "requested"
    preview = price(contract, amendment_id)(date(2026, 3, 1), CommissionTerms.parse({"type": "flat", "rate": "0.06"}))
    with as_("mgr-1", "channel_manager"), refused("segregation_of_duties"):
        contract.approve_amendment(amendment_id, preview.digest, price(contract, amendment_id))
    with as_("gm-1", "general_manager"), refused("not_found"):
        contract.approve_amendment(uuid.uuid4(), preview.digest, price(contract, amendment_id))
    approve(contract, amendment_id, actor="mgr-2")  # another channel manager may approve
    assert contract.terms_on(date(2026, 6, 1)).highest_rate == Decimal("0.06")
    with as_("gm-1", "general_manager"), refused("invalid_transition"):
        contract.approve_amendment(amendment_id, preview.digest, price(contract, amendment_id))


def test_a_rejected_amendment_never_takes_effect():
    contract = signed()
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-03-01", {"type": "flat", "rate": "0.06"})
        with refused("segregation_of_duties"):
            contract.reject_amendment(amendment_id, "mine")
    with as_("gm-1", "general_manager"):
        with refused("validation_error"):
            contract.reject_amendment(amendment_id, " ")
        contract.reject_amendment(amendment_id, "no budget for it")
        with refused("invalid_transition"):
            contract.reject_amendment(amendment_id, "again")
        with refused("invalid_transition"):
            contract.approve_amendment(amendment_id, "0" * 64, price(contract, amendment_id))
    assert contract.amendment_request(amendment_id)["status"] == "rejected"
    assert contract.amendments == []


def test_the_approval_names_the_figures_of_the_preview_it_saw():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        contract.record_sale("S-1", "50000.00", "2026-02-10")
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-02-01", {"type": "flat", "rate": "0.06"}, "new scale")
    six = CommissionTerms.parse({"type": "flat", "rate": "0.06"})
    seen = price(contract, amendment_id, now=datetime(2026, 3, 10, 4, 0, tzinfo=UTC))(date(2026, 2, 1), six)
    # February booked 50 000 × 5 % = 2 500.00; at 6 % it would be 3 000.00.
    assert [(line.corrects_period, line.booked, line.would_book, line.adjustment) for line in seen.lines] == [
        ("2026-02", Decimal("2500.00"), Decimal("3000.00"), Decimal("500.00"))]
    assert seen.total == Decimal("500.00")
    canonical = (f"channel-domain/amendment-preview/v1\n{amendment_id}\nbooks_in 2026-03\n"
                 "2026-02 2500.00 3000.00 500.00\ntotal 500.00\n")
    assert seen.digest == hashlib.sha256(canonical.encode()).hexdigest()

    with as_("int-1", "integration"):
        contract.record_sale("S-2", "10000.00", "2026-02-20")  # the ledger moves
    fresh = price(contract, amendment_id)(date(2026, 2, 1), six)
    assert [(line.booked, line.would_book) for line in fresh.lines] == [(Decimal("3000.00"), Decimal("3600.00"))]
    with as_("gm-1", "general_manager"), pytest.raises(DomainError) as stale:
        contract.approve_amendment(amendment_id, seen.digest, price(contract, amendment_id))
    # Refused without handing out the fresh digest: approving means having read the figures.
    assert stale.value.code == "preview_stale" and fresh.digest not in str(stale.value.details)
    assert contract.amendments == []
    with as_("gm-1", "general_manager"):
        contract.approve_amendment(amendment_id, fresh.digest, price(contract, amendment_id))
    assert contract.pending_events[-1].preview_digest == fresh.digest


def test_a_preview_without_figures_to_correct_has_no_lines():
    contract = signed()
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-02-01", {"type": "flat", "rate": "0.06"})
    now = datetime(2026, 5, 31, 12, 0, tzinfo=UTC)
    preview = price(contract, amendment_id, now)(date(2026, 2, 1), CommissionTerms.parse({"type": "flat", "rate": "0.06"}))
    assert (preview.lines, preview.total) == ((), Decimal("0.00"))
    assert preview.canonical_text() == f"channel-domain/amendment-preview/v1\n{amendment_id}\nbooks_in 2026-05\ntotal 0.00\n"


def test_a_preview_names_the_month_it_books_in_and_an_approval_across_midnight_is_a_new_preview():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        contract.record_sale("S-1", "50000.00", "2026-02-10")
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-02-01", {"type": "flat", "rate": "0.06"})
    six = CommissionTerms.parse({"type": "flat", "rate": "0.06"})
    # 23:59 and 00:01 in Beijing: the last minute of March, the first of April.
    march = price(contract, amendment_id, datetime(2026, 3, 31, 15, 59, tzinfo=UTC))(date(2026, 2, 1), six)
    april = price(contract, amendment_id, datetime(2026, 3, 31, 16, 1, tzinfo=UTC))(date(2026, 2, 1), six)
    assert (march.books_in, april.books_in) == ("2026-03", "2026-04")
    assert [line.adjustment for line in march.lines] == [line.adjustment for line in april.lines]
    assert march.digest != april.digest


def test_an_amendment_is_checked_again_when_approved():
    contract = signed("sales_agent")
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-09-01", {"type": "flat", "rate": "0.06"})
        contract.terminate("2026-08-01", "agent retired")
    with as_("gm-1", "general_manager"), refused("invalid_transition"):
        contract.approve_amendment(amendment_id, "0" * 64, price(contract, amendment_id))
    contract = signed("sales_agent")
    with as_("mgr-1", "channel_manager"):
        amendment_id = contract.request_amendment("2026-09-01", {"type": "flat", "rate": "0.06"},
                                                  lowest_enterprise_agent_rate=Decimal("0.07"))
    with as_("gm-1", "general_manager"), refused("rate_justification_required"):
        contract.approve_amendment(amendment_id, "0" * 64, price(contract, amendment_id),
                                   lowest_enterprise_agent_rate=Decimal("0.06"))


def test_termination_ends_the_term_from_its_effective_date():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        contract.record_sale("S-1", "100.00", "2026-05-10")
    with as_("mgr-1", "channel_manager"):
        with refused("sales_after_termination"):
            contract.terminate("2026-05-10", "partner closed")
        contract.terminate("2026-06-01", "partner closed")
        with refused("invalid_transition"):
            contract.request_renewal("2027-12-31")
    assert contract.last_day_in_force == date(2026, 5, 31)
    with as_("int-1", "integration"):
        with refused("contract_not_in_force"):
            contract.record_sale("S-2", "100.00", "2026-06-01")
        contract.record_return("S-1", "100.00", "2026-06-15")  # returns still land


def test_renewal_extends_the_term_once_someone_else_approves_it():
    contract = signed("sales_agent")
    with as_("mgr-1", "channel_manager"):
        with refused("validation_error"):
            contract.request_renewal("2026-12-31")
        renewal_id = contract.request_renewal("2027-12-31")
        assert contract.ends_on == date(2026, 12, 31)
        with refused("segregation_of_duties"):
            contract.approve_renewal(renewal_id)
    with as_("gm-1", "general_manager"):
        with refused("not_found"):
            contract.approve_renewal(uuid.uuid4())
        contract.approve_renewal(renewal_id)
        with refused("invalid_transition"):
            contract.approve_renewal(renewal_id)
    assert (contract.ends_on, contract.renewals) == (date(2027, 12, 31), 1)
    assert contract.pending_events[-1].approved_by == "gm-1"
    assert contract.is_in_force_on(date(2027, 6, 1))
    assert contract.display_status(date(2028, 1, 1)) == "expired"


def test_a_renewal_overtaken_or_rejected_changes_nothing():
    contract = signed("sales_agent")
    with as_("mgr-1", "channel_manager"):
        shorter = contract.request_renewal("2027-06-30")
        longer = contract.request_renewal("2027-12-31")
        rejected = contract.request_renewal("2028-12-31")
    with as_("gm-1", "general_manager"):
        contract.approve_renewal(longer)
        with refused("validation_error"):
            contract.approve_renewal(shorter)  # it would no longer extend the contract
        contract.reject_renewal(rejected, "one year at a time")
        with refused("invalid_transition"):
            contract.approve_renewal(rejected)
    assert contract.ends_on == date(2027, 12, 31)
