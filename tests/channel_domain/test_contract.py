"""Contract rules: contents, approval by someone else, territory, exclusivity inputs,
effective-dated amendments, termination, renewal, sales and returns."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from channel_domain.contract import Contract, PartnerTerms
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


def test_amendment_changes_terms_from_its_effective_date_even_in_the_past():
    contract = signed()
    with as_("mgr-1", "channel_manager"):
        contract.amend("2026-07-01", TIERED, "volume incentive")
        contract.amend("2026-03-01", {"type": "flat", "rate": "0.06"}, "retroactive correction")
        with refused("outside_contract_term"):
            contract.amend("2027-01-01", FLAT)
    assert contract.terms_on(date(2026, 2, 28)).highest_rate == Decimal("0.05")
    assert contract.terms_on(date(2026, 3, 1)).highest_rate == Decimal("0.06")
    assert contract.terms_on(date(2026, 7, 1)).type == "tiered"
    amended = contract.collect_events()[-1]
    assert amended.effective_on == date(2026, 3, 1)


def test_termination_ends_the_term_from_its_effective_date():
    contract = signed("sales_agent")
    with as_("int-1", "integration"):
        contract.record_sale("S-1", "100.00", "2026-05-10")
    with as_("mgr-1", "channel_manager"):
        with refused("sales_after_termination"):
            contract.terminate("2026-05-10", "partner closed")
        contract.terminate("2026-06-01", "partner closed")
        with refused("invalid_transition"):
            contract.renew("2027-12-31")
    assert contract.last_day_in_force == date(2026, 5, 31)
    with as_("int-1", "integration"):
        with refused("contract_not_in_force"):
            contract.record_sale("S-2", "100.00", "2026-06-01")
        contract.record_return("S-1", "100.00", "2026-06-15")  # returns still land


def test_renewal_extends_the_term():
    contract = signed("sales_agent")
    with as_("mgr-1", "channel_manager"):
        with refused("validation_error"):
            contract.renew("2026-12-31")
        contract.renew("2027-12-31")
    assert contract.is_in_force_on(date(2027, 6, 1))
    assert contract.display_status(date(2028, 1, 1)) == "expired"
