"""Loading a contract with many sales: now, at a past version, and as of a past moment.

    .venv/bin/python bench/load_contract.py [--sales 10000] [--url postgresql://...]

Records the sales through the application (snapshots every 100 events), then times each kind
of load over repeated runs and prints the median, beside a full replay without snapshots.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.contract import Contract
from channel_domain.store.database import database_url, scratch_database
from channel_domain.store.migrations import migrate

CONTENTS = {"goals": "g", "products": ["p"], "price_policy": "p", "obligations": "o",
            "support": "s", "confidentiality": "c"}


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
    parser.add_argument("--url", default=os.environ.get("CHANNEL_DOMAIN_DATABASE_URL"))
    args = parser.parse_args()
    server = args.url or database_url()
    with scratch_database(server, prefix="cd_bench") as url:
        migrate(url)
        app = ChannelDepartment(url)
        with acting_as("spec", ["channel_specialist"]):
            partner = app.register_partner(kind="sales_agent", name="Bench").id
        with acting_as("mgr", ["channel_manager"]):
            app.review_partner(partner, "approve")
            contract = app.draft_contract(partner_id=partner, starts_on="2026-01-01", ends_on="2026-12-31",
                                          commission={"type": "flat", "rate": "0.02"}, **CONTENTS).id
            app.submit_contract(contract)
        with acting_as("gm", ["general_manager"]):
            app.approve_contract(contract)
        with acting_as("mgr", ["channel_manager"]):
            app.sign_contract(contract, "2026-01-01")
        halfway = None
        for n in range(args.sales):
            if n == args.sales // 2:
                halfway = datetime.now(UTC)
            with acting_as("erp", ["integration"]):
                app.record_sale(contract, f"O-{n}", "100.00", "2026-03-01")
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
