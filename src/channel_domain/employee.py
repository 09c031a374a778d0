"""Employee (渠道部员工): hire on probation, regularize or fail, discipline, reviews, renewals.

Probation follows the Labour Contract Law, which caps it lower than the seeds' 3 months
(Art. 19) and allows it once per employee. Renewals are reviewed each December; after two
consecutive fixed-term contracts the next one must be open-ended (Art. 14(3)).

Personal fields (name, national id, bank card) arrive sealed by the application with a key
of this employee: the aggregate stores and replays them without ever reading them.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.context import current_command
from channel_domain.errors import NotFound, SegregationOfDuties, ValidationFailed, refusal
from channel_domain.values import Period, decimal_value, parse_date, require_text, term_end

JOB_ROLES = ("director", "manager", "supervisor", "specialist", "sales_rep")
STANDARD_CONTRACT_MONTHS = 12  # 「合同期统一为1年」
COMPANY_PROBATION_CAP_MONTHS = 3  # 「试用期最长3个月」
OPEN_ENDED = 0
# Personal data under PIPL: sealed by the application, erasable (see PersonalDataErased).
PERSONAL_FIELDS = frozenset({"name", "national_id", "bank_card"})
SEPARATION_REASONS = ("contract_expired", "resignation", "dismissal", "probation_failed")
# Art. 50: a terminated labour contract's record is kept at least two years.
RETENTION_MONTHS = 24
WARNING_LADDER = ("oral", "written", "serious")
DERELICTION = "dereliction"
FIXED_TERMS_BEFORE_OPEN_ENDED = 2


class NotTheManager(SegregationOfDuties):
    """A dismissal for performance is proposed by the employee's own manager (403)."""

    code = "not_the_manager"


def probation_cap_months(contract_months: int) -> int:
    """The longest probation allowed for a labour contract of this term (0 = open-ended)."""
    if contract_months == OPEN_ENDED or contract_months >= 36:
        legal = 6
    elif contract_months >= 12:
        legal = 2
    elif contract_months >= 3:
        legal = 1
    else:
        legal = 0  # under 3 months: no probation at all
    return min(legal, COMPANY_PROBATION_CAP_MONTHS)


def contract_end(starts_on: date, months: int) -> date | None:
    return None if months == OPEN_ENDED else term_end(starts_on, months)


def _months(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(field, "a whole number of months, 0 or more")
    return value


class Employee(ChannelAggregate):
    record_name = "employee"
    class_version = 2  # the state's shape, for snapshots: 2 adds the login, separation and dismissal proposals

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """A snapshot taken before employees had a login, a separation or dismissal proposals."""
        state.setdefault("login", None)
        state.setdefault("separation_reason", None)
        state.setdefault("dismissal_proposals", {})

    # Commands ------------------------------------------------------------------------

    @classmethod
    def hire(
        cls,
        *,
        name: str,
        role: str,
        hired_on: date | str,
        manager_id: UUID | None = None,
        contract_months: int = STANDARD_CONTRACT_MONTHS,
        probation_months: int | None = None,
        national_id: str | None = None,
        bank_card: str | None = None,
        login: str | None = None,
        id: UUID | None = None,  # noqa: A002 - the application picks it to seal personal data
    ) -> Employee:
        if role not in JOB_ROLES:
            raise ValidationFailed("role", f"one of {', '.join(JOB_ROLES)}")
        months = _months(contract_months, "contract_months")
        cap = probation_cap_months(months)
        probation = cap if probation_months is None else _months(probation_months, "probation_months")
        if probation > cap:
            raise refusal(
                "probation_exceeds_legal_cap",
                f"a {months or 'open-ended'}-month contract allows at most {cap} months of probation",
                cap=cap,
            )
        return cls._create(
            cls.Hired,  # type: ignore[attr-defined]
            id=id,
            name=require_text(name, "name"),
            role=role,
            hired_on=parse_date(hired_on, "hired_on"),
            manager_id=manager_id,
            contract_months=months,
            probation_months=probation,
            national_id=national_id,
            bank_card=bank_card,
            login=None if login is None else require_text(login, "login"),
        )

    def regularize(self, on: date | str) -> None:
        self._require_status("regularize", "probation")
        day = parse_date(on, "on")
        if day < self.hired_on:
            raise ValidationFailed("on", "cannot be before the hire date")
        self._regularized(on=day)

    def fail_probation(self, on: date | str, reason: str, latest_credit_on: date | None = None) -> None:
        self._require_status("fail the probation of", "probation")
        day = parse_date(on, "on")
        _refuse_end_before_credits(day, latest_credit_on)
        if not self.hired_on <= day <= self.probation_ends_on:  # type: ignore[operator]
            raise refusal(
                "probation_over",
                f"probation ran from {self.hired_on} to {self.probation_ends_on}",
            )
        self._probation_failed(on=day, reason=require_text(reason, "reason"))

    def promote(self, role: str, on: date | str) -> None:
        self._require_employed("promote")
        if role not in JOB_ROLES:
            raise ValidationFailed("role", f"one of {', '.join(JOB_ROLES)}")
        if role == self.role:
            raise refusal("no_change", f"already a {role}")
        self._promoted(role=role, on=parse_date(on, "on"))

    def transfer(self, manager_id: UUID, on: date | str) -> None:
        self._require_employed("transfer")
        if manager_id == self.id:
            raise ValidationFailed("manager_id", "an employee cannot report to themselves")
        if manager_id == self.manager_id:
            raise refusal("no_change", "already reports to this manager")
        self._transferred(manager_id=manager_id, on=parse_date(on, "on"))

    def evaluate(self, period: str, score: Any, notes: str | None = None) -> None:
        self._require_employed("evaluate")
        parsed = Period.parse(period)
        self._require_not_separated(max(current_command().today, parsed.starts_on), "evaluated")
        if parsed.kind == "month":
            raise ValidationFailed("period", "employee evaluations are quarterly (YYYY-Qn) or annual (YYYY)")
        value = decimal_value(score, "score")
        if not 0 <= value <= 100:
            raise ValidationFailed("score", "from 0 to 100")
        if parsed.text in self.evaluations:
            raise refusal("duplicate_evaluation", f"{parsed.text} is already evaluated")
        self._evaluated(period=parsed.text, score=value, notes=notes)

    def warn(self, level: str, reason: str) -> None:
        self._require_employed("warn")
        self._require_not_separated(current_command().today, "warned")
        if level != DERELICTION:
            if level not in WARNING_LADDER:
                raise ValidationFailed("level", "oral, written, serious or dereliction")
            reached = WARNING_LADDER.index(self.highest_warning) + 1 if self.highest_warning else 0
            if WARNING_LADDER.index(level) > reached:
                raise refusal(
                    "warning_ladder_skipped",
                    f"a {level} warning needs a {WARNING_LADDER[reached]} warning first",
                )
        self._warned(level=level, reason=require_text(reason, "reason"))

    def dismiss(self, on: date | str, reason: str, latest_credit_on: date | None = None) -> None:
        self._require_employed("dismiss")
        self._require_dismissal_warranted()
        day = parse_date(on, "on")
        _refuse_end_before_credits(day, latest_credit_on)
        self._require_end_within_employment(day)
        self._dismissed(on=day, reason=require_text(reason, "reason"))

    def _require_end_within_employment(self, day: date) -> None:
        """An employment ends on a day it ran: never before the hire (the two-year retention of
        personal data counts from that day), never after the labour contract ended it."""
        if day < self.hired_on:
            raise ValidationFailed("on", "cannot be before the hire date")
        if self.contract_ends_on is not None and day > self.contract_ends_on:
            raise refusal(
                "contract_already_ended",
                f"the labour contract ended on {self.contract_ends_on}: the employment ended then",
                contract_ends_on=self.contract_ends_on,
            )

    def _require_dismissal_warranted(self) -> None:
        if not (self.dereliction or self.highest_warning == WARNING_LADDER[-1]):
            raise refusal(
                "dismissal_not_warranted",
                "dismissal follows a serious warning, or dereliction of duty",
            )

    # Separation and dismissal for performance -----------------------------------------

    def separate(self, on: date | str, reason: str, latest_credit_on: date | None = None) -> None:
        """HR records how and when the employment ended (domain.md §4). `latest_credit_on`:
        the latest sale date credited to the employee."""
        self._require_employed("record the separation of")
        day = parse_date(on, "on")
        _refuse_end_before_credits(day, latest_credit_on)
        if reason not in SEPARATION_REASONS:
            raise ValidationFailed("reason", ", ".join(SEPARATION_REASONS))
        self._require_end_within_employment(day)
        if reason == "contract_expired" and day != self.contract_ends_on:
            raise refusal(
                "contract_not_expiring",
                f"the labour contract ends on {self.contract_ends_on or 'no fixed date'}, not {day}",
            )
        if reason == "probation_failed" and not (
            self.status == "probation" and day <= self.probation_ends_on  # type: ignore[operator]
        ):
            raise refusal("probation_over", f"no probation runs on {day}")
        if reason == "dismissal":
            self._require_dismissal_warranted()
        self._separated(on=day, reason=reason)

    def propose_dismissal(self, on: date | str, reason: str, proposer_id: UUID | None) -> UUID:
        """A dismissal for poor performance (「工作表现不符合要求」), proposed by the employee's
        manager — the acting person's employee record, `proposer_id` — and approved by HR."""
        if proposer_id is None or proposer_id != self.manager_id:
            raise NotTheManager(
                f"{current_command().actor} is not this employee's manager: only the manager proposes a dismissal",
                actor=current_command().actor,
            )
        self._require_employed("propose the dismissal of")
        day = parse_date(on, "on")
        if not self.is_employed_on(day):
            raise refusal("employee_separated", f"the employee is not employed on {day}")
        proposal_id = uuid.uuid4()
        self._dismissal_proposed(
            proposal_id=proposal_id,
            on=day,
            reason=require_text(reason, "reason"),
            proposed_by=current_command().actor,
            proposer_id=proposer_id,
        )
        return proposal_id

    def approve_dismissal(self, proposal_id: UUID, approver_id: UUID | None,
                         latest_credit_on: date | None = None) -> None:
        proposal = self.dismissal_proposals.get(str(proposal_id))
        if proposal is None:
            raise NotFound(f"no dismissal proposal {proposal_id} for this employee")
        approver = self._require_other_actor("approve", proposed=proposal["proposed_by"])
        self.require_not_self(approver_id, "approve their own dismissal")
        if proposal["status"] != "proposed":
            raise refusal("invalid_transition", f"the proposal is already {proposal['status']}")
        self._require_employed("dismiss")
        _refuse_end_before_credits(proposal["on"], latest_credit_on)
        self._dismissal_approved(proposal_id=proposal_id, on=proposal["on"], approved_by=approver)

    def require_not_self(self, acting_employee_id: UUID | None, action: str) -> None:
        """An employee never approves a record about themselves (domain.md §5)."""
        if acting_employee_id is not None and acting_employee_id == self.id:
            actor = current_command().actor
            raise SegregationOfDuties(f"{actor} cannot {action}", actor=actor, step="is_the_subject_of")

    # Employment dates ------------------------------------------------------------------

    @property
    def employment_ends_on(self) -> date | None:
        """The last day employed: the recorded end (separation, dismissal, failed probation),
        else the labour contract's end date (a contract that ends without renewal ends the
        employment); None while an open-ended contract runs."""
        return self.left_on or self.contract_ends_on

    def is_employed_on(self, day: date) -> bool:
        ends_on = self.employment_ends_on
        return self.hired_on <= day and (ends_on is None or day <= ends_on)

    @property
    def erasable_from(self) -> date | None:
        """The first day personal data may be erased: the end of employment plus two years,
        once an end is recorded (Art. 50)."""
        if self.left_on is None:
            return None
        return term_end(self.left_on, RETENTION_MONTHS) + timedelta(days=1)

    def _require_not_separated(self, day: date, what: str) -> None:
        ends_on = self.employment_ends_on
        if ends_on is not None and day > ends_on:
            raise refusal(
                "employee_separated",
                f"the employment ended on {ends_on}: nothing more is {what} for this employee",
                employment_ended_on=ends_on,
            )

    def review_contract(
        self, on: date | str, decision: str, contract_months: int | None = None
    ) -> None:
        self._require_employed("review the contract of")
        day = parse_date(on, "on")
        if day < self.hired_on:
            raise ValidationFailed("on", "cannot be before the hire date")
        if decision not in ("renew", "not_renew"):
            raise ValidationFailed("decision", "renew or not_renew")
        ends_on = self.contract_ends_on
        if ends_on is None:
            raise refusal("open_ended_contract", "an open-ended contract has no renewal to review")
        if day.month != 12:
            raise refusal("review_outside_december", "contract reviews take place in December")
        if not day <= ends_on <= date(day.year + 1, 12, 31):
            raise refusal(
                "contract_not_due_for_review",
                f"the contract ends on {ends_on}: December reviews cover contracts ending "
                f"from the review date to the end of the coming year",
            )
        if self.contract_reviewed:
            raise refusal("already_reviewed", "this contract has already been reviewed")
        months: int | None = None
        if decision == "renew":
            must_be_open_ended = self.consecutive_fixed_terms >= FIXED_TERMS_BEFORE_OPEN_ENDED
            default = OPEN_ENDED if must_be_open_ended else STANDARD_CONTRACT_MONTHS
            months = default if contract_months is None else _months(contract_months, "contract_months")
            if must_be_open_ended and months != OPEN_ENDED:
                raise refusal(
                    "open_ended_contract_required",
                    "after two consecutive fixed-term contracts the next one is open-ended",
                )
        elif contract_months is not None:
            raise ValidationFailed("contract_months", "only a renewal has a term")
        self._contract_reviewed(on=day, decision=decision, contract_months=months)

    def erase_personal_data(self) -> None:
        """PIPL erasure: the events stay; the sealed personal fields become unreadable
        because the key that opens them is destroyed with this event."""
        if self.personal_data_erased:
            raise refusal("already_erased", "this employee's personal data is already erased")
        erasable_from = self.erasable_from
        if erasable_from is None or current_command().today < erasable_from:
            raise refusal(
                "retention_period",
                "a labour record is kept two years after the employment ended (Art. 50)"
                + (f": erasable from {erasable_from}" if erasable_from else ": the employment has not ended"),
                erasable_from=erasable_from.isoformat() if erasable_from else None,
            )
        self._personal_data_erased()

    def _require_employed(self, action: str) -> None:
        self._require_status(action, "probation", "regular")

    # Events --------------------------------------------------------------------------

    @event("Hired")
    def __init__(
        self,
        name: str,
        role: str,
        hired_on: date,
        manager_id: UUID | None,
        contract_months: int,
        probation_months: int,
        national_id: str | None,
        bank_card: str | None,
        login: str | None = None,  # absent from events recorded before employees had logins
    ) -> None:
        self.name = name
        self.login = login
        self.role = role
        self.hired_on = hired_on
        self.manager_id = manager_id
        self.national_id = national_id
        self.bank_card = bank_card
        self.probation_months = probation_months
        self.probation_ends_on: date | None = (
            term_end(hired_on, probation_months) if probation_months else None
        )
        self.status = "probation" if probation_months else "regular"
        self.contract_starts_on = hired_on
        self.contract_ends_on = contract_end(hired_on, contract_months)
        self.consecutive_fixed_terms = 0 if contract_months == OPEN_ENDED else 1
        self.contract_reviewed = False
        self.renewal_decision: str | None = None
        self.evaluations: dict[str, Decimal] = {}
        self.highest_warning: str | None = None
        self.dereliction = False
        self.left_on: date | None = None
        self.separation_reason: str | None = None
        self.dismissal_proposals: dict[str, dict[str, Any]] = {}
        self.personal_data_erased = False

    @event("Regularized")
    def _regularized(self, on: date) -> None:
        self.status = "regular"
        self.regularized_on = on

    @event("ProbationFailed")
    def _probation_failed(self, on: date, reason: str) -> None:
        self.status = "probation_failed"
        self.left_on = on

    @event("Promoted")
    def _promoted(self, role: str, on: date) -> None:
        self.role = role

    @event("Transferred")
    def _transferred(self, manager_id: UUID, on: date) -> None:
        self.manager_id = manager_id

    @event("Evaluated")
    def _evaluated(self, period: str, score: Decimal, notes: str | None) -> None:
        self.evaluations[period] = score

    @event("Warned")
    def _warned(self, level: str, reason: str) -> None:
        if level == DERELICTION:
            self.dereliction = True
        elif self.highest_warning is None or WARNING_LADDER.index(level) > WARNING_LADDER.index(
            self.highest_warning
        ):
            self.highest_warning = level

    @event("Dismissed")
    def _dismissed(self, on: date, reason: str) -> None:
        self.status = "dismissed"
        self.left_on = on

    @event("ContractReviewed")
    def _contract_reviewed(self, on: date, decision: str, contract_months: int | None) -> None:
        self.renewal_decision = decision
        if decision == "renew" and contract_months is not None and self.contract_ends_on:
            # The renewal starts the day after the current contract ends; no new probation.
            self.contract_starts_on = self.contract_ends_on + timedelta(days=1)
            self.contract_ends_on = contract_end(self.contract_starts_on, contract_months)
            self.consecutive_fixed_terms = (
                0 if contract_months == OPEN_ENDED else self.consecutive_fixed_terms + 1
            )
            self.contract_reviewed = False
        else:
            self.contract_reviewed = True

    @event("Separated")
    def _separated(self, on: date, reason: str) -> None:
        self.status = "separated"
        self.left_on = on
        self.separation_reason = reason

    @event("DismissalProposed")
    def _dismissal_proposed(
        self, proposal_id: UUID, on: date, reason: str, proposed_by: str, proposer_id: UUID
    ) -> None:
        self.dismissal_proposals[str(proposal_id)] = {
            "on": on, "reason": reason, "proposed_by": proposed_by, "status": "proposed", "approved_by": None,
        }

    @event("DismissalApproved")
    def _dismissal_approved(self, proposal_id: UUID, on: date, approved_by: str) -> None:
        self.dismissal_proposals[str(proposal_id)].update(status="approved", approved_by=approved_by)
        self.status = "dismissed"
        self.left_on = on

    @event("PersonalDataErased")
    def _personal_data_erased(self) -> None:
        self.personal_data_erased = True


def _refuse_end_before_credits(last_day: date, latest_credit_on: date | None) -> None:
    """After the employment ends no sales credit is accepted (domain.md §4): so it cannot end
    before a sale already credited, which would leave a credit after its end in the log."""
    if latest_credit_on is not None and latest_credit_on > last_day:
        raise refusal(
            "sales_credited_after",
            f"a sale dated {latest_credit_on} is credited to this employee; the employment ends after it",
            latest=latest_credit_on,
        )
