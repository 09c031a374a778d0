"""Commission statements (domain.md §6): a ledger of lines per partner and month.

Sales and returns are priced by `channel_domain.commission`; broker deals at the broker's own
rate; payouts and housing subsidies are kept step by step, consignees' remittances as received.
A line is never updated, so a statement as known at a past time is simply the lines recorded by
then — `statement(..., as_known_at=...)`.

Closed months (`CommissionPeriod.Closed`) take no new lines. Every month up to the latest one
closed is closed, and each line is routed as its event comes, in position order: one that
would land in a closed month lands, like any adjustment, in the month its event was recorded,
or the first open month after it when that one is closed too (api.md) — a sale, return or deal
as an adjustment carrying it (`moved_kind`, with its order, date, amount,
rate, commission and fee rate), an adjustment as itself — naming in `corrects_period` the month
it corrects. An upheld dispute (`CommissionDispute.Resolved`) books its amount the same way,
from the month its resolution was recorded in. A rebuild meets the events in the same order
and books the same ledger.

Each contract's pricing state is rebuilt from its own lines when first needed and then kept
in memory between batches (`reset()` drops it whenever the runner cannot vouch that the
tables still hold exactly what this object wrote).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import Notification

from channel_domain.commission import ZERO, ContractCommissions, Entry, Line, book_contract_event, cents
from channel_domain.commission_dispute import CommissionDispute, DisputedLine
from channel_domain.commission_period import CommissionPeriod, LedgerFacts, next_month
from channel_domain.company_time import recorded_month
from channel_domain.contract import Contract
from channel_domain.partner import Partner
from channel_domain.store.copying import copy_rows
from channel_domain.values import CommissionTerms, month_of
from projections.audit import event_id

PAYOUT_STEPS = {
    Partner.PayoutPrepared: "prepared",  # type: ignore[attr-defined]
    Partner.PayoutVerified: "verified",  # type: ignore[attr-defined]
    Partner.PayoutApproved: "approved",  # type: ignore[attr-defined]
    Partner.PayoutPaid: "paid",  # type: ignore[attr-defined]
}
SUBSIDY_STEPS = {
    Partner.HousingSubsidyGranted: "prepared",  # granted in one step before issue 13: read as prepared
    Partner.HousingSubsidyPrepared: "prepared",  # type: ignore[attr-defined]
    Partner.HousingSubsidyVerified: "verified",  # type: ignore[attr-defined]
    Partner.HousingSubsidyApproved: "approved",  # type: ignore[attr-defined]
    Partner.HousingSubsidyPaid: "paid",  # type: ignore[attr-defined]
}
BOOKED_EVENTS = (Contract.SaleRecorded, Contract.ReturnRecorded, Contract.Amended)  # type: ignore[attr-defined]
LINE_COLUMNS = (
    "position", "line_no", "event_id", "partner_id", "contract_id", "period", "kind", "order_id",
    "business_date", "amount", "rate", "commission", "fee_rate", "corrects_period", "recorded_at",
    "moved_kind", "dispute_id",
)


class Commissions:
    name = "commissions"
    weight = 1.7  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = ("commission_partners", "commission_contracts", "commission_terms", "commission_lines",
              "commission_payouts", "commission_remittances", "commission_housing_subsidies",
              "commission_periods", "commission_disputes", "commission_month_totals")
    cached_contracts = 256

    def __init__(self) -> None:
        self._books: OrderedDict[UUID, ContractCommissions] = OrderedDict()
        self._contracts: dict[UUID, tuple[UUID, Decimal | None]] = {}  # contract -> (partner, fee rate)
        self._broker_rates: dict[UUID, Decimal | None] = {}
        self._closed: tuple[str | None] | None = None  # (the latest month closed,), once read

    def reset(self) -> None:
        self._books.clear()
        self._contracts.clear()
        self._broker_rates.clear()
        self._closed = None

    def _closed_through(self, cursor: Any) -> str | None:
        if self._closed is None:
            cursor.execute("SELECT max(period) AS period FROM commission_periods")
            self._closed = (cursor.fetchone()["period"],)
        return self._closed[0]

    def _open_month(self, cursor: Any, period: str) -> str:
        """Where a line of `period` lands: itself when open, else the first open month after it."""
        through = self._closed_through(cursor)
        return period if through is None or period > through else next_month(through)

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        lines: list[tuple] = []
        for notification, event in events:
            source = (notification.id, event_id(notification.originator_id, notification.originator_version))
            recorded_at = event.timestamp
            booked: list[Line] = []
            contract_id: UUID | None = None
            if isinstance(event, BOOKED_EVENTS):
                contract_id = event.originator_id
                if isinstance(event, Contract.Amended):
                    self._insert_terms(cursor, source, contract_id, event.effective_on, event.commission, recorded_at)
                booked = book_contract_event(self._book(cursor, contract_id), event, notification.id)
            elif isinstance(event, Contract.Drafted):  # type: ignore[attr-defined]
                self._contracts[event.originator_id] = (event.partner_id, event.fee_rate)
                cursor.execute(
                    "INSERT INTO commission_contracts (contract_id, partner_id, fee_rate, position, event_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (event.originator_id, event.partner_id, event.fee_rate, *source),
                )
                self._insert_terms(cursor, source, event.originator_id, None, event.commission, recorded_at)
            elif isinstance(event, Partner.DealClosed):  # type: ignore[attr-defined]
                rate = self._broker_rate(cursor, event.originator_id)
                position, line_event = source
                deal = Line("deal", month_of(event.closed_on), event.deal_id, event.closed_on, event.amount, rate,
                            cents(event.amount * rate))
                lines.append(self._row(cursor, source, 1, event.originator_id, None, deal, None, recorded_at))
            elif isinstance(event, CommissionPeriod.Closed):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO commission_periods (period, closes_after, position, event_id, closed_by, closed_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (event.period, event.closes_after, source[0], source[1], event.closed_by, recorded_at),
                )
                self._closed = (max(event.period, self._closed_through(cursor) or event.period),)
            elif isinstance(event, CommissionDispute.Raised):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO commission_disputes (dispute_id, partner_id, period, line_position, line_no,"
                    " line_event_id, contract_id, reason, raised_by, raised_at, position, event_id, status)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'open')",
                    (event.originator_id, event.partner_id, event.period, event.line_position, event.line_no,
                     event.line_event_id, event.contract_id, event.reason, event.raised_by, recorded_at, *source),
                )
            elif isinstance(event, CommissionDispute.Resolved):  # type: ignore[attr-defined]
                booked_in = self._open_month(cursor, recorded_month(recorded_at)) if event.amount is not None else None
                cursor.execute(
                    "UPDATE commission_disputes SET status = %s, resolved_by = %s, resolved_at = %s, note = %s,"
                    " amount = %s, resolved_position = %s, resolved_event_id = %s, adjustment_period = %s"
                    " WHERE dispute_id = %s RETURNING partner_id, period, contract_id",
                    (event.outcome, event.resolved_by, recorded_at, event.note, event.amount, *source, booked_in,
                     event.originator_id),
                )
                disputed = cursor.fetchone()
                if booked_in is not None:
                    adjustment = Line("adjustment", booked_in, None, None, ZERO, None, event.amount,
                                      disputed["period"])
                    lines.append(self._row(cursor, source, 1, disputed["partner_id"], disputed["contract_id"],
                                           adjustment, None, recorded_at, dispute_id=event.originator_id))
            elif isinstance(event, Partner.Applied):  # type: ignore[attr-defined]
                self._broker_rates[event.originator_id] = event.commission_rate
                cursor.execute(
                    "INSERT INTO commission_partners (partner_id, kind, commission_rate, position, event_id)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (event.originator_id, event.kind, event.commission_rate, *source),
                )
            elif type(event) in PAYOUT_STEPS:
                step = PAYOUT_STEPS[type(event)]
                amount = total_due = None
                if step == "prepared":
                    _copy_lines(cursor, lines)  # the statement as it stands when the payout is prepared
                    lines.clear()
                    amount = event.amount
                    total_due = statement_totals(cursor, event.originator_id, event.period)["total_due"]
                cursor.execute(
                    "INSERT INTO commission_payouts"
                    " (position, event_id, partner_id, period, step, amount, total_due, recorded_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (*source, event.originator_id, event.period, step, amount, total_due, recorded_at),
                )
            elif type(event) in SUBSIDY_STEPS:
                cursor.execute(
                    "INSERT INTO commission_housing_subsidies"
                    " (position, event_id, partner_id, period, step, amount, account, recorded_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (*source, event.originator_id, event.period, SUBSIDY_STEPS[type(event)],
                     getattr(event, "amount", None), getattr(event, "account", None), recorded_at),
                )
            elif isinstance(event, Partner.RemittanceReceived):  # type: ignore[attr-defined]
                cursor.execute(
                    "INSERT INTO commission_remittances"
                    " (position, event_id, partner_id, period, amount, received_on, recorded_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (*source, event.originator_id, event.period, event.amount, event.received_on, recorded_at),
                )
            if booked and contract_id is not None:
                partner_id, fee_rate = self._contract(cursor, contract_id)
                for line_no, line in enumerate(booked, start=1):
                    lines.append(self._row(cursor, source, line_no, partner_id, contract_id, line,
                                           fee_rate if line.kind != "adjustment" else None, recorded_at))
        _copy_lines(cursor, lines)
        while len(self._books) > self.cached_contracts:
            self._books.popitem(last=False)

    def _row(self, cursor: Any, source: tuple, line_no: int, partner_id: UUID, contract_id: UUID | None, line: Line,
             fee_rate: Decimal | None, recorded_at: datetime, dispute_id: UUID | None = None) -> tuple:
        """A line as written, routed: one that would land in a closed month is an adjustment,
        booked like every adjustment in the month it was recorded, or the first open month after
        it when that one is closed too (api.md) — a sale, return or deal as an adjustment that
        carries it. Not the month after the last close: that month may be long over and paid."""
        period, kind, corrects, moved = line.period, line.kind, line.corrects_period, None
        if self._open_month(cursor, period) != period:
            if kind != "adjustment":
                kind, corrects, moved = "adjustment", period, line.kind
            period = self._open_month(cursor, max(period, recorded_month(recorded_at)))
        return (source[0], line_no, source[1], partner_id, contract_id, period, kind, line.order_id,
                line.business_date, line.amount, line.rate, line.commission, fee_rate, corrects, recorded_at,
                moved, dispute_id)

    # State, loaded from the read model's own tables when first needed -------------------

    def _insert_terms(self, cursor: Any, source: tuple, contract_id: UUID, effective_on: date | None,
                      terms: dict, recorded_at: datetime) -> None:
        cursor.execute(
            "INSERT INTO commission_terms (position, event_id, contract_id, effective_on, terms, recorded_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (*source, contract_id, effective_on, json.dumps(terms), recorded_at),
        )

    def _contract(self, cursor: Any, contract_id: UUID) -> tuple[UUID, Decimal | None]:
        if contract_id not in self._contracts:
            cursor.execute("SELECT partner_id, fee_rate FROM commission_contracts WHERE contract_id = %s",
                           (contract_id,))
            row = cursor.fetchone()
            self._contracts[contract_id] = (row["partner_id"], row["fee_rate"])
        return self._contracts[contract_id]

    def _broker_rate(self, cursor: Any, partner_id: UUID) -> Decimal:
        if partner_id not in self._broker_rates:
            cursor.execute("SELECT commission_rate FROM commission_partners WHERE partner_id = %s", (partner_id,))
            self._broker_rates[partner_id] = cursor.fetchone()["commission_rate"]
        return self._broker_rates[partner_id] or ZERO

    def _book(self, cursor: Any, contract_id: UUID) -> ContractCommissions:
        book = self._books.get(contract_id)
        if book is not None:
            self._books.move_to_end(contract_id)
            return book
        book = self._load(cursor, contract_id)
        self._books[contract_id] = book
        return book

    @staticmethod
    def _load(cursor: Any, contract_id: UUID) -> ContractCommissions:
        # Lines not yet copied belong to contracts in memory (none is dropped mid-batch), so
        # the tables hold everything this one has booked.
        cursor.execute("SELECT effective_on, terms FROM commission_terms WHERE contract_id = %s ORDER BY position",
                       (contract_id,))
        terms = [(row["effective_on"], CommissionTerms.parse(row["terms"])) for row in cursor.fetchall()]
        book = ContractCommissions(terms[0][1])
        # A sale or return of a closed month is an adjustment carrying it (moved_kind); an
        # upheld dispute's adjustment is no pricing of the contract's (dispute_id).
        cursor.execute(
            "SELECT position, coalesce(moved_kind, kind) AS kind, order_id, business_date,"
            " abs(sum(amount)) AS amount FROM commission_lines"
            " WHERE contract_id = %s AND (kind IN ('sale', 'return') OR moved_kind IN ('sale', 'return'))"
            " GROUP BY position, 2, order_id, business_date",
            (contract_id,),
        )
        entries = [Entry(row["kind"], row["order_id"], row["business_date"], row["position"], row["amount"])
                   for row in cursor.fetchall()]
        cursor.execute(
            "SELECT coalesce(corrects_period, period) AS month, sum(commission) AS booked FROM commission_lines"
            " WHERE contract_id = %s AND dispute_id IS NULL GROUP BY 1",
            (contract_id,),
        )
        booked = {row["month"]: row["booked"] for row in cursor.fetchall()}
        book.restore(entries, terms[1:], booked)
        return book


def _copy_lines(cursor: Any, lines: list[tuple]) -> None:
    if not lines:
        return
    copy_rows(cursor, "commission_lines", LINE_COLUMNS, lines)
    _add_to_month_totals(cursor, lines[0][0], lines[-1][0])


def _add_to_month_totals(cursor: Any, first: int, last: int) -> None:
    """Add the lines at positions first..last (the ones just copied, all of them: lines come in
    position order and each copy follows the last) to their months' sums, summed by PostgreSQL
    so that every sum has the scale a sum over the lines has. A null (no line of that sort)
    stays null until one comes. `lines` and `last_position` say which lines the month holds
    (statements keep a month's lines as built while these two stay as they were)."""
    cursor.execute(
        "INSERT INTO commission_month_totals AS t"
        " (partner_id, period, sales, returns, line_commission, adjustments, adjusted_sales, fees, lines,"
        "  last_position)"
        " SELECT partner_id, period,"
        "  sum(amount) FILTER (WHERE kind IN ('sale', 'deal')), sum(amount) FILTER (WHERE kind = 'return'),"
        "  sum(commission) FILTER (WHERE kind <> 'adjustment'), sum(commission) FILTER (WHERE kind = 'adjustment'),"
        "  sum(amount) FILTER (WHERE kind = 'adjustment'), sum(amount * fee_rate), count(*), max(position)"
        " FROM commission_lines WHERE position BETWEEN %s AND %s GROUP BY partner_id, period"
        " ON CONFLICT (partner_id, period) DO UPDATE SET"
        "  sales = coalesce(t.sales + excluded.sales, t.sales, excluded.sales),"
        "  returns = coalesce(t.returns + excluded.returns, t.returns, excluded.returns),"
        "  line_commission = coalesce(t.line_commission + excluded.line_commission, t.line_commission,"
        "   excluded.line_commission),"
        "  adjustments = coalesce(t.adjustments + excluded.adjustments, t.adjustments, excluded.adjustments),"
        "  adjusted_sales = coalesce(t.adjusted_sales + excluded.adjusted_sales, t.adjusted_sales,"
        "   excluded.adjusted_sales),"
        "  fees = coalesce(t.fees + excluded.fees, t.fees, excluded.fees),"
        "  lines = t.lines + excluded.lines,"
        "  last_position = greatest(t.last_position, excluded.last_position)",
        (first, last),
    )


# Reading statements -----------------------------------------------------------------------

def _known(as_known_at: datetime | None, column: str = "recorded_at") -> str:
    return "" if as_known_at is None else f" AND {column} <= %(known_at)s"


_EMPTY_MONTH = {"gross_sales": ZERO, "returns": ZERO, "commission": ZERO, "adjustments": ZERO, "fees": ZERO,
                "adjusted_sales": ZERO}
_KEYS = "(partner_id, period) IN (SELECT * FROM unnest(%(key_partners)s::uuid[], %(key_periods)s::text[]))"


def statements(cursor: Any, keys: Sequence[tuple[UUID, str]],
               as_known_at: datetime | None = None) -> dict[tuple[UUID, str], dict[str, Any]]:
    """The statements of many (partner, month) keys, without their lines, in four queries
    whatever their number (a page of 1 000 costs what a page of 1 does in round trips); a
    partner the read model does not know has none.

    A consignee's month settles once and carries nothing (domain.md §6): S = proceeds +
    adjusted_sales − commission − fees − adjustments is remitted by the consignee when S ≥ 0
    and paid by the company (`total_due`) when below; `adjusted_sales` is the proceeds of
    sales and returns of closed months carried into this one. Other partners carry a negative
    balance into the months after it.

    As they stand now, the months' sums are `commission_month_totals`' (a row a month, kept by
    the projection with the lines); as known at a past time, the lines recorded by then."""
    return _statements(cursor, keys, as_known_at)[0]


def _statements(cursor: Any, keys: Sequence[tuple[UUID, str]], as_known_at: datetime | None
                ) -> tuple[dict[tuple[UUID, str], dict[str, Any]], dict[tuple[UUID, str], MonthVersion]]:
    """`statements`, and with `as_known_at` None the version of each month with lines
    (`_month_version`)."""
    if not keys:
        return {}, {}
    partners = sorted({partner for partner, _ in keys})
    params = {
        "partners": partners, "until": max(period for _, period in keys), "known_at": as_known_at,
        "key_partners": [partner for partner, _ in keys], "key_periods": [period for _, period in keys],
    }
    cursor.execute(
        "SELECT partner_id, kind, (SELECT max(period) FROM commission_periods WHERE true"
        + _known(as_known_at, "closed_at") + ") AS closed_through"
        " FROM commission_partners WHERE partner_id = ANY(%(partners)s)",
        params,
    )
    found_partners = cursor.fetchall()
    kinds = {row["partner_id"]: row["kind"] for row in found_partners}
    if not kinds:
        return {}, {}
    closed_through = found_partners[0]["closed_through"]
    if as_known_at is None:
        # Summing every line of the partner's months up to this one on each read cost more
        # than the rest of the figures together (P7): the projection keeps the same sums.
        cursor.execute(
            "SELECT partner_id, period, coalesce(sales, 0) AS gross_sales, coalesce(-returns, 0) AS returns,"
            " coalesce(line_commission, 0) AS commission, coalesce(adjustments, 0) AS adjustments,"
            " coalesce(adjusted_sales, 0) AS adjusted_sales, coalesce(fees, 0) AS fees,"
            " tableoid::bigint AS relation, xmin::text AS row_version, lines, last_position"
            " FROM commission_month_totals WHERE partner_id = ANY(%(partners)s) AND period <= %(until)s"
            " ORDER BY partner_id, period",
            params,
        )
    else:
        cursor.execute(
            "SELECT partner_id, period,"
            " coalesce(sum(amount) FILTER (WHERE kind IN ('sale', 'deal')), 0) AS gross_sales,"
            " coalesce(-sum(amount) FILTER (WHERE kind = 'return'), 0) AS returns,"
            " coalesce(sum(commission) FILTER (WHERE kind <> 'adjustment'), 0) AS commission,"
            " coalesce(sum(commission) FILTER (WHERE kind = 'adjustment'), 0) AS adjustments,"
            " coalesce(sum(amount) FILTER (WHERE kind = 'adjustment'), 0) AS adjusted_sales,"
            " coalesce(sum(amount * fee_rate), 0) AS fees"
            " FROM commission_lines WHERE partner_id = ANY(%(partners)s) AND period <= %(until)s"
            + _known(as_known_at) + " GROUP BY partner_id, period ORDER BY partner_id, period",
            params,
        )
    months: dict[UUID, list[dict[str, Any]]] = {}
    versions: dict[tuple[UUID, str], MonthVersion] = {}
    for row in cursor.fetchall():
        months.setdefault(row["partner_id"], []).append(row)
        if as_known_at is None:
            versions[(row["partner_id"], row["period"])] = _month_version(row)
    # Money paid out (payout and subsidy steps) and received (remittances), in log order.
    cursor.execute(
        "SELECT 'payout' AS paid_out, partner_id, period, position, step, amount FROM commission_payouts"
        " WHERE " + _KEYS + _known(as_known_at)
        + " UNION ALL SELECT 'subsidy', partner_id, period, position, step, amount FROM commission_housing_subsidies"
        " WHERE " + _KEYS + _known(as_known_at)
        + " UNION ALL SELECT 'remittance', partner_id, period, position, NULL, amount FROM commission_remittances"
        " WHERE " + _KEYS + _known(as_known_at) + " ORDER BY position",
        params,
    )
    paid_out: dict[tuple[UUID, str], list[dict[str, Any]]] = {}
    remitted: dict[tuple[UUID, str], Decimal] = {}
    for row in cursor.fetchall():
        key = (row["partner_id"], row["period"])
        if row["paid_out"] == "remittance":
            remitted[key] = remitted.get(key, ZERO) + row["amount"]
        else:
            paid_out.setdefault(key, []).append(row)
    cursor.execute(
        "SELECT * FROM commission_disputes WHERE " + _KEYS + _known(as_known_at, "raised_at") + " ORDER BY position",
        params,
    )
    disputes: dict[tuple[UUID, str], list[dict[str, Any]]] = {}
    for row in cursor.fetchall():
        disputes.setdefault((row["partner_id"], row["period"]), []).append(_dispute(row, as_known_at))

    found = {}
    for partner_id, period in keys:
        kind = kinds.get(partner_id)
        if kind is None:
            continue
        figures = _figures(months.get(partner_id, []), period, kind == "consignee", remitted.get((partner_id, period)))
        steps = [row for row in paid_out.get((partner_id, period), []) if row["paid_out"] == "payout"]
        subsidy = [row for row in paid_out.get((partner_id, period), []) if row["paid_out"] == "subsidy"]
        found[(partner_id, period)] = {
            "partner_id": partner_id,
            "period": period,
            **{name: _money(value) for name, value in figures.items()},
            "payout_status": steps[-1]["step"] if steps else "none",
            "payout_amount": _money(steps[0]["amount"]) if steps else None,
            "housing_subsidy": {"amount": _money(subsidy[0]["amount"]), "status": subsidy[-1]["step"]} if subsidy else None,
            "period_status": "closed" if closed_through is not None and period <= closed_through else "open",
            "disputes": disputes.get((partner_id, period), []),
        }
    return found, versions


def _figures(rows: list[dict[str, Any]], period: str, consignee: bool, remitted: Decimal | None) -> dict[str, Any]:
    """One month's figures from the partner's months up to it (in order)."""
    carried = ZERO
    month = _EMPTY_MONTH
    for row in rows:
        if row["period"] == period:
            month = row
            break
        if row["period"] > period:
            break
        carried = min(ZERO, carried + row["commission"] + row["adjustments"])
    if consignee:
        carried = ZERO  # each month settles on its own
    balance = month["commission"] + month["adjustments"] + carried
    net_sales = month["gross_sales"] - month["returns"]
    figures = {
        "gross_sales": month["gross_sales"],
        "returns": month["returns"],
        "net_sales": net_sales,
        "commission": month["commission"],
        "adjustments": month["adjustments"],
        "adjusted_sales": month["adjusted_sales"],
        "carried_in": carried,
        "total_due": max(ZERO, balance),
        "carried_out": min(ZERO, balance),
        "fees": None,
        "remittance_due": None,
        "remitted": None,
        "remittance_outstanding": None,
    }
    if consignee:
        fees = cents(month["fees"])
        settlement = net_sales + month["adjusted_sales"] - month["commission"] - fees - month["adjustments"]
        received = remitted or ZERO
        figures.update(
            total_due=max(ZERO, -settlement), carried_out=ZERO, fees=fees, remittance_due=max(ZERO, settlement),
            remitted=received, remittance_outstanding=max(ZERO, settlement) - received,
        )
    return figures


def _dispute(row: dict[str, Any], as_known_at: datetime | None) -> dict[str, Any]:
    """A dispute as a statement lists it; as known at a time before its resolution, open."""
    resolved = row["resolved_at"] is not None and (as_known_at is None or row["resolved_at"] <= as_known_at)
    return {
        "dispute_id": row["dispute_id"],
        "line_position": row["line_position"],
        "line_no": row["line_no"],
        "reason": row["reason"],
        "raised_by": row["raised_by"],
        "raised_at": row["raised_at"],
        "status": row["status"] if resolved else "open",
        "resolved_by": row["resolved_by"] if resolved else None,
        "resolved_at": row["resolved_at"] if resolved else None,
        "note": row["note"] if resolved else None,
        "amount": _money(row["amount"]) if resolved else None,
        "adjustment": {"period": row["adjustment_period"], "position": row["resolved_position"], "line_no": 1}
        if resolved and row["adjustment_period"] is not None else None,
    }


def statement_totals(cursor: Any, partner_id: UUID, period: str, as_known_at: datetime | None = None) -> dict:
    """The month's figures (see `statements`); zeros for a partner the read model does not know."""
    found = statements(cursor, [(partner_id, period)], as_known_at).get((partner_id, period))
    empty = _figures([], period, False, None)
    return empty if found is None else {name: found[name] for name in empty}


def statement(cursor: Any, partner_id: UUID, period: str, as_known_at: datetime | None = None,
              with_lines: bool = True, lines_cache: StatementLinesCache | None = None) -> dict[str, Any] | None:
    """A partner's statement for a month, as it stands or as known at a past time; None if the
    read model does not know the partner. With `lines_cache`, the month's lines as it stands
    are taken from it while the month holds the same lines, and kept in it when built."""
    key = (partner_id, period)
    found, versions = _statements(cursor, [key], as_known_at)
    result = found.get(key)
    if result is None or not with_lines:
        return result
    if lines_cache is not None and as_known_at is None:
        result["lines_json"] = _kept_lines(cursor, lines_cache, partner_id, period, versions.get(key))
        return result
    cursor.execute(
        _lines_json("partner_id = %(partner)s AND period = %(period)s" + _known(as_known_at)),
        {"partner": partner_id, "period": period, "known_at": as_known_at},
    )
    result["lines_json"] = cursor.fetchone()["lines"]
    return result


class MonthVersion(NamedTuple):
    """Which lines a month holds, from its `commission_month_totals` row: lines are only ever
    added to a month, in position order, and in the transaction that updates its row, so while
    the row says the same number of lines up to the same last position, the month's lines are
    the same. Only a rebuild (new tables: a new `tableoid`) or emptied tables filled again (new
    rows: a new `xmin`, the transaction that wrote the row) could hold other lines under the
    same count and position; both are in the version, so no kept copy outlives them."""

    relation: int  # the table's oid
    row_version: str  # the row's xmin
    lines: int
    last_position: int | None  # null where a node of the previous release wrote the row


def _month_version(row: dict[str, Any]) -> MonthVersion:
    return MonthVersion(row["relation"], row["row_version"], row["lines"], row["last_position"])


def _kept_lines(cursor: Any, cache: StatementLinesCache, partner_id: UUID, period: str,
                version: MonthVersion | None) -> str:
    """The month's lines of the version its figures were read at (`statements`)."""
    if version is None:
        return "[]"  # no row: no line, when the figures were read
    kept = cache.get(partner_id, period, version)
    if kept is not None:
        return kept
    # Up to the last position the figures were read with: later lines (committed since) are
    # not in these figures. The row read again in this statement's snapshot says whether the
    # tables are still the ones that version was read from; if not (a rebuild switched in
    # meanwhile), the lines are answered but not kept.
    cursor.execute(
        "SELECT (SELECT tableoid::bigint FROM commission_month_totals"
        "  WHERE partner_id = %(partner)s AND period = %(period)s) AS relation, built.lines, built.counted"
        " FROM (" + _lines_json("partner_id = %(partner)s AND period = %(period)s AND position <= %(last_position)s")
        + ") AS built",
        {"partner": partner_id, "period": period, "last_position": version.last_position},
    )
    row = cursor.fetchone()
    if row["counted"] != version.lines:
        # The row does not name its lines: written by a node of an earlier release during a
        # rolling upgrade (no `last_position`, or one its later lines did not move). Every line
        # of the month, as before there was a cache; nothing kept.
        cursor.execute(_lines_json("partner_id = %(partner)s AND period = %(period)s"),
                       {"partner": partner_id, "period": period})
        return cursor.fetchone()["lines"]
    if row["relation"] == version.relation:
        cache.put(partner_id, period, version, row["lines"])
    return row["lines"]


# What `plain_json` makes of a timestamp: ISO 8601 in UTC with a Z, microseconds only if any.
_RFC3339_UTC = (
    "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN date_part('microseconds', {0})::bigint %% 1000000 = 0 THEN ''"
    " ELSE to_char({0} AT TIME ZONE 'UTC', '.US') END || 'Z'"
)


def _lines_json(where: str) -> str:
    """The lines `where` says as one JSON array built by PostgreSQL (`lines`), each value as
    `plain_json` writes it, and how many there are (`counted`): converting a busy month's
    hundreds of rows in Python cost three times the rest of the statement. Each line a row
    turned to JSON whole: a third faster than naming each field to json_build_object (and
    without its spaces)."""
    return (
        "SELECT coalesce(json_agg(line ORDER BY line.position, line.line_no), '[]')::text AS lines,"
        " count(*) AS counted FROM ("
        " SELECT position, line_no, event_id::text AS event_id, contract_id::text AS contract_id, order_id, kind,"
        " business_date::text AS business_date, amount::text AS amount, rate::text AS rate,"
        " commission::text AS commission, corrects_period, moved_kind, dispute_id::text AS dispute_id, "
        + _RFC3339_UTC.format("recorded_at") + " AS recorded_at FROM commission_lines WHERE " + where + ") AS line"
    )


class StatementLinesCache:
    """Months' lines as built (`statement`'s `lines_json`), kept in this process, least recently
    read dropped first once they take more than `max_bytes`. Each is kept with the version of
    its month it was built at (`_month_version`) and given only for that version: a month that
    has gained a line, or tables rebuilt or emptied since, find nothing here and build afresh
    (which replaces the copy). Shared by the server's threads."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[UUID, str], tuple[MonthVersion, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, partner_id: UUID, period: str, version: MonthVersion) -> str | None:
        with self._lock:
            kept = self._kept.get((partner_id, period))
            if kept is None or kept[0] != version:
                return None
            self._kept.move_to_end((partner_id, period))
            return kept[1]

    def put(self, partner_id: UUID, period: str, version: MonthVersion, lines: str) -> None:
        size = sys.getsizeof(lines)  # what the string takes in memory, whatever its characters
        if size > self.max_bytes:
            return
        with self._lock:
            replaced = self._kept.pop((partner_id, period), None)
            if replaced is not None:
                self._bytes -= sys.getsizeof(replaced[1])
            self._kept[(partner_id, period)] = (version, lines)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._bytes -= sys.getsizeof(dropped)

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


# For the command side (handed to it by the HTTP layer) ------------------------------------

def close_facts(cursor: Any, period: str, closed_through: str | None) -> LedgerFacts:
    """What a close of `period` must know: the earlier months still open that have a statement
    (a line, a payout or subsidy step, a remittance), and the partners whose statement of the
    month has `total_due` > 0 without any payout prepared. Only a partner with lines in the
    month can be owed anything in it (a balance carried in is never positive)."""
    cursor.execute(
        "SELECT DISTINCT period FROM ("
        " SELECT period FROM commission_lines WHERE period < %(period)s"
        " UNION SELECT period FROM commission_payouts WHERE period < %(period)s"
        " UNION SELECT period FROM commission_housing_subsidies WHERE period < %(period)s"
        " UNION SELECT period FROM commission_remittances WHERE period < %(period)s) AS known"
        " WHERE %(through)s::text IS NULL OR period > %(through)s ORDER BY period",
        {"period": period, "through": closed_through},
    )
    open_before = [row["period"] for row in cursor.fetchall()]
    cursor.execute("SELECT DISTINCT partner_id FROM commission_lines WHERE period = %s", (period,))
    owed = statements(cursor, [(row["partner_id"], period) for row in cursor.fetchall()])
    unprepared = [partner_id for (partner_id, _), found in owed.items()
                  if found["total_due"] > 0 and found["payout_status"] == "none"]
    return LedgerFacts(open_before=open_before, unprepared=unprepared)


def statement_line(cursor: Any, partner_id: UUID, period: str, position: int,
                   line_no: int | None) -> DisputedLine | None:
    """The line(s) at `position` (numbered `line_no`, or all of them) on a partner's statement
    of a month, as a dispute names them; None when the statement has no such line."""
    cursor.execute(
        "SELECT min(event_id::text)::uuid AS event_id, min(kind) AS kind, sum(commission) AS commission,"
        " min(contract_id::text)::uuid AS contract_id, count(*) AS lines FROM commission_lines"
        " WHERE partner_id = %(partner)s AND period = %(period)s AND position = %(position)s"
        " AND (%(line_no)s::int IS NULL OR line_no = %(line_no)s)",
        {"partner": partner_id, "period": period, "position": position, "line_no": line_no},
    )
    row = cursor.fetchone()
    if row is None or not row["lines"]:
        return None
    return DisputedLine(position, line_no, row["event_id"], row["kind"], cents(row["commission"]), row["contract_id"])


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else cents(Decimal(value))
