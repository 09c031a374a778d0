"""Partner (渠道合作伙伴): 「申请、评审、签约和考核」 — application, review, contract, assessment.

Seven kinds with their own rules (domain.md §1), complaints that escalate, the credit
security deposit, a payout account changed only on a second person's approval, broker deals,
consignee remittances, and money paid out — commission payouts and housing subsidies — that
passes four hands in a fixed order: prepared → verified by finance → approved by the general
manager → paid.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.company_time import local_date
from channel_domain.context import current_command
from channel_domain.errors import NotFound, SegregationOfDuties, ValidationFailed, refusal
from channel_domain.values import KPI_NAME, Period, decimal_value, money, parse_date, rate, require_text

KINDS = (
    "enterprise_agent",
    "sales_agent",
    "consignee",
    "broker",
    "distributor",
    "retailer",
    "direct_store",
)
GRADES = ("A", "B", "C", "D")
MINIMUM_MONTHLY_VISITS = {"A": 5, "B": 5, "C": 2, "D": 2}
# Housing subsidies (房补) go to social-channel agents: not to the company's own stores,
# and not to brokers, who have no fixed tie to the company.
SUBSIDY_KINDS = ("enterprise_agent", "sales_agent", "consignee", "distributor", "retailer")
CONTRACTABLE_STATUSES = ("approved", "active")
DOCUMENT_KINDS = (
    "business_licence",
    "legal_representative_id",
    "financial_assessment",
    "sales_model",
    "key_staff",
    "other",
)
# 「建立完善的合作伙伴档案」: who sells or holds the company's goods is approved only with
# its licence and its legal representative's identity on file (domain.md §1).
ARCHIVE_REQUIRED_KINDS = ("enterprise_agent", "sales_agent", "consignee", "distributor")
ARCHIVE_REQUIRED_DOCUMENTS = ("business_licence", "legal_representative_id")
INVENTORY_KINDS = ("distributor", "consignee")  # 进销存 reports come from who holds stock
INVENTORY_QUANTITIES = ("opening", "received", "sold", "closing")
CORRECTIVE_PLAN_OUTCOMES = ("met", "failed")


def _recorded_day(state: dict[str, Any]) -> date:
    """Events recorded before suspensions carried their date read it from when they were
    recorded, on the company's calendar."""
    return local_date(state["timestamp"])


def _head_count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(field, "a whole number, 0 or more")
    return value


class Partner(ChannelAggregate):
    record_name = "partner"
    # The state's shape, for snapshots: 2 holds each housing subsidy's steps, remittances, dated
    # suspensions, the archive, corrective plans and stock.
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot from before the controls of issue 13. One still suspended is read as
        suspended since its last change, the only date the snapshot knows."""
        state["housing_subsidies"] = {
            period: _paid_out(amount, None, None) for period, amount in state.get("housing_subsidies", {}).items()
        }
        state["remittances"] = {}
        suspended_since = local_date(state["_modified_on"])
        state["suspensions"] = [[suspended_since, None]] if state["status"] == "suspended" else []
        state["documents"] = {}
        state["corrective_plans"] = {}
        state["stock"] = {}
        state["latest_deal_on"] = None  # not in the snapshot: later deals set it again

    # Application and review ---------------------------------------------------------

    @classmethod
    def apply_for_partnership(
        cls,
        *,
        kind: str,
        name: str,
        region: str | None = None,
        grade: str | None = None,
        commission_rate: Any = None,
        parent_partner_id: UUID | None = None,
        recruited_by: UUID | None = None,
    ) -> Partner:
        if kind not in KINDS:
            raise ValidationFailed("kind", f"one of {', '.join(KINDS)}")
        if kind == "direct_store":
            if grade not in GRADES:
                raise ValidationFailed("grade", "a direct store is graded A, B, C or D")
        elif grade is not None:
            raise ValidationFailed("grade", "only direct stores are graded")
        broker_rate: Decimal | None = None
        if kind == "broker":
            if commission_rate is None:
                raise ValidationFailed("commission_rate", "a broker's commission rate is set when it registers")
            broker_rate = rate(commission_rate, "commission_rate")
        elif commission_rate is not None:
            raise ValidationFailed("commission_rate", "only brokers carry a rate; other partners' rates are on their contract")
        return cls(
            kind=kind,
            name=require_text(name, "name"),
            region=region.strip() if isinstance(region, str) and region.strip() else None,
            grade=grade,
            commission_rate=broker_rate,
            parent_partner_id=parent_partner_id,
            recruited_by=recruited_by,
            applied_by=current_command().actor,
        )

    def review(self, decision: str, notes: str | None = None, reviewer_id: UUID | None = None) -> None:
        """`reviewer_id`: the acting person's employee record, if they have one — a recruiter
        never reviews their own recruit, whether named by actor or by employee record."""
        # Who may review is settled first (403), whatever the application's state (422).
        reviewer = self._require_other_actor("review", filed_the_application_for=self.applied_by)
        if reviewer_id is not None and reviewer_id == self.recruited_by:
            raise SegregationOfDuties(
                f"{reviewer} recruited this partner and cannot also review it", actor=reviewer, step="recruited"
            )
        self._require_status("review", "applied")
        if decision not in ("approve", "reject"):
            raise ValidationFailed("decision", "approve or reject")
        if decision == "approve":
            self._require_archive(current_command().today)
        self._reviewed(decision=decision, notes=notes, reviewed_by=reviewer)

    def _require_archive(self, today: date) -> None:
        if self.kind not in ARCHIVE_REQUIRED_KINDS:
            return
        # An expired document is no longer on file: the licence must be valid when approved.
        on_file = {
            document["kind"]
            for document in self.documents.values()
            if document["expires_on"] is None or document["expires_on"] >= today
        }
        missing = [kind for kind in ARCHIVE_REQUIRED_DOCUMENTS if kind not in on_file]
        if missing:
            raise refusal(
                "archive_incomplete",
                f"a {self.kind} is approved with its {' and '.join(missing)} on file",
                missing=missing,
            )

    def activate_on_first_contract(self, contract_id: UUID, signed_on: date) -> None:
        """Signing a partner's first contract makes it active (domain.md §1)."""
        if self.status not in CONTRACTABLE_STATUSES:
            raise refusal("partner_not_eligible", f"the partner is {self.status}")
        if self.status == "approved":
            self._activated(contract_id=contract_id, signed_on=signed_on)

    def suspend(self, reason: str, on: date | str | None = None, latest_sale_on: date | None = None) -> None:
        """`latest_sale_on`: the latest sale date on the partner's contracts. A suspension
        never reaches back over sales or deals already taken: they would become sales made
        while suspended, which the log must never show."""
        self._require_status("suspend", "active")
        day = current_command().today if on is None else parse_date(on, "on")
        if self.suspensions and day < self.suspensions[-1][1]:
            raise ValidationFailed("on", f"the last suspension ran until {self.suspensions[-1][1]}")
        self._refuse_business_from(day, latest_sale_on, "sales_after_suspension", "suspend from the day after it")
        self._suspended(reason=require_text(reason, "reason"), on=day)

    def _refuse_business_from(self, first_day_barred: date, latest_sale_on: date | None, code: str,
                              remedy: str) -> None:
        latest = max((d for d in (latest_sale_on, self.latest_deal_on) if d is not None), default=None)
        if latest is not None and latest >= first_day_barred:
            raise refusal(code, f"a sale or deal dated {latest} is recorded; {remedy}", latest=str(latest))

    def reinstate(self, reason: str, on: date | str | None = None) -> None:
        self._require_status("reinstate", "suspended")
        day = current_command().today if on is None else parse_date(on, "on")
        if day < self.suspensions[-1][0]:
            raise ValidationFailed("on", f"the suspension began on {self.suspensions[-1][0]}")
        self._reinstated(reason=require_text(reason, "reason"), on=day)

    def terminate(self, reason: str, on: date | str) -> None:
        self._require_status("terminate", "approved", "active", "suspended")
        day = parse_date(on, "on")
        # `on` is the last day the partner does business (api.md: refused "after the termination's
        # on"). A contract's sales are checked as the contract ends with the partner.
        self._refuse_business_from(day + timedelta(days=1), None, "sales_after_termination",
                                   "terminate on that day or later")
        self._terminated(reason=require_text(reason, "reason"), on=day, terminated_by=current_command().actor)

    def is_active_on(self, day: date) -> bool:
        """Whether the partner may sell on `day`: not suspended then, not after its termination
        date. By date, not by status, so a sale made before a suspension is still taken during it."""
        if self.terminated_on is not None and day > self.terminated_on:
            return False
        return not any(start <= day and (until is None or day < until) for start, until in self.suspensions)

    def require_active_on(self, day: date) -> None:
        if not self.is_active_on(day):
            ended = self.terminated_on is not None and day > self.terminated_on
            raise refusal(
                "partner_not_active",
                f"the partner is {'terminated' if ended else 'suspended'} on {day}",
                partner_id=str(self.id),
            )

    @property
    def minimum_monthly_visits(self) -> int | None:
        return MINIMUM_MONTHLY_VISITS.get(self.grade) if self.grade else None

    def require_contractable(self) -> None:
        if self.kind == "broker":
            raise refusal("broker_has_no_contract", "brokers work without a contract")
        if self.status not in CONTRACTABLE_STATUSES:
            raise refusal("partner_not_eligible", f"the partner is {self.status}, not approved")

    # Visits, evaluations, complaints -------------------------------------------------

    def record_visit(self, visited_on: date | str, employee_id: UUID, notes: str | None = None) -> None:
        self._require_status("visit", "applied", "approved", "active", "suspended")
        self._visited(visited_on=parse_date(visited_on, "visited_on"), employee_id=employee_id, notes=notes)

    def evaluate(self, period: str, scores: dict[str, Any]) -> None:
        self._require_status("evaluate", "approved", "active", "suspended")
        parsed = Period.parse(period)
        if not isinstance(scores, dict) or not scores:
            raise ValidationFailed("scores", "at least one KPI score")
        checked: dict[str, Decimal] = {}
        for kpi, score in scores.items():
            if not isinstance(kpi, str) or not KPI_NAME.match(kpi):
                raise ValidationFailed("scores", f"{kpi!r} is not a KPI name (lower_snake_case)")
            value = decimal_value(score, f"scores.{kpi}")
            if not 0 <= value <= 100:
                raise ValidationFailed(f"scores.{kpi}", "from 0 to 100")
            checked[kpi] = value
        if parsed.text in self.evaluations:
            raise refusal("duplicate_evaluation", f"{parsed.text} is already evaluated")
        self._evaluated(period=parsed.text, scores=checked)

    def open_complaint(self, subject: str, detail: str | None = None) -> UUID:
        self._require_status("take a complaint about", "applied", "approved", "active", "suspended", "terminated")
        complaint_id = uuid.uuid4()
        self._complaint_opened(complaint_id=complaint_id, subject=require_text(subject, "subject"), detail=detail)
        return complaint_id

    def resolve_complaint(self, complaint_id: UUID, note: str) -> None:
        status = self._complaint_status(complaint_id)
        if status not in ("opened", "escalated"):
            raise refusal("invalid_transition", f"the complaint is already {status}")
        self._complaint_resolved(complaint_id=complaint_id, note=require_text(note, "note"))

    def escalate_complaint(self, complaint_id: UUID, note: str) -> None:
        status = self._complaint_status(complaint_id)
        if status != "opened":
            raise refusal("invalid_transition", f"only an open complaint escalates; this one is {status}")
        self._complaint_escalated(complaint_id=complaint_id, note=require_text(note, "note"))

    def _complaint_status(self, complaint_id: UUID) -> str:
        try:
            return self.complaints[str(complaint_id)]
        except KeyError:
            raise NotFound(f"no complaint {complaint_id} on this partner") from None

    # Trainings -----------------------------------------------------------------------

    def record_training(
        self, held_on: date | str, topic: str, trainer_id: UUID, attendees: Any, passed: Any
    ) -> UUID:
        """A training session for the partner's staff (「培训过多少次,有多少代理商参加,有多少人通过了
        最终测试」). The application checks the trainer was employed on the day."""
        self._require_status("train", "approved", "active", "suspended")
        attended = _head_count(attendees, "attendees")
        passed_count = _head_count(passed, "passed")
        if passed_count > attended:
            raise ValidationFailed("passed", f"at most the {attended} attendees")
        training_id = uuid.uuid4()
        self._training_recorded(
            training_id=training_id,
            held_on=parse_date(held_on, "held_on"),
            topic=require_text(topic, "topic"),
            trainer_id=trainer_id,
            attendees=attended,
            passed=passed_count,
        )
        return training_id
    # Archive, corrective plans, inventory ----------------------------------------------

    def record_document(
        self,
        kind: str,
        reference: str,
        issued_on: date | str | None = None,
        expires_on: date | str | None = None,
    ) -> UUID:
        self._require_status("file a document for", "applied", "approved", "active", "suspended")
        if kind not in DOCUMENT_KINDS:
            raise ValidationFailed("kind", f"one of {', '.join(DOCUMENT_KINDS)}")
        issued = None if issued_on is None else parse_date(issued_on, "issued_on")
        expires = None if expires_on is None else parse_date(expires_on, "expires_on")
        if issued is not None and expires is not None and expires < issued:
            raise ValidationFailed("expires_on", "cannot be before issued_on")
        document_id = uuid.uuid4()
        self._document_recorded(
            document_id=document_id,
            kind=kind,
            reference=require_text(reference, "reference"),
            issued_on=issued,
            expires_on=expires,
        )
        return document_id

    def record_corrective_plan(self, actions: Any, due_on: date | str) -> UUID:
        self._require_status("set a corrective plan for", "approved", "active", "suspended")
        if not isinstance(actions, list) or not actions:
            raise ValidationFailed("actions", "a list of at least one action")
        checked = [require_text(action, "actions") for action in actions]
        plan_id = uuid.uuid4()
        self._corrective_plan_recorded(plan_id=plan_id, actions=checked, due_on=parse_date(due_on, "due_on"))
        return plan_id

    def close_corrective_plan(self, plan_id: UUID, outcome: str) -> None:
        plan = self.corrective_plans.get(str(plan_id))
        if plan is None:
            raise NotFound(f"no corrective plan {plan_id} on this partner")
        if outcome not in CORRECTIVE_PLAN_OUTCOMES:
            raise ValidationFailed("outcome", "met or failed")
        if plan["status"] != "open":
            raise refusal("invalid_transition", f"the plan is already closed as {plan['status']}")
        self._corrective_plan_closed(plan_id=plan_id, outcome=outcome)

    def report_inventory(self, as_of: date | str, lines: Any, correction_reason: str | None = None) -> None:
        if self.kind not in INVENTORY_KINDS:
            raise refusal("inventory_not_applicable", f"a {self.kind} reports no inventory")
        self._require_status("take an inventory report from", "approved", "active", "suspended")
        day = parse_date(as_of, "as_of")
        reason = correction_reason.strip() if isinstance(correction_reason, str) and correction_reason.strip() else None
        checked = _inventory_lines(lines)
        if reason is None:
            # A regular report continues the chain: it comes after the product's latest report
            # (its head) and opens at the head's closing. Anything dated on or before the head
            # rewrites history, which only a correction may do.
            for line in checked:
                previous = self.stock.get(line["product"])
                if previous is None:
                    continue
                if day <= previous["as_of"]:
                    raise refusal(
                        "inventory_out_of_order",
                        f"{line['product']} was last reported for {previous['as_of']}; a report for that date "
                        "or an earlier one is a correction, with a reason",
                        product=line["product"],
                        reported_to=str(previous["as_of"]),
                    )
                if line["opening"] != previous["closing"]:
                    raise refusal(
                        "inventory_chain_broken",
                        f"{line['product']} opens at {line['opening']} but closed at {previous['closing']} "
                        f"on {previous['as_of']}; a report that breaks the chain is a correction, with a reason",
                        product=line["product"],
                        expected_opening=previous["closing"],
                    )
        self._inventory_reported(as_of=day, lines=checked, correction_reason=reason)

    # Money: deposit, payout account, subsidies, deals, payouts ------------------------

    def pay_deposit(self, amount: Any, on: date | str) -> None:
        self._require_status("take a deposit from", "approved", "active", "suspended")
        self._deposit_paid(amount=money(amount), on=parse_date(on, "on"))

    def refund_deposit(self, amount: Any, on: date | str) -> None:
        # Ending the partnership asks for the deposit back; someone else releases it (403
        # before the rules on the refund itself, 422).
        self._require_other_actor("refund the deposit", terminated_the_partnership_of=self.terminated_by)
        if self.status != "terminated":
            raise refusal("partner_not_terminated", "a deposit is refunded only after termination")
        value = money(amount)
        held = self.deposit_paid - self.deposit_refunded
        if value > held:
            raise refusal("refund_exceeds_deposit", f"only {held} of the deposit is left to refund")
        self._deposit_refunded(amount=value, on=parse_date(on, "on"))

    def request_payout_account_change(self, account: str) -> UUID:
        self._require_status("change the payout account of", "approved", "active", "suspended")
        change_id = uuid.uuid4()
        self._payout_account_change_requested(
            change_id=change_id,
            account=require_text(account, "account"),
            requested_by=current_command().actor,
        )
        return change_id

    def approve_payout_account_change(self, change_id: UUID) -> None:
        approver = self._decide_account_change(change_id, "approve")
        self._payout_account_change_approved(change_id=change_id, approved_by=approver)

    def reject_payout_account_change(self, change_id: UUID, reason: str | None = None) -> None:
        rejecter = self._decide_account_change(change_id, "reject")
        self._payout_account_change_rejected(change_id=change_id, reason=reason, rejected_by=rejecter)

    def _decide_account_change(self, change_id: UUID, action: str) -> str:
        """Who decides a change that exists (404), requested by someone else (403), still
        undecided (422)."""
        change = self.account_changes.get(str(change_id))
        if change is None:
            raise NotFound(f"no payout-account change {change_id} on this partner")
        decider = self._require_other_actor(action, requested=change["requested_by"])
        if change["status"] != "requested":
            raise refusal("invalid_transition", f"the change is already {change['status']}")
        return decider

    def record_remittance(self, period: str, amount: Any, received_on: date | str) -> None:
        """A consignee's remittance received by finance, for the month it pays for (domain.md §1)."""
        if self.kind != "consignee":
            raise refusal("not_a_consignee", f"a {self.kind} remits nothing: only consignees hold the proceeds")
        receiver = self._require_role("finance", "recording a remittance")
        self._require_status("take a remittance from", "active", "suspended", "terminated")
        parsed = Period.parse(period)
        if parsed.kind != "month":
            raise ValidationFailed("period", "a remittance pays for a month (YYYY-MM)")
        self._remittance_received(
            period=parsed.text,
            amount=money(amount),
            received_on=parse_date(received_on, "received_on"),
            received_by=receiver,
        )

    def prepare_housing_subsidy(self, period: str, amount: Any) -> None:
        if self.kind not in SUBSIDY_KINDS:
            raise refusal("subsidy_not_applicable", f"a {self.kind} receives no housing subsidy")
        self._require_status("grant a subsidy to", "active")
        parsed = self._new_paid_out_month(period, self.housing_subsidies, "housing subsidy", "duplicate_subsidy")
        self._housing_subsidy_prepared(
            period=parsed, amount=money(amount), account=self.payout_account, prepared_by=current_command().actor,
        )

    def verify_housing_subsidy(self, period: str) -> None:
        verifier = self._verifier(self.housing_subsidies, "housing subsidy", period)
        self._housing_subsidy_verified(period=period, verified_by=verifier)

    def approve_housing_subsidy(self, period: str) -> None:
        approver = self._approver(self.housing_subsidies, "housing subsidy", period)
        self._housing_subsidy_approved(period=period, approved_by=approver)

    def pay_housing_subsidy(self, period: str, paid_on: date | str) -> None:
        self._payer(self.housing_subsidies, "housing subsidy", period)
        self._housing_subsidy_paid(period=period, paid_on=parse_date(paid_on, "paid_on"),
                                   account=self._approved_account())

    def record_deal(self, deal_id: str, amount: Any, closed_on: date | str) -> None:
        if self.kind != "broker":
            raise refusal("not_a_broker", "only brokers record deals on the partner")
        self._require_status("record a deal for", "active", "suspended", "terminated")
        day = parse_date(closed_on, "closed_on")
        self.require_active_on(day)
        deal = require_text(deal_id, "deal_id")
        if deal in self.deals:
            raise refusal("duplicate_deal", f"deal {deal} is already recorded")
        self._deal_closed(deal_id=deal, amount=money(amount), closed_on=day)

    def prepare_payout(self, period: str, amount: Any) -> None:
        self._require_status("pay", "active", "suspended", "terminated")
        parsed = self._new_paid_out_month(period, self.payouts, "payout", "duplicate_payout")
        self._payout_prepared(
            period=parsed,
            amount=money(amount),
            account=self.payout_account,
            prepared_by=current_command().actor,
        )

    def verify_payout(self, period: str) -> None:
        self._payout_verified(period=period, verified_by=self._verifier(self.payouts, "payout", period))

    def approve_payout(self, period: str) -> None:
        self._payout_approved(period=period, approved_by=self._approver(self.payouts, "payout", period))

    def pay_payout(self, period: str, paid_on: date | str) -> None:
        self._payer(self.payouts, "payout", period)
        self._payout_paid(period=period, paid_on=parse_date(paid_on, "paid_on"))

    # Money paid out (commission payouts, housing subsidies) passes the same four hands:
    # prepared → verified by finance → approved by the general manager → paid, to an
    # approved payout account, a different person for each of the first three steps.

    def _new_paid_out_month(self, period: str, book: dict[str, dict[str, Any]], what: str, duplicate: str) -> str:
        parsed = Period.parse(period)
        if parsed.kind != "month":
            raise ValidationFailed("period", f"a {what} is monthly (YYYY-MM)")
        self._approved_account()
        if parsed.text in book:
            raise refusal(duplicate, f"a {what} for {parsed.text} is already prepared")
        return parsed.text

    def _approved_account(self) -> str:
        if self.payout_account is None:
            raise refusal("no_payout_account", "the partner has no approved payout account")
        return self.payout_account

    # Each step refuses in the order of api.md: the month's money must exist to know who
    # handled it (404), then the role and segregation of duties (403), then its status (422).

    def _verifier(self, book: dict[str, dict[str, Any]], what: str, period: str) -> str:
        paid_out = _prepared(book, what, period)
        self._require_role("finance", f"verifying a {what}")
        verifier = self._require_other_actor("verify", prepared=paid_out["prepared_by"])
        _require_step(paid_out, what, "verify", "prepared")
        return verifier

    def _approver(self, book: dict[str, dict[str, Any]], what: str, period: str) -> str:
        paid_out = _prepared(book, what, period)
        self._require_role("general_manager", f"approving a {what}")
        approver = self._require_other_actor(
            "approve", prepared=paid_out["prepared_by"], verified=paid_out["verified_by"]
        )
        _require_step(paid_out, what, "approve", "verified")
        return approver

    def _payer(self, book: dict[str, dict[str, Any]], what: str, period: str) -> None:
        paid_out = _prepared(book, what, period)
        self._require_role("finance", f"paying a {what}")
        _require_step(paid_out, what, "pay", "approved")

    # Events --------------------------------------------------------------------------

    @event("Applied")
    def __init__(
        self,
        kind: str,
        name: str,
        region: str | None,
        grade: str | None,
        commission_rate: Decimal | None,
        parent_partner_id: UUID | None,
        recruited_by: UUID | None,
        applied_by: str,
    ) -> None:
        self.kind = kind
        self.name = name
        self.region = region
        self.grade = grade
        self.commission_rate = commission_rate
        self.parent_partner_id = parent_partner_id
        self.recruited_by = recruited_by
        self.applied_by = applied_by
        self.status = "applied"
        self.terminated_by: str | None = None
        self.terminated_on: date | None = None
        self.first_contract_id: UUID | None = None
        self.visits = 0
        self.evaluations: dict[str, dict[str, Decimal]] = {}
        self.complaints: dict[str, str] = {}
        self.deposit_paid = Decimal("0.00")
        self.deposit_refunded = Decimal("0.00")
        self.payout_account: str | None = None
        self.account_changes: dict[str, dict[str, Any]] = {}
        self.housing_subsidies: dict[str, dict[str, Any]] = {}
        self.remittances: dict[str, Decimal] = {}  # month -> received for it
        self.deals: dict[str, Decimal] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        self.suspensions: list[list[Any]] = []  # [from, until (exclusive) or None]
        self.documents: dict[str, dict[str, Any]] = {}
        self.corrective_plans: dict[str, dict[str, Any]] = {}
        self.stock: dict[str, dict[str, Any]] = {}  # product -> its latest report's as_of and closing
        self.latest_deal_on: date | None = None

    @event("Reviewed")
    def _reviewed(self, decision: str, notes: str | None, reviewed_by: str) -> None:
        if decision == "reject":
            self.status = "rejected"
        else:
            # A broker has no contract to wait for: approval makes it active.
            self.status = "active" if self.kind == "broker" else "approved"

    @event("Activated")
    def _activated(self, contract_id: UUID, signed_on: date) -> None:
        self.status = "active"
        self.first_contract_id = contract_id

    class Suspended(ChannelAggregate.Event):
        class_version = 2  # 2 carries `on`, the first day suspended
        reason: str
        on: date

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["on"] = _recorded_day(state)

    class Reinstated(ChannelAggregate.Event):
        class_version = 2  # 2 carries `on`, the first day active again
        reason: str
        on: date

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["on"] = _recorded_day(state)

    @event(Suspended)
    def _suspended(self, reason: str, on: date) -> None:
        self.status = "suspended"
        self.suspensions.append([on, None])

    @event(Reinstated)
    def _reinstated(self, reason: str, on: date) -> None:
        self.status = "active"
        self.suspensions[-1][1] = on

    @event("Terminated")
    def _terminated(self, reason: str, on: date, terminated_by: str) -> None:
        self.status = "terminated"
        self.terminated_on = on
        self.terminated_by = terminated_by

    @event("Visited")
    def _visited(self, visited_on: date, employee_id: UUID, notes: str | None) -> None:
        self.visits += 1

    @event("Evaluated")
    def _evaluated(self, period: str, scores: dict[str, Decimal]) -> None:
        self.evaluations[period] = scores

    @event("ComplaintOpened")
    def _complaint_opened(self, complaint_id: UUID, subject: str, detail: str | None) -> None:
        self.complaints[str(complaint_id)] = "opened"

    @event("ComplaintResolved")
    def _complaint_resolved(self, complaint_id: UUID, note: str) -> None:
        self.complaints[str(complaint_id)] = "resolved"

    @event("ComplaintEscalated")
    def _complaint_escalated(self, complaint_id: UUID, note: str) -> None:
        self.complaints[str(complaint_id)] = "escalated"

    @event("TrainingRecorded")
    def _training_recorded(
        self, training_id: UUID, held_on: date, topic: str, trainer_id: UUID, attendees: int, passed: int
    ) -> None:
        pass  # counted by the attainment read model; no rule of the partner depends on it

    @event("DepositPaid")
    def _deposit_paid(self, amount: Decimal, on: date) -> None:
        self.deposit_paid += amount

    @event("DepositRefunded")
    def _deposit_refunded(self, amount: Decimal, on: date) -> None:
        self.deposit_refunded += amount

    @event("PayoutAccountChangeRequested")
    def _payout_account_change_requested(self, change_id: UUID, account: str, requested_by: str) -> None:
        self.account_changes[str(change_id)] = {
            "account": account,
            "requested_by": requested_by,
            "status": "requested",
        }

    @event("PayoutAccountChangeApproved")
    def _payout_account_change_approved(self, change_id: UUID, approved_by: str) -> None:
        change = self.account_changes[str(change_id)]
        change["status"] = "approved"
        self.payout_account = change["account"]

    class HousingSubsidyGranted(ChannelAggregate.Event):
        """Before housing subsidies passed four hands they were granted in one step: such an
        event reads as prepared, by whoever recorded it, to no account yet."""

        period: str
        amount: Decimal

        def apply(self, aggregate: Partner) -> None:
            aggregate.housing_subsidies[self.period] = _paid_out(self.amount, None, self.actor)

    @event("HousingSubsidyPrepared")
    def _housing_subsidy_prepared(self, period: str, amount: Decimal, account: str, prepared_by: str) -> None:
        self.housing_subsidies[period] = _paid_out(amount, account, prepared_by)

    @event("HousingSubsidyVerified")
    def _housing_subsidy_verified(self, period: str, verified_by: str) -> None:
        self.housing_subsidies[period].update(status="verified", verified_by=verified_by)

    @event("HousingSubsidyApproved")
    def _housing_subsidy_approved(self, period: str, approved_by: str) -> None:
        self.housing_subsidies[period].update(status="approved", approved_by=approved_by)

    @event("HousingSubsidyPaid")
    def _housing_subsidy_paid(self, period: str, paid_on: date, account: str) -> None:
        self.housing_subsidies[period].update(status="paid", paid_on=paid_on, account=account)

    @event("RemittanceReceived")
    def _remittance_received(self, period: str, amount: Decimal, received_on: date, received_by: str) -> None:
        self.remittances[period] = self.remittances.get(period, Decimal("0.00")) + amount
    @event("PayoutAccountChangeRejected")
    def _payout_account_change_rejected(self, change_id: UUID, reason: str | None, rejected_by: str) -> None:
        self.account_changes[str(change_id)]["status"] = "rejected"

    @event("DocumentRecorded")
    def _document_recorded(
        self, document_id: UUID, kind: str, reference: str, issued_on: date | None, expires_on: date | None
    ) -> None:
        self.documents[str(document_id)] = {"kind": kind, "reference": reference, "expires_on": expires_on}

    @event("CorrectivePlanRecorded")
    def _corrective_plan_recorded(self, plan_id: UUID, actions: list[str], due_on: date) -> None:
        self.corrective_plans[str(plan_id)] = {"due_on": due_on, "status": "open"}

    @event("CorrectivePlanClosed")
    def _corrective_plan_closed(self, plan_id: UUID, outcome: str) -> None:
        self.corrective_plans[str(plan_id)]["status"] = outcome

    @event("InventoryReported")
    def _inventory_reported(self, as_of: date, lines: list[dict[str, Any]], correction_reason: str | None) -> None:
        # The head of each product's chain is its latest report: a correction of an earlier
        # date corrects history without moving the head back; one of the head's date replaces it.
        for line in lines:
            head = self.stock.get(line["product"])
            if head is None or as_of >= head["as_of"]:
                self.stock[line["product"]] = {"as_of": as_of, "closing": line["closing"]}


    @event("DealClosed")
    def _deal_closed(self, deal_id: str, amount: Decimal, closed_on: date) -> None:
        self.deals[deal_id] = amount
        if self.latest_deal_on is None or closed_on > self.latest_deal_on:
            self.latest_deal_on = closed_on

    @event("PayoutPrepared")
    def _payout_prepared(self, period: str, amount: Decimal, account: str, prepared_by: str) -> None:
        self.payouts[period] = _paid_out(amount, account, prepared_by)

    @event("PayoutVerified")
    def _payout_verified(self, period: str, verified_by: str) -> None:
        self.payouts[period].update(status="verified", verified_by=verified_by)

    @event("PayoutApproved")
    def _payout_approved(self, period: str, approved_by: str) -> None:
        self.payouts[period].update(status="approved", approved_by=approved_by)

    @event("PayoutPaid")
    def _payout_paid(self, period: str, paid_on: date) -> None:
        self.payouts[period].update(status="paid", paid_on=paid_on)


def _prepared(book: dict[str, dict[str, Any]], what: str, period: str) -> dict[str, Any]:
    paid_out = book.get(Period.parse(period).text)
    if paid_out is None:
        raise NotFound(f"no {what} prepared for {period}")
    return paid_out


def _require_step(paid_out: dict[str, Any], what: str, action: str, required_status: str) -> None:
    if paid_out["status"] != required_status:
        raise refusal(
            "invalid_transition",
            f"cannot {action} a {what} that is {paid_out['status']}; it must be {required_status}",
        )


def _paid_out(amount: Decimal, account: str | None, prepared_by: str | None) -> dict[str, Any]:
    """Money to be paid out, as prepared: a commission payout or a housing subsidy."""
    return {
        "amount": amount,
        "account": account,
        "status": "prepared",
        "prepared_by": prepared_by,
        "verified_by": None,
        "approved_by": None,
        "paid_on": None,
    }
def _inventory_lines(lines: Any) -> list[dict[str, Any]]:
    """Whole units, at least 0, that add up: closing = opening + received − sold."""
    if not isinstance(lines, list) or not lines:
        raise ValidationFailed("lines", "at least one product line")
    checked: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise ValidationFailed(f"lines.{index}", "an object with product, opening, received, sold, closing")
        product = require_text(line.get("product"), f"lines.{index}.product")
        quantities = {}
        for name in INVENTORY_QUANTITIES:
            value = line.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationFailed(f"lines.{index}.{name}", "a whole number of units, 0 or more")
            quantities[name] = value
        if quantities["closing"] != quantities["opening"] + quantities["received"] - quantities["sold"]:
            raise ValidationFailed(f"lines.{index}.closing", "closing = opening + received - sold")
        if any(earlier["product"] == product for earlier in checked):
            raise ValidationFailed(f"lines.{index}.product", f"{product} appears twice in the report")
        checked.append({"product": product, **quantities})
    return checked
