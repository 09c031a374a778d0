"""The application service: one method per command, each load → call the aggregate → save.

All four aggregates live in this one application and one events table, so every event has
one global position. A command runs inside `acting_as(...)` (who, on whose behalf); when the
context carries an idempotency key, the outcome is stored in the transaction of the events
and a repeat returns it without writing anything.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, LocalNotificationLog, ProcessingEvent
from eventsourcing.persistence import JSONTranscoder, StoredEvent, Transcoding
from eventsourcing.system import Leader

from channel_domain import observability
from channel_domain.aggregate import ChannelAggregate, effective_on, event_data
from channel_domain.amendment_preview import AmendmentPreview, price_amendment
from channel_domain.commission_dispute import CommissionDispute, DisputedLine
from channel_domain.commission_period import CommissionPeriod, month
from channel_domain.context import acting_as, current_command
from channel_domain.contract import Contract, PartnerTerms
from channel_domain.employee import PERSONAL_FIELDS, Employee
from channel_domain.operations import ProjectionRetry, ProjectionSkip, retry_id, skip_decision_id
from channel_domain.errors import (
    CommandInFlight,
    ConcurrentModification,
    DomainError,
    IdempotencyKeyReused,
    NotFound,
    SellerMoved,
    ValidationFailed,
    VersionMismatch,
    refusal,
)
from channel_domain.partner import Partner
from channel_domain.record_cache import RecordCache
from channel_domain.sales_target import SalesTarget
from channel_domain.store import period_books, projecting
from channel_domain.store.database import library_environment
from channel_domain.store.personal_data import PersonalDataVault, new_key, seal, unseal
from channel_domain.store.recorder import (
    ConstraintViolation,
    ContractInForce,
    EventFacts,
    EventRecorder,
    ImportLines,
    InTransaction,
    PendingOutcome,
    SellingDaysClosed,
    TermsInForce,
    UnsafeTailingError,
)
from channel_domain.values import CommissionTerms, money, parse_date, require_text

logger = logging.getLogger(__name__)
P = ParamSpec("P")
A = TypeVar("A", bound=ChannelAggregate)

CONCURRENCY_RETRIES = 20
RECORD_CACHE_SIZE = 2000  # records; a contract with 10 000 orders holds about 2 MB


@dataclass(frozen=True)
class CommandOutcome:
    """What a command did: the record, its version after the command, the global position
    of the last event written, and anything the command created (a complaint id …)."""

    id: UUID
    version: int
    position: int
    positions: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False
    # What `answering_with`'s function made of the record as the command left it, when this
    # process ran the command (not on replay): answering from it spares loading the record.
    answer: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SalesLine:
    """One line of a bulk import: a sale (`sold_on`) or a return (`returned_on`)."""

    contract_id: UUID
    kind: str
    fields: dict[str, Any]

    def apply_to(self, contract: Contract, sellers: SellerCheck) -> None:
        if self.kind == "sale":
            sellers.require(contract, self.fields.get("sold_on"), self.fields.get("employee_id"))
            contract.record_sale(**self.fields)
        elif self.kind == "return":
            contract.record_return(**self.fields)
        else:
            raise ValidationFailed("kind", "sale or return")


class SellerCheck:
    """Who may be credited with a sale: a partner active on the sale date (domain.md §1) and,
    when one is named, an employee employed on it (§2). Each partner and employee is loaded
    once per check, so an import chunk reads each of them once, not once per line.

    The copies checked may be stale (another process suspended the partner a moment ago):
    `checked` names each record a sale relied on and the version it read, and the sale's
    transaction is refused when one of them has closed selling days since (the selling gates,
    migrations/0018) — then the sale runs again on fresh copies. A refusal is decided on a
    fresh copy before it is given."""

    def __init__(self, current: Callable[[type[Any], UUID], Any], fresh: Callable[[type[Any], UUID], Any],
                 checked: dict[UUID, int] | None = None) -> None:
        self._current = current
        self._fresh = fresh
        self._partners: dict[UUID, Partner] = {}
        self._employees: dict[UUID, Employee | None] = {}
        self._read_fresh: set[UUID] = set()  # re-read for a refusal once per check, not once per line
        self.checked: dict[UUID, int] = {} if checked is None else checked

    def require(self, contract: Contract, sold_on: date | str | None, employee_id: UUID | None) -> None:
        # The partner is checked before the contract's own rules (api.md).
        day = parse_date(sold_on, "sold_on")
        partner = self._partners.get(contract.partner_id) or self._partner(contract.partner_id, self._current)
        if not partner.is_active_on(day) and contract.partner_id not in self._read_fresh:
            partner = self._partner(contract.partner_id, self._fresh)
        partner.require_active_on(day)
        self._relied_on(partner)
        if employee_id is None:
            return
        if employee_id not in self._employees:
            self._employee(employee_id, self._current)
        employee = self._employees[employee_id]
        if (employee is None or not employee.is_employed_on(day)) and employee_id not in self._read_fresh:
            employee = self._employee(employee_id, self._fresh)
        if employee is None:
            raise refusal("unknown_employee", f"no employee {employee_id}")
        if not employee.is_employed_on(day):
            raise refusal("unknown_employee", f"employee {employee_id} is not employed on {day}")
        self._relied_on(employee)

    def _relied_on(self, record: Partner | Employee) -> None:
        # The oldest copy any line relied on: a later line may have read a fresher one.
        self.checked[record.id] = min(self.checked.get(record.id, record.version), record.version)

    def forget(self) -> None:
        """Drop the copies read: the next check reads each record again."""
        self._partners.clear()
        self._employees.clear()
        self._read_fresh.clear()

    def _partner(self, partner_id: UUID, load: Callable[[type[Any], UUID], Any]) -> Partner:
        if load == self._fresh:
            self._read_fresh.add(partner_id)
        partner: Partner = load(Partner, partner_id)
        self._partners[partner_id] = partner
        return partner

    def _employee(self, employee_id: UUID, load: Callable[[type[Any], UUID], Any]) -> Employee | None:
        if load == self._fresh:
            self._read_fresh.add(employee_id)
        try:
            self._employees[employee_id] = load(Employee, employee_id)
        except NotFound:
            self._employees[employee_id] = None
        return self._employees[employee_id]


@dataclass(frozen=True)
class HistoryEntry:
    position: int
    version: int
    type: str
    recorded_at: datetime
    effective_on: date | None
    actor: str
    roles: list[str]
    correlation_id: str
    causation_id: str
    data: dict[str, Any]


_fingerprint: ContextVar[str] = ContextVar("command_fingerprint", default="")
_answer_with: ContextVar[Callable[[Any], Any] | None] = ContextVar("answer_with", default=None)


@contextmanager
def answering_with(render: Callable[[Any], Any]) -> Iterator[None]:
    """Have each command in this block render its record, once committed, into its outcome's
    `answer`. The record itself never leaves the application: it goes back to the record
    cache, where the next command may change it."""
    token = _answer_with.set(render)
    try:
        yield
    finally:
        _answer_with.reset(token)


def command(method: Callable[P, CommandOutcome]) -> Callable[P, CommandOutcome]:
    """Idempotency and lost-update protection around one application command."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> CommandOutcome:
        app: ChannelDepartment = args[0]  # type: ignore[assignment]
        context = current_command()
        key = context.idempotency_key
        if not key:
            return _with_retries(method, context, *args, **kwargs)
        fingerprint = context.request_fingerprint or _fingerprint_of(method.__name__, args[1:], kwargs)
        if replay := app._replay(context.actor, key, fingerprint):
            return replay
        with app.event_recorder.key_in_flight(context.actor, key) as acquired:
            if not acquired:
                raise CommandInFlight(f"a command with idempotency key {key!r} is still running")
            if replay := app._replay(context.actor, key, fingerprint):
                return replay  # it finished between our first look and the lock
            token = _fingerprint.set(fingerprint)
            try:
                return _with_retries(method, context, *args, **kwargs)
            finally:
                _fingerprint.reset(token)

    @functools.wraps(method)
    def traced(*args: P.args, **kwargs: P.kwargs) -> CommandOutcome:
        correlation_id = current_command().correlation_id
        with observability.command_span(method.__name__, **{"channel_domain.correlation_id": correlation_id}) as span:
            outcome = run(*args, **kwargs)
            if span is not None:
                span.set_attribute("channel_domain.record_id", str(outcome.id))
                span.set_attribute("channel_domain.positions", outcome.positions)
                span.set_attribute("channel_domain.replayed", outcome.replayed)
            return outcome

    return traced


def _with_retries(method: Callable[..., CommandOutcome], context: Any, *args: Any, **kwargs: Any) -> CommandOutcome:
    for attempt in range(CONCURRENCY_RETRIES):
        try:
            return method(*args, **kwargs)
        except ConcurrentModification as conflict:
            # Someone wrote the record between our read and our write: nothing of ours was
            # written, so run the command again on the fresh state — unless the caller
            # pinned the version it expects (If-Match) and it is the record that moved: that
            # version is gone, so say so.
            if context.expected_version is not None and not isinstance(conflict, SellerMoved):
                raise VersionMismatch(f"the record moved past version {context.expected_version}") from None
            if attempt == CONCURRENCY_RETRIES - 1:
                raise
            _back_off(attempt)
    raise AssertionError("unreachable")


def _replayed(record: Any, events: Iterable[Any]) -> Any:
    """The library's `project_aggregate` without its per-event `isinstance` check against a
    runtime `Protocol` (a tenth of a sale's server CPU where records were replayed)."""
    for event in events:
        record = event.mutate(record)
    return record


def _back_off(attempt: int) -> None:
    """Jittered exponential backoff, so writers to a hot record stop colliding in step."""
    time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 5)))


KEYED_FINGERPRINT = "keyed:"


def _keyed_fingerprint(personal_key: bytes, fingerprint: str) -> str:
    return KEYED_FINGERPRINT + hmac.new(personal_key, fingerprint.encode(), hashlib.sha256).hexdigest()


def _fingerprint_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    canonical = json.dumps([name, list(args), kwargs], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class ChannelDepartment(Application):
    name = "ChannelDepartment"
    snapshotting_intervals = {Contract: 100, Partner: 100, Employee: 100, SalesTarget: 100}

    def __init__(self, database_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        settings = library_environment(database_url) if database_url else {}
        settings.update(env or {})
        super().__init__(env=settings)
        self.records = RecordCache(int(self.env.get("RECORD_CACHE_SIZE", RECORD_CACHE_SIZE)))

    def close(self) -> None:
        self.event_recorder.close()
        super().close()

    @functools.cached_property
    def vault(self) -> PersonalDataVault:
        return PersonalDataVault(self.event_recorder.datastore)

    @property
    def event_recorder(self) -> EventRecorder:
        assert isinstance(self.recorder, EventRecorder)
        return self.recorder

    def construct_notification_log(self) -> LocalNotificationLog:
        # Its reads are fenced (EventRecorder.select_notifications). A Leader, though, pushes
        # each of its own new events to its followers as the next one, while another writer's
        # lower position may not have committed yet: a follower would pass it for good.
        if isinstance(self, Leader):
            raise UnsafeTailingError(f"{type(self).__name__} as an eventsourcing Leader")
        return super().construct_notification_log()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # Employees ---------------------------------------------------------------------------

    @command
    def hire_employee(
        self,
        *,
        name: str,
        national_id: str | None = None,
        bank_card: str | None = None,
        manager_id: UUID | None = None,
        **fields: Any,
    ) -> CommandOutcome:
        if manager_id is not None:
            self._require_colleague(manager_id, "manager_id")
        employee_id, key = uuid4(), new_key()
        personal = {"name": require_text(name, "name"), "national_id": national_id, "bank_card": bank_card}
        sealed = {field_name: seal(key, employee_id, value) for field_name, value in personal.items()}
        employee = Employee.hire(id=employee_id, manager_id=manager_id, **sealed, **fields)
        logins = {employee.login: employee_id} if employee.login else None
        return self._commit(employee, new_personal_keys={employee_id: key}, new_logins=logins)

    def acting_employee_id(self) -> UUID | None:
        """Who the acting person is as an employee: the record whose login is the command's
        actor. Rules that compare people (domain.md §5) see through both names with it."""
        return self.event_recorder.employee_of_login(current_command().actor)

    @command
    def separate_employee(self, employee_id: UUID, on: date | str, reason: str) -> CommandOutcome:
        return self._end_employment(employee_id, lambda e, credited: e.separate(on, reason, credited))

    @command
    def propose_dismissal(self, employee_id: UUID, on: date | str, reason: str) -> CommandOutcome:
        proposer_id = self.acting_employee_id()
        employee = self._load(Employee, employee_id, commanded=True)
        proposal_id = employee.propose_dismissal(on, reason, proposer_id)
        return self._commit(employee, extra={"proposal_id": str(proposal_id)})

    @command
    def approve_dismissal(self, employee_id: UUID, proposal_id: UUID) -> CommandOutcome:
        approver_id = self.acting_employee_id()
        return self._end_employment(employee_id,
                                    lambda e, credited: e.approve_dismissal(proposal_id, approver_id, credited))

    @command
    def erase_personal_data(self, employee_id: UUID) -> CommandOutcome:
        employee = self._load(Employee, employee_id, commanded=True)
        employee.erase_personal_data()
        return self._commit(employee, erase_personal_keys=[employee_id])

    def personal_data(self, employee: Employee) -> dict[str, str | None]:
        """An employee's personal fields in clear, or all None once erased."""
        key = None if employee.personal_data_erased else self.vault.key(employee.id)
        return {name: unseal(key, employee.id, getattr(employee, name)) for name in PERSONAL_FIELDS}

    def unsealed_values(self, sealed: dict[UUID, str | None]) -> dict[UUID, str | None]:
        """One sealed personal field of many employees (employee id -> value as sealed), in clear:
        None where erased or absent. The keys are read in one query, whatever the number."""
        keys = self.vault.keys(list(sealed))
        return {subject: unseal(keys.get(subject), subject, value) for subject, value in sealed.items()}

    def unsealed(self, record_id: UUID, data: dict[str, Any]) -> dict[str, Any]:
        """An event's data with its personal fields opened (None once erased)."""
        if not PERSONAL_FIELDS & data.keys():
            return data
        key = self.vault.key(record_id)
        return {k: unseal(key, record_id, v) if k in PERSONAL_FIELDS else v for k, v in data.items()}

    @command
    def regularize_employee(self, employee_id: UUID, on: date | str) -> CommandOutcome:
        return self._change(Employee, employee_id, lambda e: e.regularize(on))

    @command
    def fail_probation(self, employee_id: UUID, on: date | str, reason: str) -> CommandOutcome:
        return self._end_employment(employee_id, lambda e, credited: e.fail_probation(on, reason, credited))

    @command
    def promote_employee(self, employee_id: UUID, role: str, on: date | str) -> CommandOutcome:
        return self._change(Employee, employee_id, lambda e: e.promote(role, on))

    @command
    def transfer_employee(self, employee_id: UUID, manager_id: UUID, on: date | str) -> CommandOutcome:
        self._require_colleague(manager_id, "manager_id")
        return self._change(Employee, employee_id, lambda e: e.transfer(manager_id, on))

    @command
    def evaluate_employee(
        self, employee_id: UUID, period: str, score: Any, notes: str | None = None
    ) -> CommandOutcome:
        return self._change(Employee, employee_id, lambda e: e.evaluate(period, score, notes))

    @command
    def warn_employee(self, employee_id: UUID, level: str, reason: str) -> CommandOutcome:
        return self._change(Employee, employee_id, lambda e: e.warn(level, reason))

    @command
    def review_employee_contract(
        self, employee_id: UUID, on: date | str, decision: str, contract_months: int | None = None
    ) -> CommandOutcome:
        return self._change(
            Employee, employee_id, lambda e: e.review_contract(on, decision, contract_months)
        )

    @command
    def dismiss_employee(self, employee_id: UUID, on: date | str, reason: str) -> CommandOutcome:
        return self._end_employment(employee_id, lambda e, credited: e.dismiss(on, reason, credited))

    def _end_employment(self, employee_id: UUID,
                        end: Callable[[Employee, date | None], Any]) -> CommandOutcome:
        """Ends an employment (separation, dismissal, failed probation) told the latest sale date
        credited to the employee, which the end may not precede."""
        credited = self.event_recorder.latest_sale_credited_to(employee_id)
        return self._change(Employee, employee_id, lambda employee: end(employee, credited))

    def _require_colleague(self, employee_id: UUID, field_name: str) -> Employee:
        try:
            colleague = self._load(Employee, employee_id)
        except NotFound:
            raise refusal("unknown_employee", f"{field_name}: no employee {employee_id}") from None
        if colleague.status not in ("probation", "regular"):
            raise refusal("unknown_employee", f"{field_name}: employee {employee_id} has left")
        return colleague

    # Partners ----------------------------------------------------------------------------

    @command
    def register_partner(self, *, parent_partner_id: UUID | None = None, **fields: Any) -> CommandOutcome:
        if parent_partner_id is not None:
            try:
                parent = self._load(Partner, parent_partner_id)
            except NotFound:
                raise refusal("unknown_parent_partner", f"no partner {parent_partner_id}") from None
            if parent.status in ("rejected", "terminated"):
                raise refusal("unknown_parent_partner", f"the parent partner is {parent.status}")
        return self._commit(Partner.apply_for_partnership(parent_partner_id=parent_partner_id, **fields))

    @command
    def review_partner(self, partner_id: UUID, decision: str, notes: str | None = None) -> CommandOutcome:
        reviewer_id = self.acting_employee_id()
        return self._change(Partner, partner_id, lambda p: p.review(decision, notes, reviewer_id))

    @command
    def record_training(
        self, partner_id: UUID, held_on: date | str, topic: str, trainer_id: UUID, attendees: Any, passed: Any
    ) -> CommandOutcome:
        partner = self._load(Partner, partner_id, commanded=True)
        try:
            trainer = self._load(Employee, trainer_id)
        except NotFound:
            raise refusal("unknown_employee", f"trainer_id: no employee {trainer_id}") from None
        day = parse_date(held_on, "held_on")
        if not trainer.is_employed_on(day):
            raise refusal("unknown_employee", f"trainer_id: employee {trainer_id} is not employed on {day}")
        training_id = partner.record_training(day, topic, trainer_id, attendees, passed)
        return self._commit(partner, extra={"training_id": str(training_id)})

    @command
    def suspend_partner(self, partner_id: UUID, reason: str, on: date | str | None = None) -> CommandOutcome:
        contracts = [self._load(Contract, contract_id)
                     for contract_id in self.event_recorder.contracts_of_partner(partner_id)]
        latest_sale_on = max((c.latest_sale_on for c in contracts if c.latest_sale_on is not None), default=None)
        partner = self._load(Partner, partner_id, commanded=True)
        partner.suspend(reason, on, latest_sale_on)
        return self._commit(partner, contracts_seen={c.id: c.version for c in contracts})

    @command
    def reinstate_partner(self, partner_id: UUID, reason: str, on: date | str | None = None) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.reinstate(reason, on))

    @command
    def terminate_partner(self, partner_id: UUID, reason: str, on: date | str) -> CommandOutcome:
        """「取消合作资格」 ends the cooperation: `on` is the partner's last day of business, and
        every contract of the partner still signed and in force after `on` ends with it — its
        last day `on` too — in the same transaction, which frees its exclusivity slot from the
        day after. One that has not started by then ends on its first day (never in force); one
        whose own last day is `on` or earlier is over by then and left as it is. One with sales
        dated after `on` refuses, and so the whole command."""
        partner = self._load(Partner, partner_id, commanded=True)
        partner.terminate(reason, on)
        last_day: date = partner.terminated_on  # type: ignore[assignment]
        ended, seen = [], {}
        for contract_id in self.event_recorder.contracts_of_partner(partner_id):
            contract = self._load(Contract, contract_id)
            seen[contract.id] = contract.version
            if contract.status != "signed" or contract.last_day_in_force <= last_day:
                continue
            # A contract's termination names its first day out of force: the day after the partner's last.
            out_of_force = max(last_day + timedelta(days=1), contract.starts_on)
            contract.terminate(out_of_force, f"partner terminated: {require_text(reason, 'reason')}")
            ended.append(contract)
        return self._commit(
            partner,
            *ended,
            extra={"terminated_contracts": [str(contract.id) for contract in ended]},
            contracts_in_force=[_in_force(contract) for contract in ended],
            contracts_seen=seen,
        )

    @command
    def record_partner_document(
        self,
        partner_id: UUID,
        kind: str,
        reference: str,
        issued_on: date | str | None = None,
        expires_on: date | str | None = None,
    ) -> CommandOutcome:
        partner = self._load(Partner, partner_id, commanded=True)
        document_id = partner.record_document(kind, reference, issued_on, expires_on)
        return self._commit(partner, extra={"document_id": str(document_id)})

    @command
    def record_corrective_plan(self, partner_id: UUID, actions: list[str], due_on: date | str) -> CommandOutcome:
        partner = self._load(Partner, partner_id, commanded=True)
        plan_id = partner.record_corrective_plan(actions, due_on)
        return self._commit(partner, extra={"plan_id": str(plan_id)})

    @command
    def close_corrective_plan(self, partner_id: UUID, plan_id: UUID, outcome: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.close_corrective_plan(plan_id, outcome))

    @command
    def report_inventory(
        self, partner_id: UUID, as_of: date | str, lines: list[dict[str, Any]], correction_reason: str | None = None
    ) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.report_inventory(as_of, lines, correction_reason))

    @command
    def record_visit(
        self, partner_id: UUID, visited_on: date | str, employee_id: UUID, notes: str | None = None
    ) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.record_visit(visited_on, employee_id, notes))

    @command
    def evaluate_partner(self, partner_id: UUID, period: str, scores: dict[str, Any]) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.evaluate(period, scores))

    @command
    def open_complaint(self, partner_id: UUID, subject: str, detail: str | None = None) -> CommandOutcome:
        partner = self._load(Partner, partner_id, commanded=True)
        complaint_id = partner.open_complaint(subject, detail)
        return self._commit(partner, extra={"complaint_id": str(complaint_id)})

    @command
    def resolve_complaint(self, partner_id: UUID, complaint_id: UUID, note: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.resolve_complaint(complaint_id, note))

    @command
    def escalate_complaint(self, partner_id: UUID, complaint_id: UUID, note: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.escalate_complaint(complaint_id, note))

    @command
    def pay_deposit(self, partner_id: UUID, amount: Any, on: date | str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.pay_deposit(amount, on))

    @command
    def refund_deposit(self, partner_id: UUID, amount: Any, on: date | str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.refund_deposit(amount, on))

    @command
    def request_payout_account_change(self, partner_id: UUID, account: str) -> CommandOutcome:
        partner = self._load(Partner, partner_id, commanded=True)
        change_id = partner.request_payout_account_change(account)
        return self._commit(partner, extra={"change_id": str(change_id)})

    @command
    def approve_payout_account_change(self, partner_id: UUID, change_id: UUID) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.approve_payout_account_change(change_id))

    @command
    def reject_payout_account_change(
        self, partner_id: UUID, change_id: UUID, reason: str | None = None
    ) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.reject_payout_account_change(change_id, reason))

    @command
    def record_remittance(self, partner_id: UUID, period: str, amount: Any, received_on: date | str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.record_remittance(period, amount, received_on))

    @command
    def prepare_housing_subsidy(self, partner_id: UUID, period: str, amount: Any) -> CommandOutcome:
        # A closed month's money stays as it was closed: no new subsidy for it (period_closed).
        return self._change(Partner, partner_id, lambda p: p.prepare_housing_subsidy(period, amount),
                            in_transaction=period_books.MonthOpen(str(period), "housing subsidy"))

    @command
    def verify_housing_subsidy(self, partner_id: UUID, period: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.verify_housing_subsidy(period))

    @command
    def approve_housing_subsidy(self, partner_id: UUID, period: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.approve_housing_subsidy(period))

    @command
    def pay_housing_subsidy(self, partner_id: UUID, period: str, paid_on: date | str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.pay_housing_subsidy(period, paid_on))

    @command
    def record_deal(self, partner_id: UUID, deal_id: str, amount: Any, closed_on: date | str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.record_deal(deal_id, amount, closed_on))

    @command
    def prepare_payout(self, partner_id: UUID, period: str, amount: Any) -> CommandOutcome:
        # A closed month's money stays as it was closed: no new payout for it (period_closed);
        # one prepared before the close is verified, approved and paid as usual.
        return self._change(Partner, partner_id, lambda p: p.prepare_payout(period, amount),
                            in_transaction=period_books.MonthOpen(str(period), "payout"))

    @command
    def verify_payout(self, partner_id: UUID, period: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.verify_payout(period))

    @command
    def approve_payout(self, partner_id: UUID, period: str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.approve_payout(period))

    @command
    def pay_payout(self, partner_id: UUID, period: str, paid_on: date | str) -> CommandOutcome:
        return self._change(Partner, partner_id, lambda p: p.pay_payout(period, paid_on))

    # Contracts ---------------------------------------------------------------------------

    @command
    def draft_contract(
        self,
        *,
        partner_id: UUID,
        starts_on: date | str,
        ends_on: date | str,
        commission: Any,
        **fields: Any,
    ) -> CommandOutcome:
        try:
            partner = self._load(Partner, partner_id)
        except NotFound:
            raise refusal("unknown_partner", f"no partner {partner_id}") from None
        partner.require_contractable()
        contract = Contract.draft(
            partner=PartnerTerms(partner.id, partner.kind),
            starts_on=starts_on,
            ends_on=ends_on,
            commission=commission,
            lowest_enterprise_agent_rate=self._lowest_enterprise_agent_rate(starts_on, ends_on),
            **fields,
        )
        return self._commit(contract)

    @command
    def submit_contract(self, contract_id: UUID) -> CommandOutcome:
        return self._change(Contract, contract_id, lambda c: c.submit())

    @command
    def approve_contract(self, contract_id: UUID) -> CommandOutcome:
        return self._change(Contract, contract_id, lambda c: c.approve())

    @command
    def sign_contract(self, contract_id: UUID, signed_on: date | str) -> CommandOutcome:
        contract = self._load(Contract, contract_id, commanded=True)
        contract.sign(signed_on)
        partner = self._load(Partner, contract.partner_id)
        partner.activate_on_first_contract(contract.id, contract.signed_on)  # type: ignore[arg-type]
        # Checked against the partner's selling gate like a sale: a signature must not slip in
        # beside a termination of the partner that reads its contracts before it commits.
        return self._commit(contract, partner, contracts_in_force=[_in_force(contract)],
                            sellers_checked={partner.id: partner.version})

    @command
    def request_amendment(
        self,
        contract_id: UUID,
        effective_on: date | str,
        commission: Any,
        reason: str | None = None,
        rate_justification: str | None = None,
    ) -> CommandOutcome:
        contract = self._load(Contract, contract_id, commanded=True)
        amendment_id = contract.request_amendment(
            effective_on,
            commission,
            reason,
            lowest_enterprise_agent_rate=self._lowest_rate_against(contract, effective_on),
            rate_justification=rate_justification,
        )
        return self._commit(contract, extra={"amendment_id": str(amendment_id)})

    def preview_amendment(self, contract_id: UUID, amendment_id: UUID) -> AmendmentPreview:
        """What approving a requested amendment would book now (a query: writes nothing)."""
        contract = self.get(Contract, contract_id)
        request = contract.amendment_request(amendment_id)
        if request["status"] != "requested":
            raise refusal("invalid_transition", f"the amendment is already {request['status']}",
                          status=request["status"], action="preview")
        preview = self._price_amendment(contract, amendment_id)(
            request["effective_on"], CommissionTerms.parse(request["commission"]))
        return dataclasses.replace(preview, contract_version=contract.version)

    @command
    def approve_amendment(self, contract_id: UUID, amendment_id: UUID, preview_digest: str) -> CommandOutcome:
        contract = self._load(Contract, contract_id, commanded=True)
        effective_on = contract.amendment_request(amendment_id)["effective_on"]
        contract.approve_amendment(
            amendment_id,
            preview_digest,
            price=self._price_amendment(contract, amendment_id),
            lowest_enterprise_agent_rate=self._lowest_rate_against(contract, effective_on),
        )
        return self._commit(contract, contracts_in_force=[_in_force(contract)])

    @command
    def reject_amendment(self, contract_id: UUID, amendment_id: UUID, reason: str) -> CommandOutcome:
        return self._change(Contract, contract_id, lambda c: c.reject_amendment(amendment_id, reason))

    def _price_amendment(
        self, contract: Contract, amendment_id: UUID
    ) -> Callable[[date, CommissionTerms], AmendmentPreview]:
        def price(effective_on: date, terms: CommissionTerms) -> AmendmentPreview:
            # The stored events up to the version loaded: if more land before the approval
            # commits, the commit fails on the version and the command runs again on them.
            history = [
                (row["position"], self.mapper.to_domain_event(
                    StoredEvent(contract.id, row["originator_version"], row["topic"], bytes(row["state"]))))
                for row in self.event_recorder.stream_rows(contract.id, 0, contract.version)
            ]
            return price_amendment(history, amendment_id, effective_on, terms, datetime.now(UTC))

        return price

    def _lowest_rate_against(self, contract: Contract, from_day: date | str) -> Decimal | None:
        """The lowest enterprise-agent rate a sales agent's terms from `from_day` to the end of
        its contract are held against (none for other partners)."""
        if contract.partner_kind != "sales_agent":
            return None
        return self._lowest_enterprise_agent_rate(from_day, contract.last_day_in_force)

    @command
    def terminate_contract(self, contract_id: UUID, effective_on: date | str, reason: str) -> CommandOutcome:
        contract = self._load(Contract, contract_id, commanded=True)
        contract.terminate(effective_on, reason)
        return self._commit(contract, contracts_in_force=[_in_force(contract)])

    @command
    def request_renewal(self, contract_id: UUID, ends_on: date | str) -> CommandOutcome:
        contract = self._load(Contract, contract_id, commanded=True)
        renewal_id = contract.request_renewal(ends_on)
        return self._commit(contract, extra={"renewal_id": str(renewal_id)})

    @command
    def approve_renewal(self, contract_id: UUID, renewal_id: UUID) -> CommandOutcome:
        # The exclusivity rules hold the longer interval in force here, in the registry.
        contract = self._load(Contract, contract_id, commanded=True)
        contract.approve_renewal(renewal_id)
        return self._commit(contract, contracts_in_force=[_in_force(contract)])

    @command
    def reject_renewal(self, contract_id: UUID, renewal_id: UUID, reason: str) -> CommandOutcome:
        return self._change(Contract, contract_id, lambda c: c.reject_renewal(renewal_id, reason))

    @command
    def record_sale(
        self,
        contract_id: UUID,
        order_id: str,
        amount: Any,
        sold_on: date | str,
        product: str | None = None,
        region: str | None = None,
        employee_id: UUID | None = None,
    ) -> CommandOutcome:
        checked: dict[UUID, int] = {}

        def sell(contract: Contract) -> None:
            checked.clear()
            SellerCheck(self._current, self._latest, checked).require(contract, sold_on, employee_id)
            contract.record_sale(order_id, amount, sold_on, product, region, employee_id)

        return self._change(Contract, contract_id, sell, sellers_checked=checked)

    @command
    def record_return(
        self, contract_id: UUID, order_id: str, amount: Any, returned_on: date | str, return_id: str | None = None
    ) -> CommandOutcome:
        return self._change(
            Contract, contract_id, lambda c: c.record_return(order_id, amount, returned_on, return_id)
        )

    def import_sales(self, lines: Sequence[SalesLine], keyed: ImportLines | None = None) -> list[DomainError | None]:
        """Sales and returns in bulk: each line is checked on its own and refused on its
        own, but the accepted lines of one contract are saved together, in one transaction,
        instead of one load and one commit per line. Returns each line's refusal or None.

        `keyed`: the import's actor and idempotency key, and each line's number and digest
        (in the order of `lines`): each transaction records the lines it books with them."""
        outcomes: list[DomainError | None] = [None] * len(lines)
        by_contract: dict[UUID, list[int]] = {}
        for index, line in enumerate(lines):
            by_contract.setdefault(line.contract_id, []).append(index)
        sellers = SellerCheck(self._current, self._latest)
        for contract_id, indexes in by_contract.items():
            with self.records.turn(contract_id):
                self._import_into(contract_id, lines, indexes, outcomes, sellers, keyed)
        return outcomes

    def imported_lines(self, actor: str, key: str) -> dict[int, int]:
        """The lines (number: digest) that runs of a keyed import cut short have booked."""
        return self.event_recorder.imported_lines(actor, key)

    def keyed_import(self, actor: str, key: str) -> AbstractContextManager[bool]:
        """Hold an import's idempotency key while it runs (False: another run holds it)."""
        return self.event_recorder.key_in_flight(actor, key)

    def import_outcome(self, actor: str, key: str) -> tuple[str, dict[str, Any]] | None:
        """(fingerprint, answer) of the import run earlier under this key, if it finished."""
        stored = self.event_recorder.command_outcome(actor, key)
        if stored is None or stored[1] is None:
            return None
        return stored[0], stored[1]

    def keep_import_outcome(self, actor: str, key: str, fingerprint: str, answer: dict[str, Any]) -> None:
        self.event_recorder.store_outcome(actor, key, fingerprint, answer)

    def _import_into(self, contract_id: UUID, lines: Sequence[SalesLine], indexes: list[int],
                     outcomes: list[DomainError | None], sellers: SellerCheck, keyed: ImportLines | None) -> None:
        for attempt in range(CONCURRENCY_RETRIES):
            sellers.checked.clear()
            try:
                contract = self._apply_lines(contract_id, lines, indexes, outcomes, sellers)
            except NotFound as missing:
                for index in indexes:
                    outcomes[index] = missing
                return
            if not contract.pending_events:
                return
            booked = [index for index in indexes if outcomes[index] is None]
            try:
                self._commit(contract, sellers_checked=sellers.checked, import_lines=None if keyed is None else
                             ImportLines(keyed.actor, keyed.idempotency_key, [keyed.numbers[i] for i in booked],
                                         [keyed.digests[i] for i in booked]))
                return
            except ConcurrentModification as conflict:
                sellers.forget()
                if attempt == CONCURRENCY_RETRIES - 1:
                    for index in indexes:
                        outcomes[index] = outcomes[index] or conflict
                _back_off(attempt)

    def _apply_lines(self, contract_id: UUID, lines: Sequence[SalesLine], indexes: list[int],
                     outcomes: list[DomainError | None], sellers: SellerCheck) -> Contract:
        """One contract's lines applied to it, each line's refusal noted in `outcomes`."""
        outer = current_command()
        contract = self.records.take(contract_id)
        cached = contract is not None
        while True:
            if contract is None:
                contract = self._load(Contract, contract_id)
            refused = False
            for index in indexes:
                # Each line is a command of its own: its own id on its events.
                with acting_as(outer.actor, outer.roles, correlation_id=outer.correlation_id,
                               causation_id=outer.causation_id, now=outer.now):
                    try:
                        lines[index].apply_to(contract, sellers)
                        outcomes[index] = None
                    except DomainError as refusal_:
                        outcomes[index] = refusal_
                        refused = True
            if not (refused and cached):
                return contract
            contract, cached = None, False  # a refusal from memory is checked on a fresh load

    def _lowest_enterprise_agent_rate(self, starts_on: date | str, ends_on: date | str) -> Decimal | None:
        try:
            start, end = date.fromisoformat(str(starts_on)), date.fromisoformat(str(ends_on))
        except ValueError:
            return None  # the contract itself refuses the malformed dates
        return self.event_recorder.lowest_rate_in_force("enterprise_agent", start, end)

    # Targets -----------------------------------------------------------------------------

    @command
    def set_target(self, *, parent_id: UUID | None = None, **fields: Any) -> CommandOutcome:
        parent = None if parent_id is None else self._load(SalesTarget, parent_id)
        self._require_assignee(fields.get("assignee_type"), fields.get("assignee_id"))
        if parent is None:
            return self._commit(SalesTarget.set(**fields))
        return self._commit(SalesTarget.set(parent=parent, **fields), parent)

    def _require_assignee(self, assignee_type: Any, assignee_id: Any) -> None:
        """An employee or a partner by its id; a team by its leader's employee id."""
        record_type = {"employee": Employee, "team": Employee, "partner": Partner}.get(assignee_type)
        if record_type is None:
            return  # the target itself refuses the type
        try:
            self._load(record_type, UUID(str(assignee_id)))
        except (NotFound, ValueError):
            kind = "team leader" if assignee_type == "team" else assignee_type
            raise refusal("unknown_assignee", f"assignee_id: no {kind} {assignee_id}") from None

    @command
    def decompose_target(self, parent_id: UUID, children: list[dict[str, Any]]) -> CommandOutcome:
        """Hand a target down in one step: the children must sum exactly to the parent."""
        parent = self._load(SalesTarget, parent_id, commanded=True)
        for child in children:
            self._require_assignee(child.get("assignee_type"), child.get("assignee_id"))
        total = sum((money(child.get("amount"), "children.amount") for child in children), parent.allocated)
        if total != parent.amount:
            raise refusal(
                "decomposition_must_sum_to_parent",
                f"the children sum to {total}, the parent is {parent.amount}",
            )
        created = [SalesTarget.set(parent=parent, **child) for child in children]
        return self._commit(parent, *created, extra={"child_ids": [str(c.id) for c in created]})

    @command
    def request_target_revision(self, target_id: UUID, amount: Any, reason: str) -> CommandOutcome:
        target = self._load(SalesTarget, target_id, commanded=True)
        revision_id = target.request_revision(amount, reason)
        return self._commit(target, extra={"revision_id": str(revision_id)})

    @command
    def approve_target_revision(self, target_id: UUID, revision_id: UUID) -> CommandOutcome:
        approver_id = self.acting_employee_id()
        target = self._load(SalesTarget, target_id, commanded=True)
        parent = self._load(SalesTarget, target.parent_id) if target.parent_id else None
        target.approve_revision(revision_id, parent, approver_id)
        return self._commit(target, *([parent] if parent else []))

    @command
    def close_target(self, target_id: UUID, kpi_results: dict[str, Any] | None = None) -> CommandOutcome:
        return self._change(SalesTarget, target_id, lambda t: t.close(kpi_results))

    @command
    def confirm_target_closing(self, target_id: UUID) -> CommandOutcome:
        confirmer_id = self.acting_employee_id()
        return self._change(SalesTarget, target_id, lambda t: t.confirm_closing(confirmer_id))

    # Commission periods and disputes ------------------------------------------------------
    # The ledger itself is a read model: the HTTP layer hands these commands its reading of it
    # (projections.commissions), which the domain may not import.

    @command
    def close_commission_period(self, period: str, ledger: period_books.LedgerReading) -> CommandOutcome:
        """Close a month's commissions (domain.md §6). The ledger is read, caught up to the log,
        in the transaction that records the close (`period_books.ClosingPeriod`)."""
        record = CommissionPeriod.close(period, period_books.latest_closed(self.event_recorder))
        return self._commit(record, in_transaction=period_books.ClosingPeriod(self.event_recorder, record, ledger))

    def commission_period(self, period: str, as_of: datetime | None = None) -> dict[str, Any]:
        """A month's state: closed by its own close, or by a later one (months close in order,
        and a close closes the months before it that had nothing to close), or open."""
        parsed = month(period).text
        covering = period_books.covering_close(self.event_recorder, parsed, as_of)
        own = covering is not None and covering.period == parsed
        return {
            "id": CommissionPeriod.create_id(parsed),
            "version": 1 if own else 0,
            "period": parsed,
            "status": "open" if covering is None else "closed",
            "closed_at": None if covering is None else covering.closed_at,
            "closed_by": None if covering is None else covering.closed_by,
            "closed_with": None if covering is None else covering.period,
            "closes_after": covering.closes_after if own else None,
        }

    @command
    def raise_commission_dispute(
        self,
        partner_id: UUID,
        period: str,
        line_position: int,
        reason: str,
        lines: Callable[[Any, UUID, str, int, int | None], DisputedLine | None],
        line_no: int | None = None,
    ) -> CommandOutcome:
        """`lines`: the ledger's reading of a statement line (partner, month, position, line
        number or None for all its lines at that position)."""
        self._load(Partner, partner_id)  # 404 for an unknown partner
        parsed = month(period).text
        with self.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            line = lines(curs, partner_id, parsed, line_position, line_no)
        if line is None:
            at = f"{line_position}" if line_no is None else f"{line_position}/{line_no}"
            raise refusal("unknown_line", f"no line {at} on the statement of {partner_id} for {parsed}",
                          line_position=line_position)
        dispute = CommissionDispute.raise_(partner_id=partner_id, period=parsed, line=line, reason=reason,
                                           raised_by_employee=self.acting_employee_id())
        return self._commit(dispute, extra={"dispute_id": str(dispute.id)})

    @command
    def resolve_commission_dispute(self, partner_id: UUID, period: str, dispute_id: UUID, outcome: str, note: str,
                                   amount: Any = None) -> CommandOutcome:
        resolver_id = self.acting_employee_id()
        dispute = self._load(CommissionDispute, dispute_id, commanded=True)
        if dispute.partner_id != partner_id or dispute.period != period:
            raise NotFound(f"no commission dispute {dispute_id} on the statement of {partner_id} for {period}")
        dispute.resolve(outcome, note, amount, resolver_id)
        return self._commit(dispute)

    # Reading records ---------------------------------------------------------------------

    def get(
        self,
        record_type: type[A],
        record_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> A:
        """A record now, at a version, or as it stood at a moment (time travel)."""
        if as_of is not None:
            version = self.event_recorder.version_as_of(record_id, as_of)
            if version is None:
                raise NotFound(f"{record_type.record_name} {record_id} did not exist at {as_of}")
        elif version is not None and version < 1:
            raise NotFound(f"{record_type.record_name} {record_id} has no version {version}")
        try:
            record = self.repository.get(record_id, version=version, projector_func=_replayed)
        except AggregateNotFoundError:
            raise NotFound(f"no {record_type.record_name} {record_id}") from None
        if not isinstance(record, record_type):
            raise NotFound(f"no {record_type.record_name} {record_id}")
        if version is not None and record.version != version:
            raise NotFound(f"{record_type.record_name} {record_id} has no version {version}")
        return record

    def history(self, record_id: UUID, after_version: int = 0, limit: int | None = None) -> list[HistoryEntry]:
        """A record's events in order, after a version and up to a limit (all by default),
        with who, when, why and what."""
        entries = [entry for entry, _ in self._entries(record_id, after_version, limit)]
        if not entries and after_version == 0:
            raise NotFound(f"no record {record_id}")
        return entries

    def replay(self, record_type: type[A], record_id: UUID, from_version: int,
               to_version: int) -> tuple[A | None, Iterator[tuple[HistoryEntry, A]]]:
        """The record at `from_version` (None for 0: before it existed), and each event after it
        up to `to_version` with the record as that event left it — one read of the events, the
        record changed in place (a diff looks at it between steps)."""
        start = self.get(record_type, record_id, version=from_version) if from_version > 0 else None

        def steps() -> Iterator[tuple[HistoryEntry, A]]:
            record = start
            for entry, event in self._entries(record_id, from_version, to_version - from_version):
                record = event.mutate(record)  # type: ignore[attr-defined]
                yield entry, record  # type: ignore[misc]

        return start, steps()

    def _entries(self, record_id: UUID, after_version: int,
                 limit: int | None) -> Iterator[tuple[HistoryEntry, Any]]:
        for row in self.event_recorder.stream_rows(record_id, after_version, limit):
            stored = StoredEvent(record_id, row["originator_version"], row["topic"], bytes(row["state"]))
            event = self.mapper.to_domain_event(stored)
            meta = event.meta  # type: ignore[attr-defined]
            yield HistoryEntry(
                position=row["position"],
                version=row["originator_version"],
                type=type(event).__qualname__,
                recorded_at=row["recorded_at"],
                effective_on=row["effective_on"],
                actor=meta["actor"],
                roles=meta["roles"],
                correlation_id=meta["correlation_id"],
                causation_id=meta["causation_id"],
                data=event_data(event),
            ), event

    # Operations --------------------------------------------------------------------------

    @command
    def skip_projection_event(self, *, projection: str, position: int, reason: str) -> CommandOutcome:
        """Record an operator's decision that `projection` passes over the event at `position`,
        where it is stopped, and let its workers go on past it. Refused (SkipRefused, nothing
        written) unless the read model is stopped at exactly that event with everything before
        it applied. The stop stays locked from that check to the index of the decision, so no
        retry or worker can apply the event in between (`projecting.held_stop`).
        Taken once: a repeat (the operator ran the command again after an interruption)
        answers with the decision already recorded, as a replay."""
        with projecting.held_stop(self.event_recorder.datastore, projection) as held:
            stop = projecting.check_stopped_at(held, projection, position)
            try:
                decided = self._load(ProjectionSkip, skip_decision_id(projection, position))
            except NotFound:
                outcome = self._commit(ProjectionSkip.decide(
                    projection=projection, position=position, event_id=stop.failure.event_id,
                    event_type=stop.failure.event_type, reason=reason, **stop.ran_by))
            else:
                recorded = self.history(decided.id)[-1].position
                outcome = CommandOutcome(id=decided.id, version=decided.version, position=recorded,
                                         positions=[recorded], replayed=True)
            stop.pass_over(outcome.id)
        return outcome

    @command
    def retry_projection(self, *, projection: str, reason: str | None = None) -> CommandOutcome:
        """Record an operator's order to clear `projection`'s stopped state, and clear it: its
        workers try the event again. Raises NotFailing when it is not stopped. The outcome's
        `extra["failure"]` is the stop cleared. A skip of that event already in the log (an
        interrupted skip) is completed rather than contradicted."""
        with projecting.held_stop(self.event_recorder.datastore, projection) as stop:
            if stop is None:
                raise projecting.NotFailing(f"read model {projection} is not failing")
            failure = stop.failure
            decision = stop.decision_in_log()
            try:
                ordered = self._load(ProjectionRetry, retry_id(projection, failure.position, failure.since))
            except NotFound:
                outcome = self._commit(ProjectionRetry.order(
                    projection=projection, position=failure.position, since=failure.since, event_id=failure.event_id,
                    event_type=failure.event_type, error=failure.error, reason=reason, skip_decision=decision,
                    **stop.ran_by))
            else:
                recorded = self.history(ordered.id)[-1].position
                outcome = CommandOutcome(id=ordered.id, version=ordered.version, position=recorded,
                                         positions=[recorded], replayed=True)
            if decision is not None:
                stop.pass_over(decision)
            else:
                stop.clear()
        return dataclasses.replace(outcome, extra={"failure": failure, "skip_decision": decision})

    # Plumbing ----------------------------------------------------------------------------

    def _load(self, record_type: type[A], record_id: UUID, *, commanded: bool = False) -> A:
        record = self.get(record_type, record_id)
        if commanded:
            self._check_expected_version(record)
        return record

    def _current(self, record_type: type[A], record_id: UUID) -> A:
        """A record read to check a rule of another record (the partner and the employee of
        a sale): this process's cached copy when it holds one, so a stream of sales for one
        partner costs no extra round trip each. The copy may be stale (another process
        changed the record): a sale's transaction checks the versions it relied on against
        the selling gates (SellerCheck), and a conflict drops the copy for a fresh one."""
        cached = self.records.peek(record_id)
        if isinstance(cached, record_type):
            return cached
        return self._latest(record_type, record_id)

    def _latest(self, record_type: type[A], record_id: UUID) -> A:
        """The record as it stands now: the cached copy when the store has nothing newer (one
        cheap look), else read from the store and cached for `_current`."""
        cached = self.records.peek(record_id)
        if isinstance(cached, record_type) and cached.version == self.event_recorder.latest_version(record_id):
            return cached
        record = self._load(record_type, record_id)
        self.records.put_back(record)
        return record

    def _change(self, record_type: type[A], record_id: UUID, change: Callable[[A], Any],
                sellers_checked: dict[UUID, int] | None = None,
                in_transaction: InTransaction | None = None) -> CommandOutcome:
        """Load (from the record cache when it holds the record), change, commit — in turn
        with this process's other commands on the record. `sellers_checked`: filled by
        `change`, see SellerCheck."""
        with self.records.turn(record_id):
            record = self.records.take(record_id)
            if isinstance(record, record_type):
                if self.records.is_contended(record_id):
                    record = self._caught_up(record)
                try:
                    self._check_expected_version(record)
                    change(record)
                    return self._commit(record, sellers_checked=sellers_checked, in_transaction=in_transaction)
                except (DomainError, ConcurrentModification) as refused:
                    if isinstance(refused, ConcurrentModification):
                        if not isinstance(refused, SellerMoved):
                            # Another process writes this record too: from now on, catch the cached
                            # copy up before each command instead of losing on the version again.
                            self.records.mark_contended(record_id)
                        if current_command().expected_version is None:
                            raise  # retried by @command, on a fresh load: the cache no longer holds it
                    # The cached record may be stale (another process wrote it): decide on a fresh load.
            record = self._load(record_type, record_id, commanded=True)
            change(record)
            return self._commit(record, sellers_checked=sellers_checked, in_transaction=in_transaction)

    def _caught_up(self, record: A) -> A:
        """The cached record with the events other processes appended since it was cached:
        one indexed read (usually empty), rather than a conflict, a back-off and a replay
        from the last snapshot."""
        newer = list(self.repository.event_store.get(record.id, gt=record.version))
        return _replayed(record, newer)

    def _check_expected_version(self, record: ChannelAggregate) -> None:
        expected = current_command().expected_version
        if expected is not None and record.version != expected:
            raise VersionMismatch(
                f"{record.record_name} {record.id} is at version {record.version}, not {expected}",
                current_version=record.version,
            )

    def _commit(
        self,
        primary: ChannelAggregate,
        *others: ChannelAggregate,
        extra: dict[str, Any] | None = None,
        contracts_in_force: list[ContractInForce] | None = None,
        new_personal_keys: dict[UUID, bytes] | None = None,
        erase_personal_keys: list[UUID] | None = None,
        new_logins: dict[str, UUID] | None = None,
        sellers_checked: dict[UUID, int] | None = None,
        contracts_seen: dict[UUID, int] | None = None,
        import_lines: ImportLines | None = None,
        in_transaction: InTransaction | None = None,
    ) -> CommandOutcome:
        """`sellers_checked`: the partner and employee a sale was checked on, at the versions
        read; `contracts_seen`: a partner's contracts at the versions its suspension or
        termination was decided on. Both go to the selling gates (migrations/0018).
        `in_transaction`: work done in the transaction of the events, around the append."""
        context = current_command()
        pending = None
        if context.idempotency_key:
            fingerprint = _fingerprint.get()
            personal_key = (new_personal_keys or {}).get(primary.id)
            if personal_key is not None:
                # The request carried personal data: a plain hash of it would let anyone holding
                # the table confirm a guessed national id, even after erasure. Keyed by the
                # employee's personal-data key, it becomes unconfirmable when the key is erased.
                fingerprint = _keyed_fingerprint(personal_key, fingerprint)
            pending = PendingOutcome(
                actor=context.actor,
                idempotency_key=context.idempotency_key,
                fingerprint=fingerprint,
                outcome={"id": str(primary.id), "version": primary.version, "extra": extra or {}},
            )
        try:
            recordings = self.save(
                primary,
                *others,
                outcome=pending,
                contracts_in_force=contracts_in_force or [],
                new_personal_keys=new_personal_keys,
                erase_personal_keys=erase_personal_keys or [],
                new_logins=new_logins,
                sellers_checked=sellers_checked,
                selling_days_closed=_selling_days_closed(primary, *others, contracts_seen=contracts_seen),
                import_lines=import_lines,
                in_transaction=in_transaction,
            )
        except ConstraintViolation as violation:
            if violation.constraint == "selling_gate":
                for seller_id in sellers_checked or {}:
                    self.records.forget(seller_id)  # the copy checked is stale: read it again
            raise self._refusal_for(violation) from violation
        positions = [recording.notification.id for recording in recordings]
        render = _answer_with.get()
        answer = render(primary) if render is not None else None
        self.records.put_back(primary, *others)  # from here on, not ours to read
        return CommandOutcome(
            id=primary.id,
            version=primary.version,
            position=positions[-1],
            positions=positions,
            extra=extra or {},
            answer=answer,
        )

    @staticmethod
    def _refusal_for(violation: ConstraintViolation) -> Exception:
        if violation.constraint == "one_sales_agent_at_a_time":
            return refusal(
                "exclusive_sales_agent_exists",
                "another sales agent's contract is in force on some of these days "
                "(「本公司在同一时期只能委托一家销售代理商」)",
            )
        if violation.constraint == "employee_logins_pkey":
            return refusal("login_taken", "login: another employee already logs in with this name")
        if violation.constraint == "one_enterprise_agent_per_region":
            return refusal(
                "region_taken",
                "another enterprise agent's contract is in force for this region on some of these days "
                "(enterprise agents sell 「分别在不同的地区」)",
            )
        if violation.constraint == "events_pkey":
            return ConcurrentModification("the record changed while the command ran")
        if violation.constraint == "selling_gate":
            return SellerMoved("a partner or employee of the sale changed its selling days meanwhile")
        return violation

    def save(self, *records: ChannelAggregate, **kwargs: Any) -> Any:  # type: ignore[override]
        """The library's `save`, for this service's records only (`_commit` is its one caller):
        the library asks of each object `isinstance` against two runtime Protocols, which
        walk the Protocols' members on every call (about a tenth of a sale's CPU in process)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for record in records:
            processing_event.events.extend(record.collect_events())
            processing_event.aggregates[record.id] = record
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def _record(self, processing_event: ProcessingEvent[UUID]) -> Any:
        processing_event.saved_kwargs["facts"] = [
            EventFacts(event.timestamp, effective_on(event))
            for event in processing_event.events
        ]
        with observability.span("append", **{"channel_domain.events": len(processing_event.events)}) as span:
            recordings = super()._record(processing_event)
            if span is not None:
                span.set_attribute("channel_domain.positions", [r.notification.id for r in recordings])
            return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # The command has committed by now; a snapshot is only a cache, so failing to take
        # one must not turn a success into an error the client would retry.
        #
        # The library snapshots at each multiple of the interval, loading the record again at
        # that version: a replay of up to an interval of events per snapshot, which the import
        # profile showed costing as much as the import itself. The record just saved is in
        # memory at its new version: a snapshot of it is as good, and free to take.
        #
        # A snapshot's size grows with the record (a contract's orders), so past ten intervals
        # the step grows with it, to a tenth of the record: snapshots then cost in all a few
        # times the record's size, not its square, and a load replays at most a tenth of it.
        try:
            for record_id, record in processing_event.aggregates.items():
                interval = self.snapshotting_intervals.get(type(record))
                versions = [e.originator_version for e in processing_event.events if e.originator_id == record_id]
                if self.snapshots is None or interval is None or not versions:
                    continue
                step = max(interval, max(versions) // 10 // interval * interval)
                if (min(versions) - 1) // step != max(versions) // step:  # crossed a multiple
                    snapshot_class = getattr(type(record), "Snapshot", self.snapshot_class)
                    self.snapshots.put([snapshot_class.take(record)])
        except Exception:
            logger.exception("snapshot not taken; the record will load from its events")

    def _replay(self, actor: str, key: str, fingerprint: str) -> CommandOutcome | None:
        stored = self.event_recorder.command_outcome(actor, key)
        if stored is None or stored[1] is None:
            return None
        outcome = stored[1]
        recorded = stored[0]
        if recorded.startswith(KEYED_FINGERPRINT):
            personal_key = self.vault.key(UUID(outcome["id"]))
            # Erased: nothing is left to compare the request with, by design; the key still
            # replays what it did rather than hire again.
            fingerprint = recorded if personal_key is None else _keyed_fingerprint(personal_key, fingerprint)
        if recorded != fingerprint:
            raise IdempotencyKeyReused(f"idempotency key {key!r} was used for a different command")
        return CommandOutcome(
            id=UUID(outcome["id"]),
            version=outcome["version"],
            position=outcome["position"],
            positions=outcome["positions"],
            extra=outcome["extra"],
            replayed=True,
        )


SELLING_DAYS_CLOSED: tuple[type[Any], ...] = (
    Partner.Suspended, Partner.Terminated,  # type: ignore[attr-defined]
    Employee.Separated, Employee.Dismissed, Employee.ProbationFailed, Employee.DismissalApproved,  # type: ignore[attr-defined]
)


def _selling_days_closed(*records: ChannelAggregate, contracts_seen: dict[UUID, int] | None) -> SellingDaysClosed | None:
    """The record among those saved whose pending events close days it may sell (or be
    credited with sales) on, if any."""
    closing = [record for record in records if isinstance(record, Partner | Employee)
               and any(isinstance(event, SELLING_DAYS_CLOSED) for event in record.pending_events)]
    if not closing:
        return None
    (record,) = closing
    if isinstance(record, Partner) and contracts_seen is None:
        raise AssertionError("a partner's selling days close only on its contracts' sales as seen")
    return SellingDaysClosed(record.id, record.version, contracts_seen if isinstance(record, Partner) else None)


def _in_force(contract: Contract) -> ContractInForce:
    last_day = contract.last_day_in_force
    terms = contract.terms_on(last_day)
    return ContractInForce(
        contract_id=contract.id,
        partner_id=contract.partner_id,
        partner_kind=contract.partner_kind,
        starts_on=contract.starts_on,
        last_day=last_day,
        lowest_rate=terms.lowest_rate,
        highest_rate=terms.highest_rate,
        territory=contract.territory,
        terms=_terms_in_force(contract, last_day),
    )


def _terms_in_force(contract: Contract, last_day: date) -> tuple[TermsInForce, ...]:
    """Each version of the terms over the days it is in force: from its effective date to the
    day before the next version's (amendments sorted by date, recording order breaking ties)."""
    versions = [(contract.starts_on, contract.commission), *((day, terms) for day, terms in contract.amendments)]
    periods = []
    for index, (effective_on, commission) in enumerate(versions):
        first = max(effective_on, contract.starts_on)
        last = min(versions[index + 1][0] - timedelta(days=1), last_day) if index + 1 < len(versions) else last_day
        if first <= last:
            terms = CommissionTerms.parse(commission)
            periods.append(TermsInForce(first, last, terms.lowest_rate, terms.highest_rate))
    return tuple(periods)


__all__ = ["ChannelDepartment", "CommandOutcome", "HistoryEntry", "answering_with", "command"]
