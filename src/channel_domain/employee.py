"""Employee (渠道部员工): hire on probation, regularize or fail, discipline, reviews, renewals.

Probation follows the Labour Contract Law, which caps it lower than the seeds' 3 months
(Art. 19) and allows it once per employee. Renewals are reviewed each December; after two
consecutive fixed-term contracts the next one must be open-ended (Art. 14(3)).

Personal fields (name, national id, bank card) arrive sealed by the application with a key
of this employee: the aggregate stores and replays them without ever reading them.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from channel_domain.aggregate import ChannelAggregate
from channel_domain.errors import ValidationFailed, refusal
from channel_domain.values import Period, add_months, decimal_value, parse_date, require_text

JOB_ROLES = ("director", "manager", "supervisor", "specialist", "sales_rep")
STANDARD_CONTRACT_MONTHS = 12  # 「合同期统一为1年」
COMPANY_PROBATION_CAP_MONTHS = 3  # 「试用期最长3个月」
OPEN_ENDED = 0
# Personal data under PIPL: sealed by the application, erasable (see PersonalDataErased).
PERSONAL_FIELDS = frozenset({"name", "national_id", "bank_card"})
WARNING_LADDER = ("oral", "written", "serious")
DERELICTION = "dereliction"
FIXED_TERMS_BEFORE_OPEN_ENDED = 2


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
    return None if months == OPEN_ENDED else add_months(starts_on, months) - timedelta(days=1)


def _months(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(field, "a whole number of months, 0 or more")
    return value


class Employee(ChannelAggregate):
    record_name = "employee"

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
        )

    def regularize(self, on: date | str) -> None:
        self._require_status("regularize", "probation")
        day = parse_date(on, "on")
        if day < self.hired_on:
            raise ValidationFailed("on", "cannot be before the hire date")
        self._regularized(on=day)

    def fail_probation(self, on: date | str, reason: str) -> None:
        self._require_status("fail the probation of", "probation")
        day = parse_date(on, "on")
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

    def dismiss(self, on: date | str, reason: str) -> None:
        self._require_employed("dismiss")
        if not (self.dereliction or self.highest_warning == WARNING_LADDER[-1]):
            raise refusal(
                "dismissal_not_warranted",
                "dismissal follows a serious warning, or dereliction of duty",
            )
        self._dismissed(on=parse_date(on, "on"), reason=require_text(reason, "reason"))

    def review_contract(
        self, on: date | str, decision: str, contract_months: int | None = None
    ) -> None:
        self._require_employed("review the contract of")
        day = parse_date(on, "on")
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
        self._personal_data_erased()

    def is_employed_on(self, day: date) -> bool:
        """Hired by then and not yet gone: the day of a dismissal or failed probation is the
        employment's last."""
        return self.hired_on <= day and (self.left_on is None or day <= self.left_on)

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
    ) -> None:
        self.name = name
        self.role = role
        self.hired_on = hired_on
        self.manager_id = manager_id
        self.national_id = national_id
        self.bank_card = bank_card
        self.probation_months = probation_months
        self.probation_ends_on: date | None = (
            add_months(hired_on, probation_months) - timedelta(days=1) if probation_months else None
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

    @event("PersonalDataErased")
    def _personal_data_erased(self) -> None:
        self.personal_data_erased = True
