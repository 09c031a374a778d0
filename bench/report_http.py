"""P10 diagnostic over HTTP, against an existing bench database (bench/report_sql.py's): the
server as P10 runs it (`serve --projections`), then (1) each report read alone, one request at a
time (the server's own cost of it), (2) some reports at 20/s while sales come at 200/s, as P10,
and the same reports at 20/s with no sales. Run with the checkout's src first on PYTHONPATH: the
server is the `channel-domain` beside the interpreter, reading PYTHONPATH.

    PYTHONPATH=src:bench:. python bench/report_http.py postgresql://…/db [--no-alone] [--sales-alone] [label substring …]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp
import httpx
from common import served, signed_contract_of, token
from http_load import _open_loop, _sales
from reports import REPORTS, read_under_load

from channel_domain.application import ChannelDepartment


def alone(base: str, reader: str, path: str, count: int = 100) -> tuple[float, float]:
    times = []
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {reader}"}) as client:
        client.get(path).raise_for_status()
        for _ in range(count):
            began = time.perf_counter()
            client.get(path).raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def reads_only(base: str, reader: str, path: str, rate: float, count: int) -> object:
    async def read(session: aiohttp.ClientSession, _: int, __: int) -> int:
        async with session.get(path, headers={"Authorization": f"Bearer {reader}"}) as answer:
            await answer.read()
            return answer.status
    return asyncio.run(_open_loop(base, rate, count, read))


def main() -> None:
    url = sys.argv[1]
    skip_alone = "--no-alone" in sys.argv
    wanted = [arg for arg in sys.argv[2:] if not arg.startswith("--")]
    under_load = wanted or ["payout register", "commission efficiency", "partners", "receivables"]
    setup = ChannelDepartment(url)
    contracts = [str(signed_contract_of(setup, "retailer", f"Diag {n} {time.time()}")[1]) for n in range(16)]
    setup.close()
    reader = token(url, "bi", ["reporting"])
    erp = token(url, "erp", ["integration"])
    with served(url, projections=True) as api:
        read_under_load(api.base, reader, REPORTS[0][1], 20, 20, erp, contracts, 200, f"diag-warm-{time.time()}")
        print("(1) alone, 100 sequential requests each", flush=True)
        for label, path in [] if skip_alone else [(lb, pt) for lb, pt in REPORTS
                                                   if not wanted or any(w in lb for w in wanted)]:
            p50, p99 = alone(api.base, reader, path)
            print(f"  {label:42} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms", flush=True)
        print("(2) 200 reads at 20/s: with sales at 200/s | with no sales", flush=True)
        for label, path in REPORTS:
            if not any(wanted in label for wanted in under_load):
                continue
            reads, writes = read_under_load(api.base, reader, path, 20, 200, erp, contracts, 200,
                                            f"diag-{time.time()}")
            quiet = reads_only(api.base, reader, path, 20, 200)
            print(f"  {label:42} p50 {reads.p50_ms:7.1f} p99 {reads.p99_ms:7.1f} ms (sales p50 {writes.p50_ms:.1f}"
                  f" p99 {writes.p99_ms:.1f} ms) | p50 {quiet.p50_ms:6.1f} p99 {quiet.p99_ms:6.1f} ms", flush=True)
        if "--sales-alone" in sys.argv:
            alone_sales = asyncio.run(_open_loop(api.base, 200, 2000, _sales(erp, contracts, f"diag-{time.time()}")))
            print(f"(3) 2000 sales at 200/s, no reads: p50 {alone_sales.p50_ms:.1f} p99 {alone_sales.p99_ms:.1f} ms,"
                  f" {alone_sales.per_second:.0f}/s", flush=True)


if __name__ == "__main__":
    main()
