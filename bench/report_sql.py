"""P10 diagnostics: each report of `reports.REPORTS` timed as the server runs its SQL (the same
queries and Python as the route, no HTTP), `runs` times in a row on one connection, and its
plan with `EXPLAIN (ANALYZE, BUFFERS)`. Timings on a shared machine are noisy: compare two
variants in the same session (`--before DIR`: the reports as DIR/src has them), quote ratios.

    PYTHONPATH=src:. python bench/report_sql.py postgresql://…/db [--runs 200] [--before /work/main]
        [--explain] [--only commission]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from channel_domain.values import Period, month_of


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reports(src: Path, tag: str) -> list[tuple[str, Any, list[tuple[str, dict]]]]:
    """(label, run(conn), [(sql, params)] to explain) for each report, as `src` reads it."""
    sales = _load(f"sales_reports_{tag}", src / "projections" / "sales_reports.py")
    partners = _load(f"partner_reports_{tag}", src / "api" / "routes" / "partner_reports.py")
    from channel_domain.partner import KINDS as kinds

    def grouped(period: str, group_by: str) -> Any:
        return lambda conn: sales.sales_by(conn.cursor(), Period.parse(period), group_by)

    def streamed(query: str, params: dict) -> Any:
        def run(conn: psycopg.Connection) -> list:
            with conn.transaction(), conn.cursor(name="report") as curs:
                curs.itersize = 500
                curs.execute(query, params)
                return list(curs)
        return run

    def both(*runs: Any) -> Any:
        return lambda conn: [run(conn) for run in runs]

    june = Period.parse("2026-06")
    month = {"starts": june.starts_on, "ends": june.ends_on}
    part = {**month, "kinds": list(kinds)}
    receivable = {"as_of": date(2026, 7, 31), "month": month_of(date(2026, 7, 31)), "partner": None}
    inventory = {"as_of": date(2026, 6, 30), "partner": None}
    payouts = {"first": "2026-06", "last": "2026-06", "full": False}
    return [
        ("sales by partner, a month", grouped("2026-06", "partner"), []),
        ("sales by region, a month", grouped("2026-06", "region"), []),
        ("sales by product, a month", grouped("2026-06", "product"), []),
        ("sales by employee, a month", grouped("2026-06", "employee"), []),
        ("sales by month, a year", grouped("2026", "month"), []),
        ("sales by partner, a quarter", grouped("2026-Q2", "partner"), []),
        ("sales lines, first page of 1000", lambda conn: sales.detail_page(conn.cursor(), june, None, 1001), []),
        ("key terminals, a month", lambda conn: sales.key_terminals(conn.cursor(), june), []),
        ("key terminals, a year", lambda conn: sales.key_terminals(conn.cursor(), Period.parse("2026")), []),
        ("commission efficiency, a month", lambda conn: sales.commission_efficiency(conn.cursor(), june), []),
        ("partners, a month", both(streamed(partners.PARTNERS_BY_KIND, part), streamed(partners.RECRUITERS, part)),
         [(partners.PARTNERS_BY_KIND, part), (partners.RECRUITERS, part)]),
        ("inventory as of a day", streamed(partners.INVENTORY, inventory), [(partners.INVENTORY, inventory)]),
        ("receivables as of a day", streamed(partners.RECEIVABLES, receivable), [(partners.RECEIVABLES, receivable)]),
        ("payout register, a month", streamed(partners.PAYOUTS, payouts), [(partners.PAYOUTS, payouts)]),
        ("evaluations, a month", both(streamed(partners.EVALUATIONS, month), streamed(partners.EVALUATION_TOTALS, month)),
         [(partners.EVALUATIONS, month)]),
    ]


def timed(conn: psycopg.Connection, run: Any, runs: int) -> tuple[float, float, Any]:
    answer = run(conn)  # warm
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        answer = run(conn)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--before", type=Path, help="a checkout whose src/ holds the reports to compare with")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    variants = [("after", Path(__file__).resolve().parent.parent / "src")]
    if args.before:
        variants.insert(0, ("before", args.before / "src"))
    loaded = {tag: reports(src, tag) for tag, src in variants}
    with psycopg.connect(args.url, row_factory=dict_row, autocommit=True) as conn:
        for n, (label, _, _) in enumerate(loaded["after"]):
            if args.only not in label:
                continue
            figures = []
            answers = []
            for tag, _ in variants:
                p50, p99, answer = timed(conn, loaded[tag][n][1], args.runs)
                figures.append(f"{tag} p50 {p50:7.2f} ms p99 {p99:7.2f} ms")
                answers.append(answer)
            same = "" if len(answers) == 1 else ("  same answer" if answers[0] == answers[1] else "  ANSWERS DIFFER")
            ratio = ""
            if len(variants) == 2:
                b, a = (float(f.split()[2]) for f in figures)
                ratio = f"  ×{b / a:.1f} at p50"
            print(f"{label:34} " + " | ".join(figures) + ratio + same, flush=True)
            if args.explain:
                for tag, _ in variants:
                    for query, params in loaded[tag][n][2]:
                        with conn.cursor() as curs:
                            curs.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params)
                            print(f"--- {tag}\n" + "\n".join(r["QUERY PLAN"] for r in curs.fetchall()))


if __name__ == "__main__":
    sys.exit(main())
