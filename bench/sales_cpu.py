"""P10 diagnostic: where the CPU goes while sales arrive at 200/s over HTTP, against an existing
bench database: `serve` with its read models kept (as P10 runs it) and without (`--no-projections`),
each for 2 000 sales open loop. CPU seconds are read from /proc for the server's processes, the
PostgreSQL server behind the URL and this client, over the load alone (`common.cpu_shares`).

    PYTHONPATH=src:bench:. python bench/sales_cpu.py postgresql://…/db
"""

from __future__ import annotations

import asyncio
import sys
import time

from common import cpu_shares, served, signed_contract_of, token
from http_load import _open_loop, _sales

from channel_domain.application import ChannelDepartment


def main() -> None:
    url = sys.argv[1]
    setup = ChannelDepartment(url)
    contracts = [str(signed_contract_of(setup, "retailer", f"CPU {n} {time.time()}")[1]) for n in range(16)]
    setup.close()
    erp = token(url, "erp", ["integration"])
    for projections in (True, False):
        with served(url, projections=projections) as api:
            asyncio.run(_open_loop(api.base, 200, 400, _sales(erp, contracts, f"cpu-warm-{time.time()}")))
            time.sleep(2)
            with cpu_shares(api.pid, url) as shares:
                began = time.perf_counter()
                load = asyncio.run(_open_loop(api.base, 200, 2000, _sales(erp, contracts, f"cpu-{time.time()}")))
                wall = time.perf_counter() - began
            cpu = shares()
            database = "not counted" if cpu.postgres is None else f"{cpu.postgres:.1f}"
            print(f"read models {'kept' if projections else 'off '}: sales p50 {load.p50_ms:.1f} p99 {load.p99_ms:.1f} ms,"
                  f" {load.per_second:.0f}/s over {wall:.1f} s; CPU s: server {cpu.server:.1f}, PostgreSQL"
                  f" {database}, client {cpu.client:.1f} (of {2 * wall:.1f} on 2 cores)", flush=True)


if __name__ == "__main__":
    main()
