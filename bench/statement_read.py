"""Diagnostic for P7 (issue 18): one statement read in process, as `GET /v1/commissions/
statements/{partner}/{period}` does it, on a partner with about `--lines` lines a month.

Builds, in a fresh database and through the application (a bulk import, then the commissions
projection), a retailer on tiered terms with sales and some returns over `--months` months,
then times `--reads` calls of the route's handler (no HTTP, no token check), cycling over the
months, and prints p50/p99 in milliseconds:

- "repeat": the same months read again and again (each read once before), nothing written
  between reads (a server answering a busy partner's statements);
- "changed": a sale recorded and projected into the month before each read (what a month
  still taking sales costs; the write itself is not timed);
- the two queries the answer is made of, alone: the months' sums (from the lines, and from
  `commission_month_totals`) and the month's lines as JSON.

    PYTHONPATH=src:bench .venv/bin/python bench/statement_read.py [--url postgresql://…]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from uuid import UUID

import psycopg
from common import TIERS, bench_database, percentile, server_url, signed_contract_of

from api.routes.commissions import read_statement
from channel_domain import acting_as
from channel_domain.application import ChannelDepartment, SalesLine
from channel_domain.store.projecting import ProjectionRunner
from projections.commissions import Commissions

CHUNK = 1000


def build(app: ChannelDepartment, months: int, lines: int, seed: int = 7) -> tuple[UUID, UUID]:
    """(partner, contract) with about `lines` lines in each of the first `months` months of 2026."""
    rng = random.Random(seed)
    partner, contract = signed_contract_of(app, "retailer", "Statement bench", TIERS)
    batch: list[SalesLine] = []
    for month in range(1, months + 1):
        for n in range(lines):
            day = date(2026, month, rng.randint(1, 28))
            amount = Decimal(rng.randint(1_000, 200_000)) / 100
            order = f"O-{month}-{n}"
            batch.append(SalesLine(contract, "sale", {"order_id": order, "amount": str(amount), "sold_on": str(day)}))
            if n % 25 == 0:  # a few partial returns, in the month of the sale
                batch.append(SalesLine(contract, "return", {"order_id": order, "amount": str(amount / 4),
                                                            "returned_on": str(day)}))
    with acting_as("erp", ["integration"]):
        for first in range(0, len(batch), CHUNK):
            app.import_sales(batch[first:first + CHUNK])
    project(app)
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return partner, contract


def project(app: ChannelDepartment) -> int:
    runner = ProjectionRunner(app, [Commissions()])
    return runner.catch_up_all()


def timed(calls: int, call: Callable[[int], object], between: Callable[[int], object] = lambda _: None) -> list[float]:
    samples = []
    for n in range(calls):
        between(n)
        began = time.perf_counter()
        call(n)
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def show(name: str, samples: list[float]) -> None:
    print(f"{name:<44} p50 {percentile(samples, 0.5):7.2f} ms   p99 {percentile(samples, 0.99):7.2f} ms"
          f"   (n={len(samples)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a PostgreSQL server (a scratch database is made on it)")
    parser.add_argument("--months", type=int, default=9)
    parser.add_argument("--lines", type=int, default=550, help="sales a month")
    parser.add_argument("--reads", type=int, default=600)
    args = parser.parse_args()
    with bench_database(server_url(args.url)) as url:
        app = ChannelDepartment(url)
        try:
            began = time.perf_counter()
            partner, contract = build(app, args.months, args.lines)
            periods = [f"2026-{m:02d}" for m in range(1, args.months + 1)]
            with psycopg.connect(url) as conn:
                total = conn.execute("SELECT count(*) FROM commission_lines").fetchone()[0]
            print(f"{total} lines over {args.months} months built in {time.perf_counter() - began:.0f} s")
            position = project(app)

            def read(n: int) -> None:
                answer = read_statement(partner, periods[n % len(periods)], app, None, position, None, False)
                assert answer.status_code == 200

            for n in range(len(periods)):  # warm: connections, plans, and each month read once
                read(n)
            show("statement read, repeat", timed(args.reads, read))
            sold = [0]

            def sell(n: int) -> None:
                sold[0] += 1
                with acting_as("erp", ["integration"]):
                    app.record_sale(contract, f"X-{sold[0]}", "10.00", f"{periods[n % len(periods)]}-15")
                project(app)

            show("statement read, the month changed before", timed(args.reads // 4, read, sell))
            with app.event_recorder.datastore.get_connection() as conn, conn.cursor() as curs:
                def query(sql: str) -> Callable[[int], object]:
                    return lambda n: curs.execute(sql, {"partner": partner, "period": periods[n % len(periods)]}
                                                  ).fetchall()

                show("  sums over the lines (GROUP BY)", timed(args.reads, query(
                    "SELECT period, sum(amount) FILTER (WHERE kind IN ('sale', 'deal')),"
                    " sum(amount) FILTER (WHERE kind = 'return'), sum(commission), sum(amount * fee_rate)"
                    " FROM commission_lines WHERE partner_id = %(partner)s AND period <= %(period)s GROUP BY period")))
                show("  sums from commission_month_totals", timed(args.reads, query(
                    "SELECT * FROM commission_month_totals WHERE partner_id = %(partner)s AND period <= %(period)s")))
                show("  the month's lines as JSON (json_agg)", timed(args.reads, query(
                    "SELECT json_agg(json_build_object('position', position, 'line_no', line_no,"
                    " 'amount', amount::text, 'commission', commission::text, 'recorded_at', recorded_at))::text"
                    " FROM commission_lines WHERE partner_id = %(partner)s AND period = %(period)s")))
        finally:
            app.close()


if __name__ == "__main__":
    main()
