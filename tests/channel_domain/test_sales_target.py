"""Target rules: SMART targets, KPI weights summing to 1, decomposition that never exceeds
and finally equals the parent, revisions approved by someone else, closing after the period."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from channel_domain.sales_target import SalesTarget
from tests.channel_domain.helpers import as_, on_day, refused

KPIS = {"sales_revenue": "0.6", "partner_satisfaction": "0.25",
        "active_second_tier_agents": {"weight": "0.15", "goal": "4"}}


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
        parent.close({"partner_satisfaction": "0.8"})
    assert parent.status == "closing"


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
            target.close({"partner_satisfaction": "0.9", "market_share": "0.5"})  # not one of its KPIs
        with refused("kpi_results_missing"):
            target.close({})
        target.close({"partner_satisfaction": "0.92"})
        with refused("invalid_transition"):
            target.close()
    assert target.kpi_results == {"partner_satisfaction": Decimal("0.92")}
    assert target.status == "closing"


@pytest.mark.parametrize("kpi", ["sales_revenue", "new_partners", "active_second_tier_agents", "training_pass_rate"])
def test_results_of_computed_kpis_are_never_typed_in(kpi):
    target = set_target(period="2026-03")
    with on_day("mgr-1", "2026-04-02", "channel_manager"), refused("kpi_computed"):
        target.close({"partner_satisfaction": "0.9", kpi: "1.5"})
    assert target.status == "open"


@pytest.mark.parametrize(
    "kpis",
    [
        {"sales_revenue": "0.5", "new_partners": "0.5"},  # a counted KPI without its goal
        {"sales_revenue": "0.5", "new_partners": {"weight": "0.5"}},
        {"sales_revenue": "0.5", "new_partners": {"weight": "0.5", "goal": "0"}},
        {"sales_revenue": {"weight": "0.5", "goal": "3"}, "new_partners": {"weight": "0.5", "goal": "3"}},
    ],
)
def test_counted_kpis_carry_a_goal_and_only_they_do(kpis):
    with refused("validation_error"):
        set_target(kpis=kpis)


def test_counted_kpi_goals_are_kept_apart_from_the_weights():
    target = set_target(kpis={"sales_revenue": "0.5", "training_pass_rate": {"weight": "0.5", "goal": "0.8"}})
    assert target.kpis == {"sales_revenue": Decimal("0.5"), "training_pass_rate": Decimal("0.5")}
    assert target.kpi_goals == {"training_pass_rate": Decimal("0.8")}


def test_entered_results_take_effect_only_on_someone_elses_confirmation():
    target = set_target(period="2026-03")
    with on_day("mgr-1", "2026-03-31", "channel_manager"), refused("invalid_transition"):
        target.confirm_closing()  # nothing entered yet
    with on_day("mgr-2", "2026-04-02", "channel_manager"):
        target.close({"partner_satisfaction": "0.9"})
        with refused("segregation_of_duties"):
            target.confirm_closing()  # a self-assessed score is no assessment
    assert target.status == "closing"
    with on_day("mgr-1", "2026-04-03", "channel_manager"):
        target.confirm_closing()
    assert target.status == "closed"
    assert target.kpi_results == {"partner_satisfaction": Decimal("0.9")}


def test_a_target_of_computed_kpis_only_closes_at_once():
    target = set_target(period="2026-03", kpis={"sales_revenue": "1"})
    with on_day("mgr-1", "2026-04-02", "channel_manager"):
        target.close()
    assert target.status == "closed"


def test_nobody_approves_or_confirms_for_their_own_target():
    me = uuid.uuid4()
    target = set_target(period="2026-03", assignee_type="employee", assignee_id=str(me))
    with as_("mgr-2", "channel_manager"):
        revision = target.request_revision("1300000.00", "more")
    with as_("li.na", "channel_manager"), refused("segregation_of_duties"):
        target.approve_revision(revision, approver_id=me)  # li.na is the assignee's employee record
    with as_("li.na", "channel_manager"):
        target.approve_revision(revision, approver_id=uuid.uuid4())
    with on_day("mgr-2", "2026-04-02", "channel_manager"):
        target.close({"partner_satisfaction": "0.9"})
    with on_day("li.na", "2026-04-03", "channel_manager"), refused("segregation_of_duties"):
        target.confirm_closing(confirmer_id=me)
    assert target.status == "closing"


def test_a_team_leader_does_not_approve_for_their_team():
    leader = uuid.uuid4()
    team = set_target(assignee_type="team", assignee_id=str(leader))
    with as_("mgr-2", "channel_manager"):
        revision = team.request_revision("1300000.00", "more")
    with as_("leader", "general_manager"), refused("segregation_of_duties"):
        team.approve_revision(revision, approver_id=leader)


def test_a_child_revision_never_changes_a_closed_parent():
    parent = set_target(period="2026-Q1", amount="1000.00")
    child = set_target(parent, assignee_type="employee", assignee_id="e-1", period="2026-03", amount="1000.00")
    with as_("mgr-2", "channel_manager"):
        revision = child.request_revision("900.00", "smaller area")
    with on_day("mgr-1", "2026-04-02", "channel_manager"):
        parent.close({"partner_satisfaction": "0.9"})
    with as_("gm-1", "general_manager"), refused("parent_closed"):
        child.approve_revision(revision, parent)
    assert parent.children[str(child.id)] == Decimal("1000.00") and child.amount == Decimal("1000.00")


def test_a_target_set_before_goals_existed_still_loads():
    target = set_target(kpis={"sales_revenue": "1"})
    created = target.collect_events()[0]
    del created.__dict__["kpi_goals"]  # the shape of a Set event stored before this field
    assert created.mutate(None).kpi_goals == {}


def test_a_snapshot_from_before_confirmed_closings_is_upcast():
    target = set_target()
    old = SalesTarget.Snapshot.take(target)
    old.state.pop("class_version")
    old.state.pop("kpi_goals")
    old.state.pop("results_entered_by")  # the shape of class version 1
    loaded = old.mutate(None)
    assert (loaded.kpi_goals, loaded.results_entered_by) == ({}, None)
    assert loaded.kpis == target.kpis
