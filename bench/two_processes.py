"""Issue 18 diagnostic: two applications on one database — as two `serve` workers are — take
sales on 16 contracts in turn, one command at a time; commands/s and CPU per command.

    PYTHONPATH=src:bench:. python bench/two_processes.py postgresql://…/db   # a migrated database
"""

from __future__ import annotations

import itertools
import sys
import time

from common import signed_contract_of

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment


def main() -> None:
    url = sys.argv[1]
    apps = [ChannelDepartment(url), ChannelDepartment(url)]
    contracts = [signed_contract_of(apps[0], "retailer", f"Two {n} {time.time()}")[1] for n in range(16)]
    orders = itertools.count()

    def run(commands: int) -> tuple[float, float]:
        began, cpu = time.perf_counter(), time.process_time()
        for n in range(commands):
            with acting_as("erp", ["integration"]):
                apps[n % 2].record_sale(contracts[(n // 2) % 16], f"TWO-{time.time()}-{next(orders)}", "100.00",
                                        "2026-03-02")
        return commands / (time.perf_counter() - began), (time.process_time() - cpu) / commands * 1000

    run(200)
    for _ in range(3):
        rate, cpu_ms = run(1500)
        print(f"{rate:.0f} commands/s, {cpu_ms:.2f} ms of CPU each", flush=True)
    for app in apps:
        app.close()


if __name__ == "__main__":
    main()
