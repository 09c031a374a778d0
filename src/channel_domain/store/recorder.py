"""The event recorder: concurrent appends without a table lock, and what commits with them.

The stock `eventsourcing` PostgreSQL recorder takes `LOCK TABLE … IN EXCLUSIVE MODE` on every
append so that positions become visible in order; that serialises all writers. This recorder
instead stamps every event with its writer's transaction id, taken *before* the writer draws
any position, and leaves ordering to the reader (`channel_domain.store.log`), which never
passes a position that a still-running transaction could fill.

In the same transaction as the events it writes, when the command carries them:
- the command's idempotency key and its outcome (`command_outcomes`);
- the registry of contracts in force (`contracts_in_force`), whose exclusion constraints
  make the exclusive sales agent rule and the one enterprise agent per region rule atomic,
  with each contract's terms over its days in force (`contract_terms_in_force`);
- a new employee's personal-data key, or the destruction of one (`personal_data_keys`);
- a new employee's login (`employee_logins`), whose primary key keeps logins unique;
- the selling gates (`selling_gates`, migrations/0018): a sale checks, a suspension or a
  separation closes, the gate of the partner and employee the sale is credited to;
- the lines of a keyed import that the transaction books (`keyed_import_lines`);
- whatever an `InTransaction` step of the command does before and after the append (a
  period close: its lock, its reading of the ledger, its registry row).

It does not NOTIFY inside the write transaction, as the stock recorder does: PostgreSQL
serialises the commits of every transaction that notifies (a database-wide lock held until
commit), which cost as much concurrency as the table lock. Readers poll `EventLog`.

The price is a narrower contract than the stock recorder's: positions are unique, and
increasing within one transaction, but transactions commit out of position order, so a
later position can be visible while an earlier one is not yet (or never will be: its writer
rolled back). Reading "everything after my last position" is therefore unsafe by itself, and
every way the `eventsourcing` library tails the log through this recorder is either made
safe or refused:
- `select_notifications`, and all that reads through it (`Application.notification_log`,
  its sections, `NotificationLogReader`, a `Follower`'s pulls, `NotificationLogJSONService`),
  goes through `EventLog`'s fence (`log.read_settled`): it never returns a position that a
  running transaction could still precede;
- `subscribe` (and so `ApplicationSubscription`, `ProjectionRunner`) raises
  `UnsafeTailingError`: it waits for a NOTIFY this recorder never sends;
- a `Leader` (`ProcessApplication`, `System`) is refused when the application is built
  (`ChannelDepartment.construct_notification_log`): it pushes its own new events to its
  followers, who take them as the next ones while other writers' earlier positions may not
  have committed yet.
`max_notification_id` stays: it is the highest *visible* position, a high-water mark (for
lag, and as a target for `EventLog`), never a promise that everything below it is final.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresFactory,
)
from eventsourcing.utils import Environment
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg.types.range import Range
from psycopg_pool import ConnectionPool, PoolTimeout

from channel_domain.company_time import time_zone
from channel_domain.store.database import whole_number
from channel_domain.store.group_commit import MAX_COMMANDS, GroupCommit, Pending

logger = logging.getLogger(__name__)

EVENTS_TABLE = "events"
LOCK_SESSIONS = 8  # idempotency-key locks held at once; more keyed commands wait for one
SNAPSHOTS_TABLE = "snapshots"


# What PostgreSQL says when it refuses a connection for want of slots. A refusal at connect
# time carries no SQLSTATE in psycopg (libpq reports it as text), so the text is all there is.
_NO_SLOTS = ("too many connections", "too many clients", "connection slots are reserved")


def _root(error: BaseException) -> BaseException | None:
    return error.__cause__ if isinstance(error, OperationalError | InterfaceError) else error


def means_database_busy(error: BaseException) -> bool:
    """No connection for this request now, though nothing says the database is gone: none came
    from the pool in time (every one busy, or the pool cannot open more), or the server refused
    one for want of slots. A pool timeout is also what a request waiting through an outage
    gets, so whoever answers it asks the database before calling it busy (api/breaker.py)."""
    cause = _root(error)
    if isinstance(cause, PoolTimeout):
        return True
    if isinstance(cause, psycopg.OperationalError):
        if cause.sqlstate is not None:
            return cause.sqlstate == "53300"  # too_many_connections, when it does carry one
        return any(words in str(cause) for words in _NO_SLOTS)
    return False


def means_database_away(error: BaseException) -> bool:
    """A failure to reach the database, as opposed to a query it refused (a deadlock, a
    timeout, a constraint) or no room for one more (`means_database_busy`): a connection
    could not be made, it broke, or the server is shutting down."""
    if means_database_busy(error):
        return False
    cause = _root(error)
    if isinstance(cause, psycopg.InterfaceError):
        return True
    if isinstance(cause, psycopg.OperationalError):
        state = cause.sqlstate
        return state is None or state.startswith(("08", "57P"))  # connection exception, shutdown
    return False


def read_again_after_a_dead_connection(read: Callable[..., Any]) -> Callable[..., Any]:
    """Run a read once more when a pooled connection turned out dead (the database restarted
    since it was opened) — but not when no connection came at all: the database is away, and
    the client should hear so now. (The library retries a failed read ten times, 0.2 s apart,
    each try waiting for a connection: through an outage, some 20 s of silence.)"""

    @wraps(read)
    def once_more(*args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)
        except OperationalError as error:
            if isinstance(error.__cause__, PoolTimeout):
                raise
            return read(*args, **kwargs)

    return once_more


def idempotency_lock_key(actor: str, idempotency_key: str) -> str:
    """The SQL of the advisory-lock key a command holds while it runs with an idempotency key,
    over two SQL expressions (columns, or placeholders): one definition for `key_in_flight`
    and for the purge that must not delete an outcome whose command is running. The actor's
    length prefix keeps the key unambiguous."""
    return f"hashtextextended(length({actor}) || ':' || {actor} || ':' || {idempotency_key}, 0)"


SALE_RECORDED_TOPIC = "channel_domain.contract:Contract.SaleRecorded"


@dataclass(frozen=True)
class EventFacts:
    """What the recorder stores beside each event's bytes, for as-of reads and audit."""

    recorded_at: datetime
    effective_on: date | None


@dataclass(frozen=True)
class TermsInForce:
    """One version of a contract's commission terms, over the days it is in force."""

    starts_on: date
    last_day: date  # inclusive
    lowest_rate: Decimal
    highest_rate: Decimal


@dataclass(frozen=True)
class ContractInForce:
    """A signed contract's days in force, as the registry row that enforces exclusivity."""

    contract_id: UUID
    partner_id: UUID
    partner_kind: str
    starts_on: date
    last_day: date  # inclusive; the day before a termination takes effect
    lowest_rate: Decimal  # of the terms on the last day
    highest_rate: Decimal
    territory: str | None = None
    terms: tuple[TermsInForce, ...] = ()  # every version of the terms, over its days in force


@dataclass(frozen=True)
class PendingOutcome:
    """An idempotent command's key and outcome; `append_events` adds the positions drawn."""

    actor: str
    idempotency_key: str
    fingerprint: str
    outcome: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SellingDaysClosed:
    """A partner or employee whose event closes selling days (a suspension, a separation), at
    its version after the command; for a partner, its contracts at the versions the closing
    was decided on (every signed contract of the partner)."""

    record_id: UUID
    version: int
    contracts_seen: dict[UUID, int] | None = None


@dataclass(frozen=True)
class ImportLines:
    """The lines of a keyed import booked by one transaction: their numbers in the body and
    a 64-bit digest of each line's bytes."""

    actor: str
    idempotency_key: str
    numbers: list[int]
    digests: list[int]


class InTransaction(Protocol):
    """Work a command does in the transaction of its events: `before` the append (it has no
    transaction id yet, so no reader of the log waits for it), `after` it with the positions
    drawn. Either may raise to write nothing (a DomainError passes through as it is)."""

    def before(self, cursor: Any) -> None: ...

    def after(self, cursor: Any, positions: list[int]) -> None: ...


class ConstraintViolation(IntegrityError):
    """A database constraint refused the write; `constraint` names it."""

    def __init__(self, message: str, constraint: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint


class UnsafeTailingError(NotImplementedError):
    """A library path that would tail the log without a fence: use `EventLog`."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} cannot tail this event log safely: positions commit out of order, so it"
            " would skip events. Tail the log with channel_domain.store.log.EventLog."
        )


class EventRecorder(PostgresApplicationRecorder):
    # How long a stateless read (`select_notifications`) waits at a gap that a running
    # transaction may fill before answering "nothing yet" (it never passes the gap).
    gap_wait_s: float = 5.0

    def __init__(self, datastore: Any, *, events_table_name: str = EVENTS_TABLE,
                 group_commit_max: int = MAX_COMMANDS) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements = []  # the schema belongs to migrations/
        # At most 1 command a group: none is formed, every append writes alone, as before 0039.
        self.group_commit = GroupCommit(self._write_group, max_commands=group_commit_max) \
            if group_commit_max > 1 else None
        self._lock_pool: ConnectionPool | None = None
        self._lock_pool_guard = threading.Lock()

    @staticmethod
    def _append_cursor(conn: Any) -> Any:
        """The connection's own cursor for appends. psycopg keeps a cursor's adapters (which
        dumper each array takes, found by looking at its first element) while the cursor runs
        the same query object again; a new cursor looks every one up afresh. With the unused
        arrays NULL as well, a sale's parameters take 36-42 µs to convert instead of 86-112
        (bench/append_params.py). A pooled connection serves one
        thread at a time, and so does its cursor. It is kept on the connection, not in a map
        beside it: a cursor refers to its connection, so a map would keep every connection the
        pool ever dropped alive."""
        cursor = getattr(conn, "_channel_domain_append_cursor", None)
        if cursor is None or cursor.closed:
            cursor = conn._channel_domain_append_cursor = conn.cursor()
        return cursor

    def insert_events(  # type: ignore[override]
        self,
        stored_events: Sequence[StoredEvent],
        *,
        facts: Sequence[EventFacts] = (),
        outcome: PendingOutcome | None = None,
        contracts_in_force: Sequence[ContractInForce] = (),
        new_personal_keys: dict[UUID, bytes] | None = None,
        erase_personal_keys: Sequence[UUID] = (),
        new_logins: dict[str, UUID] | None = None,
        sellers_checked: dict[UUID, int] | None = None,
        selling_days_closed: SellingDaysClosed | None = None,
        import_lines: ImportLines | None = None,
        in_transaction: InTransaction | None = None,
        **_: Any,
    ) -> Sequence[int]:
        """Append in one round trip (`append_events`, migrations/0002, hashing since 0011,
        groups since 0039). Not retried here: after a lost connection the commit may or may not
        have happened, and only the idempotency key can tell a repeat from a new command.

        An append that carries only events, an outcome and the sellers it checked (a sale, a
        return, most commands) joins this process's group commit (`group_commit`): it may
        commit in one transaction with other commands' appends, each with its own checks; a
        refused group is written again one append at a time, so what the database refuses
        refuses this append alone. The rest (the registry, personal-data keys, logins, a
        closing of selling days, an import's lines, work in the transaction) write alone.

        Returns the positions drawn. They are unique, and increasing within this call's
        transaction, but NOT in commit order across transactions: another writer's lower
        position may commit after these, or never. No table lock serialises writers, as the
        stock recorder's does. Readers must tail with `EventLog` (or `select_notifications`,
        which goes through it), never by "position > the last one I saw" alone."""
        if not stored_events:
            return []
        if len(facts) != len(stored_events):
            raise ValueError("every stored event needs its facts (recorded_at, effective_on)")
        append = Append(stored_events, facts, outcome, sellers_checked or {}, contracts_in_force,
                        new_personal_keys or {}, erase_personal_keys, selling_days_closed, import_lines)
        if self.group_commit is not None and append.joins_groups and not new_logins and in_transaction is None:
            return self.group_commit.append(append, len(stored_events))
        return self._write([append], new_logins, in_transaction)

    def _write_group(self, group: Sequence[Pending]) -> None:
        appends = [pending.request for pending in group]
        try:
            positions = self._write(appends)
        except Exception as error:  # noqa: BLE001 - each pending append gets it, or its own below
            if len(group) == 1:
                group[0].answer(error=error)
            elif _common_to_the_group(error):
                _answer_each(group, error)
            else:
                if not isinstance(error, PersistenceError):  # not the database's refusal: a bug
                    logger.exception("a group of appends failed before the database answered; writing each alone")
                if self.group_commit is not None:
                    self.group_commit.count_refused()
                self._write_each_alone(group)
            return
        if len(positions) != sum(pending.events for pending in group):
            # Committed, but which positions are whose cannot be told: never guess.
            _answer_each(group, OperationalError(
                f"append_events returned {len(positions)} positions for {sum(p.events for p in group)} events"))
            return
        drawn = iter(positions)
        for pending in group:
            pending.answer(positions=[next(drawn) for _ in range(pending.events)])

    def _write_each_alone(self, group: Sequence[Pending]) -> None:
        """A group the database refused wrote nothing: each append again in a transaction of its
        own, answered as soon as it is written, so that what refused one refuses it alone. When
        the database goes away meanwhile, the rest hear so at once."""
        for index, pending in enumerate(group):
            try:
                pending.answer(positions=self._write([pending.request]))
            except Exception as error:  # noqa: BLE001 - the append's own answer
                pending.answer(error=error)
                if _common_to_the_group(error):
                    _answer_each(group[index + 1:], error)
                    return

    def _write(self, appends: Sequence[Append], new_logins: dict[str, UUID] | None = None,
               in_transaction: InTransaction | None = None) -> list[int]:
        if (new_logins or in_transaction) and len(appends) > 1:
            raise ValueError("a login or work in the transaction writes alone, never in a group")
        try:
            with self.datastore.get_connection() as conn, (
                # A hire with a login writes one more statement, in the transaction of its events,
                # and a step in the transaction works around the append; every other append
                # (a group's too) stays one autocommitted round trip.
                conn.transaction() if new_logins or in_transaction else nullcontext()
            ), nullcontext(self._append_cursor(conn)) as curs:
                if in_transaction is not None:
                    in_transaction.before(curs)
                if new_logins:
                    curs.executemany("INSERT INTO employee_logins (login, employee_id) VALUES (%s, %s)",
                                     list(new_logins.items()))
                curs.execute(_APPEND_EVENTS, _append_parameters(appends), prepare=True)
                positions = [row["position"] for row in curs.fetchall()]
                if in_transaction is not None:
                    in_transaction.after(curs, positions)
        except IntegrityError as error:
            diagnostics = getattr(error.__cause__, "diag", None)
            raise ConstraintViolation(str(error), getattr(diagnostics, "constraint_name", None)) from error
        return positions

    # Reading ---------------------------------------------------------------------------

    select_events = read_again_after_a_dead_connection(PostgresApplicationRecorder.select_events.__wrapped__)

    @read_again_after_a_dead_connection
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The library's positional read, made safe to resume from: it goes through
        `EventLog`'s fence, so it returns only positions that no running transaction can
        still precede. At a gap right after `start` it waits for the transactions that could
        fill it (see `log.read_settled`); it may return fewer than `limit` while more exist.
        (A plain `position > start` read skips late commits.)"""
        # log.py builds on this module; imported here, where it is used, to avoid the cycle.
        from channel_domain.store.log import read_settled

        after = 0 if start is None else (start - 1 if inclusive_of_start else start)
        return read_settled(self, after=max(after, 0), limit=limit, stop=stop, topics=topics,
                            wait_s=self.gap_wait_s)

    @read_again_after_a_dead_connection
    def max_notification_id(self) -> int | None:
        """The highest position visible now. Lower positions may still commit: a high-water
        mark for lag and a target to read up to with `EventLog`, never a safe checkpoint."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(f"SELECT max(position) AS max FROM {EVENTS_TABLE}")  # noqa: S608
            row = curs.fetchone()
            return None if row is None else row["max"]

    @contextmanager
    def key_in_flight(self, actor: str, idempotency_key: str) -> Iterator[bool]:
        """Hold a session advisory lock on an idempotency key while its command runs;
        yields False at once if another session holds it.

        The lock's session comes from a pool of its own: a command holding it needs a
        connection of the main pool too, and were both from one pool, as many keyed commands
        as the pool has connections would each hold one and wait for a second, for ever."""
        lock_key = idempotency_lock_key("%(actor)s::text", "%(key)s::text")
        given = {"actor": actor, "key": idempotency_key}
        with self._lock_sessions().connection() as conn, conn.cursor() as curs:
            curs.execute(f"SELECT pg_try_advisory_lock({lock_key}) AS got", given)
            row = curs.fetchone()
            acquired = bool(row and row["got"])
            try:
                yield acquired
            finally:
                if acquired:
                    curs.execute(f"SELECT pg_advisory_unlock({lock_key})", given)

    def _lock_sessions(self) -> ConnectionPool:
        with self._lock_pool_guard:
            if self._lock_pool is None:
                main = self.datastore.pool
                self._lock_pool = ConnectionPool(
                    main.conninfo, kwargs={**main.kwargs, "autocommit": True}, connection_class=main.connection_class,
                    min_size=1, max_size=LOCK_SESSIONS, timeout=main.timeout, open=True,
                )
            return self._lock_pool

    def replace_broken_connections(self) -> None:
        """After the database came back: test every idle pooled connection now and replace the
        dead ones, instead of letting each fail one request first."""
        self.datastore.pool.check()
        with self._lock_pool_guard:
            if self._lock_pool is not None:
                self._lock_pool.check()

    def close(self) -> None:
        with self._lock_pool_guard:
            if self._lock_pool is not None:
                self._lock_pool.close()
                self._lock_pool = None

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Any:
        # The library's subscription waits for a NOTIFY this recorder never sends (see the
        # module docstring), and would read past late commits between them.
        raise UnsafeTailingError("ApplicationRecorder.subscribe()")

    def version_as_of(self, originator_id: UUID, moment: datetime) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT max(originator_version) AS version FROM events"
                " WHERE originator_id = %s AND recorded_at <= %s",
                (originator_id, moment),
                prepare=True,
            )
            row = curs.fetchone()
            return None if row is None else row["version"]

    def latest_version(self, originator_id: UUID) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT max(originator_version) AS version FROM events WHERE originator_id = %s",
                (originator_id,),
                prepare=True,
            )
            row = curs.fetchone()
            return None if row is None else row["version"]

    def stream_rows(self, originator_id: UUID, after_version: int = 0, limit: int | None = None) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT position, originator_version, topic, state, recorded_at, effective_on"
                " FROM events WHERE originator_id = %s AND originator_version > %s"
                " ORDER BY originator_version LIMIT %s",
                (originator_id, after_version, limit),
                prepare=True,
            )
            return curs.fetchall()

    def command_outcome(self, actor: str, idempotency_key: str) -> tuple[str, dict[str, Any] | None] | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT fingerprint, outcome FROM command_outcomes"
                " WHERE actor = %s AND idempotency_key = %s",
                (actor, idempotency_key),
                prepare=True,
            )
            row = curs.fetchone()
            return None if row is None else (row["fingerprint"], row["outcome"])

    def employee_of_login(self, login: str) -> UUID | None:
        """The employee record whose tokens carry this actor name, if any."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT employee_id FROM employee_logins WHERE login = %s", (login,), prepare=True)
            row = curs.fetchone()
            return None if row is None else row["employee_id"]
    def store_outcome(self, actor: str, idempotency_key: str, fingerprint: str, outcome: dict[str, Any]) -> None:
        """The outcome of a keyed command that writes in many transactions (an import), kept
        once all of them are done; the record of its lines booked so far goes with it."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(
                "INSERT INTO command_outcomes (actor, idempotency_key, fingerprint, outcome)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (actor, idempotency_key) DO NOTHING",
                (actor, idempotency_key, fingerprint, Jsonb(outcome)),
            )
            curs.execute("DELETE FROM keyed_import_lines WHERE actor = %s AND idempotency_key = %s",
                         (actor, idempotency_key))

    def imported_lines(self, actor: str, idempotency_key: str) -> dict[int, int]:
        """The lines (number: digest) that earlier runs of a keyed import booked."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT line, digest FROM keyed_import_lines, unnest(lines, digests) AS l(line, digest)"
                " WHERE actor = %s AND idempotency_key = %s",
                (actor, idempotency_key),
            )
            return {row["line"]: row["digest"] for row in curs.fetchall()}

    def latest_sale_credited_to(self, employee_id: UUID) -> date | None:
        """The latest sale date credited to an employee, read from the log itself (an
        employment's end is rare; it must not be dated before a credit already taken)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT max(effective_on) AS latest FROM events WHERE topic = %s"
                " AND convert_from(state, 'UTF8')::jsonb -> 'employee_id' ->> '_data_' = %s",
                (SALE_RECORDED_TOPIC, employee_id.hex),
            )
            return curs.fetchone()["latest"]

    def contracts_of_partner(self, partner_id: UUID) -> list[UUID]:
        """The partner's signed contracts (every contract is registered here when signed)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT contract_id FROM contracts_in_force WHERE partner_id = %s ORDER BY lower(during)",
                (partner_id,),
                prepare=True,
            )
            return [row["contract_id"] for row in curs.fetchall()]

    def lowest_rate_in_force(self, partner_kind: str, starts_on: date, ends_on: date) -> Decimal | None:
        """The lowest rate of any terms of a `partner_kind` contract in force on any of these days."""
        if ends_on < starts_on:
            return None
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT min(lowest_rate) AS rate FROM contract_terms_in_force"
                " WHERE partner_kind = %s AND during && daterange(%s, %s, '[]')",
                (partner_kind, starts_on, ends_on),
                prepare=True,
            )
            row = curs.fetchone()
            return None if row is None else row["rate"]


# Parameters go in PostgreSQL's binary format (%b): dumping arrays of a hundred events as text
# (bytea as hex, every value quoted) took nine times as long, a sixth of a bulk import.
_APPEND_EVENTS = """
    SELECT position FROM append_events(
        %b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::timestamptz[], %b::date[],
        %b::text[], %b::text[], %b::text[], %b::jsonb[], %b::int[], %b::int[],
        %b::uuid[], %b::uuid[], %b::text[], %b::daterange[], %b::numeric[], %b::numeric[], %b::text[],
        %b::uuid[], %b::text[], %b::daterange[], %b::numeric[], %b::numeric[],
        %b::uuid[], %b::bytea[], %b::uuid[],
        %b::uuid[], %b::bigint[], %b::uuid, %b::bigint, %b::uuid[], %b::bigint[],
        %b::text, %b::text, %b::int[], %b::bigint[]
    ) AS position
"""

# A statement cancelled (statement_timeout, or by an operator) or a lock not granted in time
# (lock_timeout): each append alone would wait as long again.
_TIMED_OUT = ("57014", "55P03")


def _common_to_the_group(error: BaseException) -> bool:
    """A failure that is no one command's doing: no connection, a lost one, or a timeout. The
    group is answered with it at once, not written again one command at a time."""
    if means_database_away(error) or means_database_busy(error):
        return True
    return getattr(_root(error), "sqlstate", None) in _TIMED_OUT


def _answer_each(group: Sequence[Pending], error: Exception) -> None:
    """The same failure for every append of a group, each as an exception of its own."""
    for pending in group:
        pending.answer(error=exception_copy(error))


def exception_copy(error: Exception) -> Exception:
    """The same failure as an exception of its own, to raise in another thread: raised in many
    threads, one shared instance would gather every thread's frames in its traceback."""
    try:
        own = copy.copy(error)
    except TypeError:  # an exception whose arguments do not rebuild it: shared, then
        return error
    own.__cause__, own.__context__ = error.__cause__, error.__context__
    return own.with_traceback(None)


@dataclass(frozen=True)
class Append:
    """One command's append: its events and what commits with them (see `insert_events`)."""

    events: Sequence[StoredEvent]
    facts: Sequence[EventFacts]
    outcome: PendingOutcome | None
    sellers_checked: dict[UUID, int]
    contracts_in_force: Sequence[ContractInForce] = ()
    new_personal_keys: dict[UUID, bytes] = field(default_factory=dict)
    erase_personal_keys: Sequence[UUID] = ()
    selling_days_closed: SellingDaysClosed | None = None
    import_lines: ImportLines | None = None

    @property
    def joins_groups(self) -> bool:
        """Whether it may share a transaction with other commands' appends: the registry's
        writers take turns under a lock, a closing waits for the sales in flight and an import
        keys its lines by one transaction, so these write alone."""
        return not (self.contracts_in_force or self.new_personal_keys or self.erase_personal_keys
                    or self.selling_days_closed or self.import_lines)


def _append_parameters(appends: Sequence[Append]) -> tuple[Any, ...]:
    """`append_events`' parameters for the appends of one transaction, their events in turn.
    Only an append alone carries a closing of selling days or an import's lines."""
    if len(appends) > 1 and not all(append.joins_groups for append in appends):
        # Its closing, registry rows, keys or import lines would be another's, or lost.
        raise ValueError("an append that must write alone was put in a group")
    events = [event for append in appends for event in append.events]
    facts = [fact for append in appends for fact in append.facts]
    outcomes, firsts, lasts, last = [], [], [], 0
    for append in appends:
        if append.outcome is not None:
            outcomes.append(append.outcome)
            firsts.append(last + 1)
            lasts.append(last + len(append.events))
        last += len(append.events)
    registry = [_contract_row(entry) for append in appends for entry in append.contracts_in_force]
    terms = [_terms_row(entry, version) for append in appends for entry in append.contracts_in_force
             for version in entry.terms]
    checked = [(seller, version) for append in appends for seller, version in append.sellers_checked.items()]
    new_keys = [(subject, key) for append in appends for subject, key in append.new_personal_keys.items()]
    alone = appends[0]
    closed, imported = alone.selling_days_closed, alone.import_lines
    seen = None if closed is None or closed.contracts_seen is None else closed.contracts_seen
    return (
        [e.originator_id for e in events],
        [e.originator_version for e in events],
        [e.topic for e in events],
        [e.state for e in events],
        [f.recorded_at for f in facts],
        [f.effective_on for f in facts],
        _or_null([o.actor for o in outcomes]),
        _or_null([o.idempotency_key for o in outcomes]),
        _or_null([o.fingerprint for o in outcomes]),
        _or_null([Jsonb(o.outcome) for o in outcomes]),
        _or_null(firsts),
        _or_null(lasts),
        *(_column_or_null(registry, i) for i in range(7)),
        *(_column_or_null(terms, i) for i in range(5)),
        _column_or_null(new_keys, 0),
        _column_or_null(new_keys, 1),
        _or_null([subject for append in appends for subject in append.erase_personal_keys]),
        _column_or_null(checked, 0),
        _column_or_null(checked, 1),
        closed.record_id if closed else None,
        closed.version if closed else None,
        None if seen is None else list(seen.keys()),
        None if seen is None else list(seen.values()),
        imported.actor if imported else None,
        imported.idempotency_key if imported else None,
        imported.numbers if imported else None,
        imported.digests if imported else None,
    )


def _or_null(values: list[Any]) -> list[Any] | None:
    # `append_events` guards every optional array with cardinality(…) > 0, which NULL fails
    # as an empty array does; a NULL costs psycopg nothing to dump, where an empty list is
    # typed and upgraded like a full one, and a sale leaves 17 of its arrays empty.
    return values or None


def _column_or_null(rows: list[tuple[Any, ...]], index: int) -> list[Any] | None:
    return [row[index] for row in rows] if rows else None


def _contract_row(entry: ContractInForce) -> tuple[Any, ...]:
    return (
        entry.contract_id,
        entry.partner_id,
        entry.partner_kind,
        # A contract terminated on its first day was never in force: [start, start) is empty,
        # and dated, so it dumps beside the other contracts' ranges in one binary array
        # (a bare Range(empty=True) there has no date type and breaks the array).
        Range(entry.starts_on, entry.last_day, "[]") if entry.last_day >= entry.starts_on
        else Range(entry.starts_on, entry.starts_on, "[)"),
        entry.lowest_rate,
        entry.highest_rate,
        entry.territory,
    )


def _terms_row(entry: ContractInForce, version: TermsInForce) -> tuple[Any, ...]:
    return (
        entry.contract_id,
        entry.partner_kind,
        Range(version.starts_on, version.last_day, "[]"),
        version.lowest_rate,
        version.highest_rate,
    )


def _notification(row: DictRow) -> Notification:
    return Notification(
        id=row["position"],
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )


class SnapshotRecorder(PostgresAggregateRecorder):
    """Snapshots, read with the events' policy; written once, not retried: a snapshot is only
    a cache, and the command it follows has committed and waits to answer."""

    select_events = read_again_after_a_dead_connection(PostgresAggregateRecorder.select_events.__wrapped__)
    insert_events = PostgresAggregateRecorder.insert_events.__wrapped__


# TCP settings for every pooled connection, unless the connection string sets its own: a silent
# peer is given up within about idle + interval x count seconds while the connection waits, and
# within tcp_user_timeout (ms) when what was sent is never acknowledged (no keepalive probes go
# out while sent data is unacknowledged). Neither touches a long query: the server's kernel
# acknowledges and answers the probes whatever the query is doing.
TCP_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
                  "tcp_user_timeout": 30_000}
# The most commands whose appends commit in one transaction (store/group_commit.py); 1: none share.
GROUP_COMMIT_MAX_COMMANDS = "GROUP_COMMIT_MAX_COMMANDS"
POSTGRES_CONNINFO = "POSTGRES_CONNINFO"  # the whole connection string (database.library_environment)
CONNINFO_PIECES = {
    "dbname": PostgresFactory.POSTGRES_DBNAME, "host": PostgresFactory.POSTGRES_HOST,
    "port": PostgresFactory.POSTGRES_PORT, "user": PostgresFactory.POSTGRES_USER,
    "password": PostgresFactory.POSTGRES_PASSWORD,
}


class Factory(PostgresFactory):
    """Wires the application to `events` and `snapshots`, as created by migrations/."""

    def __init__(self, env: Any) -> None:
        env = env if isinstance(env, Environment) else Environment(env=env)
        conninfo = env.get(POSTGRES_CONNINFO)
        if conninfo is not None:
            # The library will not start without these pieces; the pool ignores them below.
            env = Environment(env.name, {**dict.fromkeys(CONNINFO_PIECES.values(), ""), **env})
        super().__init__(env)
        pool = self.datastore.pool
        if conninfo is not None:
            # The whole connection string, so that every libpq parameter in it (sslmode,
            # sslrootcert, application_name, a socket directory as host …) reaches the server.
            pool.conninfo = conninfo
            for piece in CONNINFO_PIECES:
                pool.kwargs.pop(piece, None)
        # The SQL that reads a recorded time as a day (audit findings, migrations/0013) reads
        # it on the company's calendar, as Python does: every session carries the zone, added
        # to any `options` the connection string sets, which a keyword would otherwise replace.
        given = conninfo_to_dict(pool.conninfo)
        configured = given.get("options")
        zone = f"-c channel_domain.time_zone={time_zone().key}"
        pool.kwargs["options"] = f"{configured} {zone}" if configured else zone
        # A server gone without a word (a failover, a cut network) is noticed in seconds, not the
        # kernel's quarter of an hour: a group's commands all wait on one connection.
        for setting, value in TCP_KEEPALIVES.items():
            if setting not in given:
                pool.kwargs[setting] = value

    def application_recorder(self) -> ApplicationRecorder:
        given = str(self.env.get(GROUP_COMMIT_MAX_COMMANDS) or MAX_COMMANDS).strip()
        return EventRecorder(self.datastore, group_commit_max=whole_number(GROUP_COMMIT_MAX_COMMANDS, given, 1))

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        table = SNAPSHOTS_TABLE if purpose == "snapshots" else EVENTS_TABLE
        return SnapshotRecorder(self.datastore, events_table_name=table)
