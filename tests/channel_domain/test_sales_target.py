"""Target rules: SMART targets, KPI weights summing to 1, decomposition that never exceeds
and finally equals the parent, revisions approved by someone else, closing after the period."""

from __future__ import annotations

from decimal import Decimal

import pytest

from channel_domain.sales_target import SalesTarget
from tests.channel_domain.helpers import as_, on_day, refused

KPIS = {"sales_revenue": "0.6", "partner_satisfaction": "0.25", "active_second_tier_agents": "0.15"}


def set_target(parent: SalesTarget | None = None, **overrides) -> SalesTarget:
    fields = {"assignee_type": "team", "assignee_id": "east", "period": "2026", "amount": "1200000.00", "kpis": KPIS}
    fields.update(overrides)
    with as_("mgr-1", "channel_manager"):
        return SalesTarget.set(parent=parent, **fields)


@pytest.mark.parametrize(
    "kpis",
    [
        {"sales_revenue": "0.6", "market_share": "0.3"},  # 0.9
        {"sales_revenue": "0.7", "market_share": "0.4"},  # 1.1
    ],
)
def test_kpi_weights_must_sum_to_exactly_one(kpis):
    with refused("kpi_weights_must_sum_to_one"):
        set_target(kpis=kpis)


def test_kpi_weights_are_decimals_not_floats():
    with refused("validation_error"):
        set_target(kpis={"sales_revenue": 0.5, "market_share": 0.5})


@pytest.mark.parametrize(
    ("field", "value"),
    [("period", None), ("period", "next year"), ("amount", None), ("amount", "0"), ("assignee_type", "region")],
)
def test_a_target_that_is_not_smart_is_refused(field, value):
    with refused("validation_error"):
        set_target(**{field: value})


def test_children_never_exceed_the_parent_and_stay_within_its_period():
    parent = set_target()
    set_target(parent, assignee_type="employee", assignee_id="e-1", period="2026-Q1", amount="700000.00")
    with refused("decomposition_exceeds_parent"):
        set_target(parent, assignee_type="employee", assignee_id="e-2", amount="500000.01")
    with refused("period_outside_parent"):
        set_target(parent, assignee_type="employee", assignee_id="e-2", period="2027-Q1", amount="1.00")
    set_target(parent, assignee_type="employee", assignee_id="e-2", amount="500000.00")
    assert parent.allocated == parent.amount == Decimal("1200000.00")


def test_parent_closes_only_when_children_sum_exactly_to_it():
    parent = set_target(period="2026-Q1", amount="1000.00")
    set_target(parent, assignee_type="employee", assignee_id="e-1", period="2026-Q1", amount="600.00")
    with on_day("mgr-1", "2026-04-01", "channel_manager"), refused("decomposition_incomplete"):
        parent.close()
    set_target(parent, assignee_type="employee", assignee_id="e-2", period="2026-Q1", amount="400.00")
    with on_day("mgr-1", "2026-04-01", "channel_manager"):
        parent.close()
    assert parent.status == "closed"


def test_revision_is_approved_by_neither_its_requester_nor_the_setter():
    target = set_target()
    with as_("mgr-2", "channel_manager"):
        revision = target.request_revision("1500000.00", "new product line")
        with refused("segregation_of_duties"):
            target.approve_revision(revision)
    with as_("mgr-1", "channel_manager"), refused("segregation_of_duties"):
        target.approve_revision(revision)  # mgr-1 set the target
    assert target.amount == Decimal("1200000.00")
    with as_("gm-1", "general_manager"):
        target.approve_revision(revision)
        with refused("invalid_transition"):
            target.approve_revision(revision)
    assert target.amount == Decimal("1500000.00")


def test_child_revision_cannot_push_the_children_past_the_parent():
    parent = set_target(amount="1000.00")
    child = set_target(parent, assignee_type="employee", assignee_id="e-1", amount="1000.00")
    with as_("mgr-2", "channel_manager"):
        revision = child.request_revision("1200.00", "stretch")
    with as_("gm-1", "general_manager"), refused("decomposition_exceeds_parent"):
        child.approve_revision(revision, parent)
    with as_("mgr-2", "channel_manager"), refused("amount_below_decomposition"):
        parent.request_revision("999.00", "cut")


def test_close_after_period_end_with_kpi_results_of_its_own_kpis():
    target = set_target(period="2026-03")
    with on_day("mgr-1", "2026-03-31", "channel_manager"), refused("period_not_ended"):
        target.close()
    with on_day("mgr-1", "2026-04-02", "channel_manager"):
        with refused("validation_error"):
            target.close({"training_pass_rate": "0.9"})
        target.close({"partner_satisfaction": "0.92"})
        with refused("invalid_transition"):
            target.close()
    assert target.kpi_results == {"partner_satisfaction": Decimal("0.92")}
