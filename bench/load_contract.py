"""Loading a contract with many sales: now, at a past version, and as of a past moment.

    .venv/bin/python bench/load_contract.py [--sales 10000] [--url postgresql://...]

Records the sales through the application (snapshots every 100 events), then times each kind
of load over repeated runs and prints the median, beside a full replay without snapshots.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from common import arguments, bench_database, signed_contract

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.contract import Contract


def median_ms(load, runs: int = 15) -> float:
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        load()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=10_000)
    args = arguments(parser)
    with bench_database(args.url) as url:
        app = ChannelDepartment(url)
        contract = signed_contract(app, "sales_agent", "Bench")
        halfway = None
        for n in range(args.sales):
            if n == args.sales // 2:
                halfway = datetime.now(UTC)
            with acting_as("erp", ["integration"]):                app.record_sale(contract, f"O-{n}", "100.00", "2026-03-01")
        version = app.get(Contract, contract).version
        replay = ChannelDepartment(url, env={"IS_SNAPSHOTTING_ENABLED": "no"})
        print(f"contract with {args.sales} sales ({version} events), median of 15 loads:")
        print(f"  latest                    {median_ms(lambda: app.get(Contract, contract)):8.1f} ms")
        print(f"  at version {version // 2:<6}         {median_ms(lambda: app.get(Contract, contract, version=version // 2)):8.1f} ms")
        print(f"  as of a past moment       {median_ms(lambda: app.get(Contract, contract, as_of=halfway)):8.1f} ms")
        print(f"  full replay, no snapshots {median_ms(lambda: replay.repository.get(contract), runs=3):8.1f} ms")
        replay.close()
        app.close()



if __name__ == "__main__":
    main()
