"""Commission statements (domain.md §6): a ledger of lines per partner and month.

Sales and returns are priced by `channel_domain.commission`; broker deals at the broker's own
rate; payouts and housing subsidies are kept step by step, consignees' remittances as received.
A line is never updated, so a statement as known at a past time is simply the lines recorded by
then — `statement(..., as_known_at=...)`.

Each contract's pricing state is rebuilt from its own lines when first needed and then kept
in memory between batches (`reset()` drops it whenever the runner cannot vouch that the
tables still hold exactly what this object wrote).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from channel_domain.commission import ZERO, ContractCommissions, Entry, Line, book_contract_event, cents
from channel_domain.contract import Contract
from channel_domain.partner import Partner
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
)


class Commissions:
    name = "commissions"
    weight = 3.0  # its cost per event against the others, measured (rebuilds share read models out by it)
    tables = ("commission_partners", "commission_contracts", "commission_terms", "commission_lines",
              "commission_payouts", "commission_remittances", "commission_housing_subsidies")
    cached_contracts = 256

    def __init__(self) -> None:
        self._books: OrderedDict[UUID, ContractCommissions] = OrderedDict()
        self._contracts: dict[UUID, tuple[UUID, Decimal | None]] = {}  # contract -> (partner, fee rate)
        self._broker_rates: dict[UUID, Decimal | None] = {}

    def reset(self) -> None:
        self._books.clear()
        self._contracts.clear()
        self._broker_rates.clear()

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
                lines.append((position, 1, line_event, event.originator_id, None, month_of(event.closed_on),
                              "deal", event.deal_id, event.closed_on, event.amount, rate,
                              cents(event.amount * rate), None, None, recorded_at))
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
                    lines.append((
                        source[0], line_no, source[1], partner_id, contract_id, line.period, line.kind,
                        line.order_id, line.business_date, line.amount, line.rate, line.commission,
                        fee_rate if line.kind != "adjustment" else None, line.corrects_period, recorded_at,
                    ))
        _copy_lines(cursor, lines)
        while len(self._books) > self.cached_contracts:
            self._books.popitem(last=False)

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
        cursor.execute(
            "SELECT position, kind, order_id, business_date, abs(sum(amount)) AS amount FROM commission_lines"
            " WHERE contract_id = %s AND kind IN ('sale', 'return')"
            " GROUP BY position, kind, order_id, business_date",
            (contract_id,),
        )
        entries = [Entry(row["kind"], row["order_id"], row["business_date"], row["position"], row["amount"])
                   for row in cursor.fetchall()]
        cursor.execute(
            "SELECT coalesce(corrects_period, period) AS month, sum(commission) AS booked FROM commission_lines"
            " WHERE contract_id = %s GROUP BY 1",
            (contract_id,),
        )
        booked = {row["month"]: row["booked"] for row in cursor.fetchall()}
        book.restore(entries, terms[1:], booked)
        return book


def _copy_lines(cursor: Any, lines: list[tuple]) -> None:
    if not lines:
        return
    with cursor.copy(f"COPY commission_lines ({', '.join(LINE_COLUMNS)}) FROM STDIN") as copy:
        for line in lines:
            copy.write_row(line)


# Reading statements -----------------------------------------------------------------------

def _known(as_known_at: datetime | None) -> str:
    return "" if as_known_at is None else " AND recorded_at <= %(known_at)s"


def statement_totals(cursor: Any, partner_id: UUID, period: str, as_known_at: datetime | None = None,
                     kind: str | None = None) -> dict:
    """The month's figures. A consignee's month settles once and carries nothing (domain.md §6):
    S = proceeds − commission − fees − adjustments is remitted by the consignee when S ≥ 0 and
    paid by the company (`total_due`) when below. Other partners carry a negative balance into
    the months after it."""
    params = {"partner": partner_id, "period": period, "known_at": as_known_at}
    if kind is None:
        cursor.execute("SELECT kind FROM commission_partners WHERE partner_id = %(partner)s", params)
        found = cursor.fetchone()
        kind = found["kind"] if found else None
    consignee = kind == "consignee"
    cursor.execute(
        "SELECT period,"
        " coalesce(sum(amount) FILTER (WHERE kind IN ('sale', 'deal')), 0) AS gross_sales,"
        " coalesce(-sum(amount) FILTER (WHERE kind = 'return'), 0) AS returns,"
        " coalesce(sum(commission) FILTER (WHERE kind <> 'adjustment'), 0) AS commission,"
        " coalesce(sum(commission) FILTER (WHERE kind = 'adjustment'), 0) AS adjustments,"
        " coalesce(sum(amount * fee_rate), 0) AS fees"
        " FROM commission_lines WHERE partner_id = %(partner)s"
        + (" AND period = %(period)s" if consignee else " AND period <= %(period)s")
        + _known(as_known_at) + " GROUP BY period ORDER BY period",
        params,
    )
    carried = ZERO
    month = {"gross_sales": ZERO, "returns": ZERO, "commission": ZERO, "adjustments": ZERO, "fees": ZERO}
    for row in cursor.fetchall():
        if row["period"] == period:
            month = row
            break
        carried = min(ZERO, carried + row["commission"] + row["adjustments"])
    balance = month["commission"] + month["adjustments"] + carried
    net_sales = month["gross_sales"] - month["returns"]
    figures = {
        "gross_sales": month["gross_sales"],
        "returns": month["returns"],
        "net_sales": net_sales,
        "commission": month["commission"],
        "adjustments": month["adjustments"],
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
        settlement = net_sales - month["commission"] - fees - month["adjustments"]
        cursor.execute(
            "SELECT coalesce(sum(amount), 0) AS remitted FROM commission_remittances"
            " WHERE partner_id = %(partner)s AND period = %(period)s" + _known(as_known_at),
            params,
        )
        remitted = cursor.fetchone()["remitted"]
        figures.update(
            total_due=max(ZERO, -settlement), carried_out=ZERO, fees=fees, remittance_due=max(ZERO, settlement),
            remitted=remitted, remittance_outstanding=max(ZERO, settlement) - remitted,
        )
    return figures


def statement(cursor: Any, partner_id: UUID, period: str, as_known_at: datetime | None = None,
              with_lines: bool = True) -> dict[str, Any] | None:
    """A partner's statement for a month, as it stands or as known at a past time; None if the
    read model does not know the partner."""
    cursor.execute("SELECT kind FROM commission_partners WHERE partner_id = %s", (partner_id,))
    partner = cursor.fetchone()
    if partner is None:
        return None
    figures = statement_totals(cursor, partner_id, period, as_known_at, partner["kind"])
    params = {"partner": partner_id, "period": period, "known_at": as_known_at}
    known = _known(as_known_at)
    cursor.execute(
        "SELECT 'payout' AS paid_out, position, step, amount FROM commission_payouts"
        " WHERE partner_id = %(partner)s AND period = %(period)s" + known
        + " UNION ALL SELECT 'subsidy', position, step, amount FROM commission_housing_subsidies"
        " WHERE partner_id = %(partner)s AND period = %(period)s" + known + " ORDER BY position",
        params,
    )
    paid_out = cursor.fetchall()
    steps = [row for row in paid_out if row["paid_out"] == "payout"]
    subsidy = [row for row in paid_out if row["paid_out"] == "subsidy"]
    result: dict[str, Any] = {
        "partner_id": partner_id,
        "period": period,
        **{name: _money(value) for name, value in figures.items()},
        "payout_status": steps[-1]["step"] if steps else "none",
        "payout_amount": _money(steps[0]["amount"]) if steps else None,
        "housing_subsidy": {"amount": _money(subsidy[0]["amount"]), "status": subsidy[-1]["step"]} if subsidy else None,
    }
    if with_lines:
        # The lines come as one JSON array built by PostgreSQL, each value as `plain_json`
        # writes it: converting a busy month's hundreds of rows in Python cost three times
        # the rest of the statement.
        cursor.execute(
            "SELECT coalesce(json_agg(json_build_object("
            " 'position', position, 'line_no', line_no, 'event_id', event_id::text,"
            " 'contract_id', contract_id::text, 'order_id', order_id, 'kind', kind,"
            " 'business_date', business_date::text, 'amount', amount::text, 'rate', rate::text,"
            " 'commission', commission::text, 'corrects_period', corrects_period,"
            " 'recorded_at', " + _RFC3339_UTC.format("recorded_at") + ") ORDER BY position, line_no), '[]')::text"
            " AS lines FROM commission_lines"
            " WHERE partner_id = %(partner)s AND period = %(period)s" + _known(as_known_at),
            params,
        )
        result["lines_json"] = cursor.fetchone()["lines"]
    return result


# What `plain_json` makes of a timestamp: ISO 8601 in UTC with a Z, microseconds only if any.
_RFC3339_UTC = (
    "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN date_part('microseconds', {0})::bigint %% 1000000 = 0 THEN ''"
    " ELSE to_char({0} AT TIME ZONE 'UTC', '.US') END || 'Z'"
)


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else cents(Decimal(value))
