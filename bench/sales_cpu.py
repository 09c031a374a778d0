"""P10 diagnostic: where the CPU goes while sales arrive at 200/s over HTTP, against an existing
bench database: `serve` with its read models kept (as P10 runs it) and without (`--no-projections`),
each for 2 000 sales open loop. CPU seconds are read from /proc for the server's processes, every
PostgreSQL process and this client, over the load alone.

    PYTHONPATH=src:bench:. python bench/sales_cpu.py postgresql://…/db
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from common import served, signed_contract_of, token
from http_load import _open_loop, _sales

from channel_domain.application import ChannelDepartment

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _tree(root: int) -> list[int]:
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _postgres() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


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
            server = _tree(api.pid)
            database = _postgres()
            before = ([_cpu(p) for p in server], [_cpu(p) for p in database], time.process_time())
            began = time.perf_counter()
            load = asyncio.run(_open_loop(api.base, 200, 2000, _sales(erp, contracts, f"cpu-{time.time()}")))
            wall = time.perf_counter() - began
            server_cpu = sum(_cpu(p) for p in server) - sum(before[0])
            database_cpu = sum(_cpu(p) for p in database) - sum(before[1])
            client_cpu = time.process_time() - before[2]
            print(f"read models {'kept' if projections else 'off '}: sales p50 {load.p50_ms:.1f} p99 {load.p99_ms:.1f} ms,"
                  f" {load.per_second:.0f}/s over {wall:.1f} s; CPU s: server {server_cpu:.1f}, PostgreSQL"
                  f" {database_cpu:.1f}, client {client_cpu:.1f} (of {2 * wall:.1f} on 2 cores)", flush=True)


if __name__ == "__main__":
    main()
