"""Sales reports (issue 16): every sale, return and broker deal with what a report groups it by,
and the same summed per month for each dimension.

`sales_report_lines` holds one row per `Contract.SaleRecorded`, `Contract.ReturnRecorded` and
`Partner.DealClosed`: the partner and its kind, the contract, the order (or deal) id, product,
region, employee, business date (`sold_on`, `returned_on`, `closed_on` — the dates statements
book them by) and the amount. A return carries its sale's product, region and employee; a deal
has none of them. A product or region that is blank counts as none.

`sales_report_months` sums those rows per month and dimension (`partner`, `region`, `product`,
`employee`): gross (sales and deals), returns, orders (sales and deals, not returns). It is
written in SQL from the lines each batch added, so a report of a month, a quarter or a year
reads at most a few hundred rows per month whatever the number of sales.

The projection keeps only its own tables (so `channel-domain rebuild sales_reports` rebuilds it
alone); which partner a contract belongs to, and each partner's kind, are remembered in memory
and loaded from those tables when missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from channel_domain.contract import Contract
from channel_domain.partner import KINDS, Partner
from channel_domain.store.copying import copy_rows
from channel_domain.values import Period, month_of
from projections.audit import event_id

LINE_COLUMNS = ("position", "event_id", "kind", "business_date", "partner_id", "partner_kind", "contract_id",
                "order_id", "product", "region", "employee_id", "amount")
DIMENSIONS = ("partner", "region", "product", "employee")


class SalesReports:
    name = "sales_reports"
    weight = 0.6  # 100k instructions an event beyond reading and decoding (bench/read_model_costs.py)
    tables = ("sales_report_partners", "sales_report_contracts", "sales_report_lines", "sales_report_months")

    def __init__(self) -> None:
        self._partner_of: dict[UUID, UUID] = {}  # contract -> partner
        self._kind_of: dict[UUID, str] = {}  # partner -> kind

    def reset(self) -> None:
        self._partner_of.clear()
        self._kind_of.clear()

    def apply(self, cursor: Any, events: Sequence[tuple[Notification, Any]]) -> None:
        partners: list[tuple] = []
        contracts: list[tuple] = []
        lines: list[tuple] = []
        sold: dict[tuple[UUID, str], tuple[str | None, str | None, UUID | None]] = {}  # this batch's sales
        for notification, event in events:
            if isinstance(event, Contract.SaleRecorded):  # type: ignore[attr-defined]
                contract_id = event.originator_id
                partner_id = self._partner(cursor, contract_id)
                if partner_id is None:
                    continue  # a contract this model never saw drafted
                product, region = _named(event.product), _named(event.region)
                sold[(contract_id, event.order_id)] = (product, region, event.employee_id)
                lines.append((*_source(notification), "sale", event.sold_on, partner_id,
                              self._kind(cursor, partner_id), contract_id, event.order_id, product, region,
                              event.employee_id, event.amount))
            elif isinstance(event, Contract.ReturnRecorded):  # type: ignore[attr-defined]
                contract_id = event.originator_id
                partner_id = self._partner(cursor, contract_id)
                sale = sold.get((contract_id, event.order_id)) or _sale(cursor, contract_id, event.order_id)
                if partner_id is None or sale is None:
                    continue
                lines.append((*_source(notification), "return", event.returned_on, partner_id,
                              self._kind(cursor, partner_id), contract_id, event.order_id, *sale,
                              event.amount))
            elif isinstance(event, Partner.DealClosed):  # type: ignore[attr-defined]
                partner_id = event.originator_id
                lines.append((*_source(notification), "deal", event.closed_on, partner_id,
                              self._kind(cursor, partner_id), None, event.deal_id, None, None, None,
                              event.amount))
            elif isinstance(event, Partner.Applied):  # type: ignore[attr-defined]
                self._kind_of[event.originator_id] = event.kind
                partners.append((event.originator_id, event.kind, event.name, *_source(notification)))
            elif isinstance(event, Contract.Drafted):  # type: ignore[attr-defined]
                self._partner_of[event.originator_id] = event.partner_id
                contracts.append((event.originator_id, event.partner_id, *_source(notification)))
        copy_rows(cursor, "sales_report_partners", ("partner_id", "kind", "name", "position", "event_id"), partners)
        copy_rows(cursor, "sales_report_contracts", ("contract_id", "partner_id", "position", "event_id"), contracts)
        if lines:
            copy_rows(cursor, "sales_report_lines", LINE_COLUMNS, lines)
            _add_to_months(cursor, lines[0][0], lines[-1][0])

    def _partner(self, cursor: Any, contract_id: UUID) -> UUID | None:
        """The contract's partner: in memory (this batch's drafts are), else from this model's table."""
        partner = self._partner_of.get(contract_id)
        if partner is None:
            cursor.execute("SELECT partner_id FROM sales_report_contracts WHERE contract_id = %s", (contract_id,))
            row = cursor.fetchone()
            if row is not None:
                partner = self._partner_of[contract_id] = row["partner_id"]
        return partner

    def _kind(self, cursor: Any, partner_id: UUID) -> str:
        kind = self._kind_of.get(partner_id)
        if kind is None:
            cursor.execute("SELECT kind FROM sales_report_partners WHERE partner_id = %s", (partner_id,))
            row = cursor.fetchone()
            # A partner this model never saw apply cannot sell through the domain; kept, not lost.
            kind = self._kind_of[partner_id] = row["kind"] if row is not None else "unknown"
        return kind


def _named(value: Any) -> str | None:
    """A product or region as recorded; blank is none."""
    return value if isinstance(value, str) and value.strip() else None


def _source(notification: Notification) -> tuple[int, UUID]:
    return notification.id, event_id(notification.originator_id, notification.originator_version)


def _sale(cursor: Any, contract_id: UUID, order_id: str) -> tuple[str | None, str | None, UUID | None] | None:
    cursor.execute("SELECT product, region, employee_id FROM sales_report_lines"
                   " WHERE contract_id = %s AND order_id = %s AND kind = 'sale'", (contract_id, order_id))
    row = cursor.fetchone()
    return None if row is None else (row["product"], row["region"], row["employee_id"])


def _add_to_months(cursor: Any, first: int, last: int) -> None:
    """Add the lines at positions first..last (this batch's, all of them) to the monthly sums,
    aggregated by PostgreSQL."""
    cursor.execute(
        "INSERT INTO sales_report_months AS m (month, dimension, key, gross, returns, orders)"
        " SELECT to_char(l.business_date, 'YYYY-MM'), d.dimension, d.key,"
        "  coalesce(sum(l.amount) FILTER (WHERE l.kind <> 'return'), 0.00),"
        "  coalesce(sum(l.amount) FILTER (WHERE l.kind = 'return'), 0.00),"
        "  count(*) FILTER (WHERE l.kind <> 'return')"
        " FROM sales_report_lines AS l CROSS JOIN LATERAL (VALUES"
        "  ('partner', l.partner_id::text), ('region', coalesce(l.region, '')),"
        "  ('product', coalesce(l.product, '')), ('employee', coalesce(l.employee_id::text, ''))"
        " ) AS d (dimension, key)"
        " WHERE l.position BETWEEN %s AND %s"
        " GROUP BY 1, 2, 3"
        " ON CONFLICT (dimension, month, key) DO UPDATE SET gross = m.gross + excluded.gross,"
        "  returns = m.returns + excluded.returns, orders = m.orders + excluded.orders",
        (first, last),
    )


# Reading the reports ----------------------------------------------------------------------

SHARE_PLACES = Decimal("0.0001")
KEY_SHARE = Decimal("0.8")


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """numerator ÷ denominator to 4 places, rounded half up (away from zero); None for ÷ 0."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(SHARE_PLACES, rounding=ROUND_HALF_UP)


def months_of(period: Period) -> tuple[str, str]:
    """The first and last month of a period, as `sales_report_months.month` holds them."""
    return month_of(period.starts_on), month_of(period.ends_on)


_SUMS = ("sum(m.gross) AS gross, sum(m.returns) AS returns, sum(m.gross) - sum(m.returns) AS net,"
         " sum(m.orders)::bigint AS orders")


def sales_by(cursor: Any, period: Period, group_by: str) -> list[dict[str, Any]]:
    """The rows of `GET /v1/reports/sales` for `group_by` in partner/region/product/employee/
    month, sorted by key (code-point order; none last; months in order)."""
    first, last = months_of(period)
    params = {"first": first, "last": last}
    if group_by == "month":
        cursor.execute(
            "SELECT to_char(s.month, 'YYYY-MM') AS key, coalesce(sum(m.gross), 0.00) AS gross,"
            " coalesce(sum(m.returns), 0.00) AS returns, coalesce(sum(m.gross) - sum(m.returns), 0.00) AS net,"
            " coalesce(sum(m.orders), 0)::bigint AS orders"
            " FROM generate_series(%(starts)s::date, %(ends)s::date, interval '1 month') AS s (month)"
            " LEFT JOIN sales_report_months AS m ON m.dimension = 'partner' AND m.month = to_char(s.month, 'YYYY-MM')"
            " GROUP BY s.month ORDER BY s.month",
            {"starts": period.starts_on, "ends": period.ends_on},
        )
        return cursor.fetchall()
    if group_by == "partner":
        cursor.execute(
            "SELECT m.key, p.name, p.kind, " + _SUMS + " FROM sales_report_months AS m"
            " LEFT JOIN sales_report_partners AS p ON p.partner_id = m.key::uuid"
            " WHERE m.dimension = 'partner' AND m.month BETWEEN %(first)s AND %(last)s"
            " GROUP BY m.key, p.name, p.kind ORDER BY m.key COLLATE \"C\"",
            params,
        )
        return cursor.fetchall()
    if group_by == "employee":
        # The employee's login, not their name: a name is personal data, shown to `hr` only.
        cursor.execute(
            "SELECT nullif(m.key, '') AS key, e.login AS name, " + _SUMS + " FROM sales_report_months AS m"
            " LEFT JOIN employee_logins AS e ON m.key <> '' AND e.employee_id = nullif(m.key, '')::uuid"
            " WHERE m.dimension = 'employee' AND m.month BETWEEN %(first)s AND %(last)s"
            " GROUP BY m.key, e.login ORDER BY m.key = '', m.key COLLATE \"C\"",
            params,
        )
        return cursor.fetchall()
    cursor.execute(
        "SELECT nullif(m.key, '') AS key, " + _SUMS + " FROM sales_report_months AS m"
        " WHERE m.dimension = %(dimension)s AND m.month BETWEEN %(first)s AND %(last)s"
        " GROUP BY m.key ORDER BY m.key = '', m.key COLLATE \"C\"",
        {**params, "dimension": group_by},
    )
    return cursor.fetchall()


DETAIL_COLUMNS = ("position", "event_id", "kind", "date", "partner_id", "partner_name", "partner_kind",
                  "contract_id", "order_id", "product", "region", "employee_id", "gross", "returns", "net")

# Every value as the text it is answered as (money in plain notation): no conversion per cell.
_DETAIL_SELECT = (
    "SELECT l.position, l.event_id::text AS event_id, l.kind, l.business_date::text AS date,"
    " l.partner_id::text AS partner_id, p.name AS partner_name, l.partner_kind, l.contract_id::text AS contract_id,"
    " l.order_id, l.product, l.region, l.employee_id::text AS employee_id,"
    " CASE WHEN l.kind = 'return' THEN '0.00' ELSE l.amount::text END AS gross,"
    " CASE WHEN l.kind = 'return' THEN l.amount::text ELSE '0.00' END AS returns,"
    " CASE WHEN l.kind = 'return' THEN (-l.amount)::text ELSE l.amount::text END AS net"
    " FROM sales_report_lines AS l LEFT JOIN sales_report_partners AS p ON p.partner_id = l.partner_id"
)


def detail_page(cursor: Any, period: Period, after: tuple[date, int] | None, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` lines of the period after `after` (business date, position), in that order."""
    # Two statements rather than one with `… IS NULL OR …`: a prepared statement's generic plan
    # could not use the index for the row comparison.
    cursor.execute(
        _DETAIL_SELECT + " WHERE l.business_date BETWEEN %(starts)s AND %(ends)s"
        + (" AND (l.business_date, l.position) > (%(after_date)s, %(after_position)s)" if after else "")
        + " ORDER BY l.business_date, l.position LIMIT %(limit)s",
        {"starts": period.starts_on, "ends": period.ends_on, "after_date": after[0] if after else None,
         "after_position": after[1] if after else None, "limit": limit},
    )
    return cursor.fetchall()


# Every line of the period (`starts`, `ends`), in the detail's order: streamed whole as CSV.
DETAIL_OF_PERIOD = (_DETAIL_SELECT + " WHERE l.business_date BETWEEN %(starts)s AND %(ends)s"
                    " ORDER BY l.business_date, l.position")


def sales_total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The period's gross, returns, net and orders, from the rows of any grouping of it: each
    line is in exactly one row of every grouping, so each adds up to the same."""
    zero = Decimal("0.00")
    return {"gross": sum((row["gross"] for row in rows), zero), "returns": sum((row["returns"] for row in rows), zero),
            "net": sum((row["net"] for row in rows), zero), "orders": sum(row["orders"] for row in rows)}


def key_terminals(cursor: Any, period: Period) -> tuple[list[dict[str, Any]], Decimal]:
    """Partners by net sales in the period (descending, ties by partner id) with their share of
    the total and the running share; `key` for the fewest top partners reaching 80 % (the one
    that crosses 80 % included). Exact sums decide; shares are rounded for the answer only.
    Returns the rows and the total net sales."""
    first, last = months_of(period)
    cursor.execute(
        "WITH nets AS ("
        " SELECT m.key AS partner_id, sum(m.gross) - sum(m.returns) AS net FROM sales_report_months AS m"
        " WHERE m.dimension = 'partner' AND m.month BETWEEN %(first)s AND %(last)s GROUP BY m.key),"
        " ranked AS ("
        " SELECT partner_id, net, sum(net) OVER () AS total,"
        "  sum(net) OVER (ORDER BY net DESC, partner_id COLLATE \"C\" ROWS UNBOUNDED PRECEDING) AS running,"
        "  row_number() OVER (ORDER BY net DESC, partner_id COLLATE \"C\") AS rank FROM nets)"
        " SELECT r.rank, r.partner_id, p.name, p.kind, r.net, r.total, r.running,"
        "  r.total > 0 AND r.running - r.net < %(key_share)s * r.total AS key"
        " FROM ranked AS r LEFT JOIN sales_report_partners AS p ON p.partner_id = r.partner_id::uuid"
        " ORDER BY r.rank",
        {"first": first, "last": last, "key_share": KEY_SHARE},
    )
    rows = []
    total = Decimal("0.00")
    for row in cursor.fetchall():
        total = row["total"]
        positive = total > 0
        rows.append({
            "rank": row["rank"], "partner_id": row["partner_id"], "name": row["name"], "kind": row["kind"],
            "net": row["net"],
            "share": ratio(row["net"], row["total"]) if positive else None,
            "cumulative_share": ratio(row["running"], row["total"]) if positive else None,
            "key": row["key"],
        })
    return rows, total


def commission_efficiency(cursor: Any, period: Period) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per partner kind (every kind, in the domain's order): net sales in the period, the
    commission booked in the statements of its months (sale, return and deal lines, and
    adjustments), and commission ÷ net sales. Reads the commissions read model's monthly sums
    (`commission_month_totals`, the sums of its `commission_lines`) beside this model's own:
    summing a month's lines on each request cost ~1 s over a year of 200 partners' sales."""
    first, last = months_of(period)
    params = {"first": first, "last": last}
    cursor.execute(
        "SELECT p.kind, count(DISTINCT m.key) AS partners, sum(m.gross) - sum(m.returns) AS net_sales"
        " FROM sales_report_months AS m JOIN sales_report_partners AS p ON p.partner_id = m.key::uuid"
        " WHERE m.dimension = 'partner' AND m.month BETWEEN %(first)s AND %(last)s GROUP BY p.kind",
        params,
    )
    sales = {row["kind"]: row for row in cursor.fetchall()}
    cursor.execute(
        "SELECT cp.kind,"
        " coalesce(sum(t.line_commission), 0.00) AS line_commission,"
        " coalesce(sum(t.adjustments), 0.00) AS adjustments"
        " FROM commission_month_totals AS t JOIN commission_partners AS cp ON cp.partner_id = t.partner_id"
        " WHERE t.period BETWEEN %(first)s AND %(last)s GROUP BY cp.kind",
        params,
    )
    booked = {row["kind"]: row for row in cursor.fetchall()}
    zero = Decimal("0.00")
    rows = []
    for kind in (*KINDS, *sorted((set(sales) | set(booked)) - set(KINDS))):
        net = sales[kind]["net_sales"] if kind in sales else zero
        lines = booked[kind]["line_commission"] if kind in booked else zero
        adjustments = booked[kind]["adjustments"] if kind in booked else zero
        rows.append({"kind": kind, "partners": sales[kind]["partners"] if kind in sales else 0, "net_sales": net,
                     "sales_commission": lines, "adjustments": adjustments, "commission": lines + adjustments,
                     "efficiency": ratio(lines + adjustments, net)})
    net_total = sum((row["net_sales"] for row in rows), zero)
    lines_total = sum((row["sales_commission"] for row in rows), zero)
    adjustments_total = sum((row["adjustments"] for row in rows), zero)
    total = {"partners": sum(row["partners"] for row in rows), "net_sales": net_total,
             "sales_commission": lines_total, "adjustments": adjustments_total,
             "commission": lines_total + adjustments_total, "efficiency": ratio(lines_total + adjustments_total, net_total)}
    return rows, total
