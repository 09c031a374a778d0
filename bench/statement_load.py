"""Issue 18 diagnostic: P7 on a smaller log, with the server's request log kept and read back —
which requests are slow inside the server, and when.

    PYTHONPATH=src:bench:. python bench/statement_load.py [imported sales, default 40000]

Prints the client's p50/p99 of statements and sales, then the server-side p50/p99 of each over
the whole run and after its first 2 seconds (when each worker meets its contracts and its
statements for the first time).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from common import TIERS, bench_database, served, signed_contract_of, token

import http_load
import read_models
from channel_domain.application import ChannelDepartment

STATEMENT = "/v1/commissions/statements/{partner_id}/{period}"
SALE = "/v1/contracts/{contract_id}/sales"


def _server_side(log: Path) -> None:
    rows = []
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("message") == "request" and row.get("route") in (STATEMENT, SALE):
            rows.append(row)
    first = min(datetime.fromisoformat(r["timestamp"]) for r in rows if r["route"] == STATEMENT)
    for after in (0.0, 2.0):
        for route in (STATEMENT, SALE):
            took = sorted(r["duration_ms"] for r in rows if r["route"] == route
                          and (datetime.fromisoformat(r["timestamp"]) - first).total_seconds() >= after)
            print(f"server side, from {after:.0f} s: {route}: {len(took)} requests, p50 {took[len(took) // 2]:.1f} ms,"
                  f" p99 {took[int(len(took) * 0.99)]:.1f} ms")


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    log = Path(tempfile.mkdtemp()) / "server.log"
    os.environ["BENCH_SERVER_LOG"] = str(log)
    with bench_database(os.environ.get("CHANNEL_DOMAIN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")) as url:
        setup = ChannelDepartment(url)
        own = [signed_contract_of(setup, "retailer", f"Client {n}") for n in range(16)]
        imported = [signed_contract_of(setup, "retailer" if n % 2 else "distributor", f"Importer {n}",
                                       TIERS if n % 4 == 0 else None) for n in range(20)]
        setup.close()
        erp, finance = token(url, "erp", ["integration"]), token(url, "finance", ["finance"])
        with served(url) as api:
            http_load.import_sales(api.base, erp, [str(c) for _, c in imported], lines)
            read_models.catch_up(url, 2)
            read_models.analyze(url)
            reads, writes = http_load.read_statements_under_load(
                api.base, finance, [str(p) for p, _ in imported], [f"2026-{m:02d}" for m in range(3, 12)], rate=50,
                count=1000, writer=erp, contracts=[str(c) for _, c in own], write_rate=200)
            print(f"client side: statements p50 {reads.p50_ms:.1f} p99 {reads.p99_ms:.1f} ms {reads.unexpected};"
                  f" sales p50 {writes.p50_ms:.1f} p99 {writes.p99_ms:.1f} ms {writes.unexpected}")
    _server_side(log)


if __name__ == "__main__":
    main()
