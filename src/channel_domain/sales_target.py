"""SalesTarget (销售目标): 「公司的销售目标最终会分解到公司的每一个销售人员」.

A target is SMART: an assignee, a period and a measurable amount, with KPI weights that sum
to exactly 1. A parent is decomposed into children whose amounts never exceed it and, by the
time it closes, sum to it exactly. Revisions are approved by someone other than the person
who asked for them or set the target.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.context import current_command
from channel_domain.errors import NotFound, SegregationOfDuties, ValidationFailed, refusal
from channel_domain.values import KPI_NAME, Period, decimal_value, money, require_text

ASSIGNEE_TYPES = ("employee", "partner", "team")
ONE = Decimal(1)


# KPIs the service measures from events (domain.md §3): never typed in at closing.
SALES_REVENUE = "sales_revenue"
COUNTED_KPIS = ("new_partners", "active_second_tier_agents", "training_pass_rate")
COMPUTED_KPIS = (SALES_REVENUE, *COUNTED_KPIS)


def _kpi_weights(kpis: Any) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """KPI weights, and the goals of counted KPIs (given as `{weight, goal}`)."""
    if not isinstance(kpis, dict) or not kpis:
        raise ValidationFailed("kpis", "at least one KPI with its weight")
    weights: dict[str, Decimal] = {}
    goals: dict[str, Decimal] = {}
    for name, given in kpis.items():
        if not isinstance(name, str) or not KPI_NAME.match(name):
            raise ValidationFailed("kpis", f"{name!r} is not a KPI name (lower_snake_case)")
        weight = given
        if name in COUNTED_KPIS:
            if not isinstance(given, dict) or set(given) != {"weight", "goal"}:
                raise ValidationFailed(f"kpis.{name}", "a counted KPI is given as {weight, goal}")
            weight = given["weight"]
            goal = decimal_value(given["goal"], f"kpis.{name}.goal")
            if goal <= 0:
                raise ValidationFailed(f"kpis.{name}.goal", "a goal is above 0")
            goals[name] = goal
        elif isinstance(given, dict):
            raise ValidationFailed(f"kpis.{name}", "only counted KPIs carry a goal; give the weight alone")
        value = decimal_value(weight, f"kpis.{name}")
        if not 0 < value <= 1:
            raise ValidationFailed(f"kpis.{name}", "a weight is above 0 and at most 1")
        weights[name] = value
    if sum(weights.values()) != ONE:
        raise refusal(
            "kpi_weights_must_sum_to_one",
            f"KPI weights sum to {sum(weights.values())}, not 1",
        )
    return weights, goals


class SalesTarget(ChannelAggregate):
    record_name = "target"
    class_version = 2  # the state's shape, for snapshots: 2 adds KPI goals and who entered the results

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before counted KPIs had goals and closing needed a confirmation."""
        state.setdefault("kpi_goals", {})
        state.setdefault("results_entered_by", None)

    @classmethod
    def set(
        cls,
        *,
        assignee_type: str,
        assignee_id: str,
        period: str,
        amount: Any,
        kpis: dict[str, Any],
        parent: SalesTarget | None = None,
    ) -> SalesTarget:
        if assignee_type not in ASSIGNEE_TYPES:
            raise ValidationFailed("assignee_type", "employee, partner or team")
        if period is None:
            raise ValidationFailed("period", "a target without a period is not SMART")
        parsed = Period.parse(period)
        value = money(amount)
        weights, goals = _kpi_weights(kpis)
        target = cls(
            assignee_type=assignee_type,
            assignee_id=require_text(str(assignee_id) if assignee_id else "", "assignee_id"),
            period=parsed.text,
            amount=value,
            kpis=weights,
            parent_id=parent.id if parent else None,
            set_by=current_command().actor,
            kpi_goals=goals,
        )
        if parent is not None:
            parent.allocate(target.id, parsed, value)
        return target

    def allocate(self, child_id: UUID, period: Period, amount: Decimal) -> None:
        """Hand part of this target down to a child (decomposition)."""
        self._require_status("decompose", "open")
        if not Period.parse(self.period).contains(period):
            raise refusal("period_outside_parent", f"a child of a {self.period} target lies within {self.period}")
        self._check_allocation(self.allocated + amount)
        self._allocated(child_id=child_id, amount=amount)

    def reallocate(self, child_id: UUID, amount: Decimal) -> None:
        """A child's revised amount replaces its share of this target — never once the
        target is closed (or closing): its assessment stands as confirmed."""
        if self.status != "open":
            raise refusal("parent_closed", f"the parent target is {self.status}: its children are fixed")
        previous = self.children[str(child_id)]
        self._check_allocation(self.allocated - previous + amount)
        self._allocated(child_id=child_id, amount=amount)

    def _check_allocation(self, total: Decimal) -> None:
        if total > self.amount:
            raise refusal(
                "decomposition_exceeds_parent",
                f"children would sum to {total}, more than the parent's {self.amount}",
            )

    @property
    def allocated(self) -> Decimal:
        return sum(self.children.values(), Decimal("0.00"))

    def request_revision(self, amount: Any, reason: str) -> UUID:
        self._require_status("revise", "open")
        value = money(amount)
        if self.children and value < self.allocated:
            raise refusal(
                "amount_below_decomposition",
                f"the children already hold {self.allocated}",
            )
        revision_id = uuid.uuid4()
        self._revision_requested(
            revision_id=revision_id,
            amount=value,
            reason=require_text(reason, "reason"),
            requested_by=current_command().actor,
        )
        return revision_id

    def approve_revision(
        self, revision_id: UUID, parent: SalesTarget | None = None, approver_id: UUID | None = None
    ) -> None:
        """`approver_id`: the acting person's employee record, if any — nobody approves a
        change to their own target. Refused in api.md's order: the revision must exist to know
        who requested it (404), then who may approve (403), then the states (422)."""
        revision = self.revisions.get(str(revision_id))
        if revision is None:
            raise NotFound(f"no revision {revision_id} on this target")
        approver = self._require_other_actor(
            "approve", requested=revision["requested_by"], set=self.set_by
        )
        self._require_not_assignee(approver_id, "approve a revision of their own target")
        self._require_status("revise", "open")
        if revision["status"] != "requested":
            raise refusal("invalid_transition", f"the revision is already {revision['status']}")
        if self.children and revision["amount"] < self.allocated:
            raise refusal("amount_below_decomposition", f"the children already hold {self.allocated}")
        if parent is not None:
            parent.reallocate(self.id, revision["amount"])
        self._revision_approved(revision_id=revision_id, amount=revision["amount"], approved_by=approver)

    def close(self, kpi_results: dict[str, Any] | None = None) -> None:
        """At period end: results for the KPIs the service cannot compute are entered, and take
        effect when someone else confirms them (`confirm_closing`). A target whose KPIs are
        all computed has nothing to confirm and closes at once."""
        self._require_status("close", "open")
        today = current_command().today
        period = Period.parse(self.period)
        if today <= period.ends_on:
            raise refusal("period_not_ended", f"{self.period} ends on {period.ends_on}")
        if self.children and self.allocated != self.amount:
            raise refusal(
                "decomposition_incomplete",
                f"the children sum to {self.allocated}, not the target's {self.amount}",
            )
        results: dict[str, Decimal] = {}
        for name, ratio in (kpi_results or {}).items():
            if name in COMPUTED_KPIS:
                raise refusal("kpi_computed", f"{name} is computed from events, never entered")
            if name not in self.kpis:
                raise ValidationFailed("kpi_results", f"{name} is not one of this target's KPIs")
            value = decimal_value(ratio, f"kpi_results.{name}")
            if value < 0:
                raise ValidationFailed(f"kpi_results.{name}", "an attainment ratio is 0 or more")
            results[name] = value
        missing = sorted(set(self.kpis) - set(COMPUTED_KPIS) - set(results))
        if missing:
            raise refusal("kpi_results_missing", f"no result entered for {', '.join(missing)}", kpis=missing)
        if results:
            self._results_entered(kpi_results=results, on=today, entered_by=current_command().actor)
        else:
            self._closed(kpi_results=results, on=today)

    def confirm_closing(self, confirmer_id: UUID | None = None) -> None:
        """Someone other than whoever entered the results confirms them (domain.md §3); who
        may confirm is settled (403) before the target's state (422)."""
        confirmer = self._require_other_actor("confirm", entered_the_results_of=self.results_entered_by)
        self._require_not_assignee(confirmer_id, "confirm the results of their own target")
        self._require_status("confirm the closing of", "closing")
        self._closed(kpi_results=self.kpi_results, on=current_command().today, confirmed_by=confirmer)

    def _require_not_assignee(self, acting_employee_id: UUID | None, action: str) -> None:
        """An employee never approves what credits themselves: their own target, or their
        team's, which they lead."""
        if acting_employee_id is None or self.assignee_type == "partner":
            return
        if str(acting_employee_id) == self.assignee_id:
            actor = current_command().actor
            raise SegregationOfDuties(f"{actor} cannot {action}", actor=actor, step="is_the_assignee_of")

    # Events ---------------------------------------------------------------------------

    @event("Set")
    def __init__(
        self,
        assignee_type: str,
        assignee_id: str,
        period: str,
        amount: Decimal,
        kpis: dict[str, Decimal],
        parent_id: UUID | None,
        set_by: str,
        kpi_goals: dict[str, Decimal] | None = None,  # absent from targets set before goals existed
    ) -> None:
        self.assignee_type = assignee_type
        self.assignee_id = assignee_id
        self.period = period
        self.amount = amount
        self.kpis = kpis
        self.parent_id = parent_id
        self.set_by = set_by
        self.status = "open"
        self.children: dict[str, Decimal] = {}
        self.revisions: dict[str, dict[str, Any]] = {}
        self.kpi_results: dict[str, Decimal] = {}
        self.kpi_goals = kpi_goals or {}
        self.results_entered_by: str | None = None

    @event("ChildAllocated")
    def _allocated(self, child_id: UUID, amount: Decimal) -> None:
        self.children[str(child_id)] = amount

    @event("RevisionRequested")
    def _revision_requested(self, revision_id: UUID, amount: Decimal, reason: str, requested_by: str) -> None:
        self.revisions[str(revision_id)] = {"amount": amount, "requested_by": requested_by, "status": "requested"}

    @event("RevisionApproved")
    def _revision_approved(self, revision_id: UUID, amount: Decimal, approved_by: str) -> None:
        self.revisions[str(revision_id)]["status"] = "approved"
        self.amount = amount

    @event("ResultsEntered")
    def _results_entered(self, kpi_results: dict[str, Decimal], on: date, entered_by: str) -> None:
        self.status = "closing"
        self.kpi_results = kpi_results
        self.results_entered_by = entered_by

    @event("Closed")
    def _closed(self, kpi_results: dict[str, Decimal], on: date, confirmed_by: str | None = None) -> None:
        self.status = "closed"
        self.kpi_results = kpi_results
