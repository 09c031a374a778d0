"""POST /v1/sales/import throughput, in process (FastAPI's test client), one request.

    .venv/bin/python bench/import_sales.py [--lines 20000] [--contracts 20] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import psycopg
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import create_token
from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.store.database import database_url, scratch_database
from channel_domain.store.migrations import migrate

CONTENTS = {"goals": "g", "products": ["p"], "price_policy": "p", "obligations": "o", "support": "s",
            "confidentiality": "c"}


def signed_retailer_contracts(app: ChannelDepartment, count: int) -> list[str]:
    contracts = []
    for n in range(count):
        with acting_as("spec", ["channel_specialist"]):
            partner = app.register_partner(kind="retailer", name=f"Shop {n}").id
        with acting_as("mgr", ["channel_manager"]):
            app.review_partner(partner, "approve")
            contract = app.draft_contract(partner_id=partner, starts_on="2026-01-01", ends_on="2026-12-31",
                                          commission={"type": "flat", "rate": "0.02"}, **CONTENTS).id
            app.submit_contract(contract)
        with acting_as("gm", ["general_manager"]):
            app.approve_contract(contract)
        with acting_as("mgr", ["channel_manager"]):
            app.sign_contract(contract, "2026-01-01")
        contracts.append(str(contract))
    return contracts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--contracts", type=int, default=20)
    parser.add_argument("--url", default=os.environ.get("CHANNEL_DOMAIN_DATABASE_URL"))
    args = parser.parse_args()
    with scratch_database(args.url or database_url(), prefix="cd_bench") as url:
        migrate(url)
        setup = ChannelDepartment(url)
        contracts = signed_retailer_contracts(setup, args.contracts)
        setup.close()
        with psycopg.connect(url, autocommit=True) as conn:
            token = create_token(conn, "erp", ["integration"])[1]
        body = b"".join(
            json.dumps({"kind": "sale", "contract_id": contracts[n % len(contracts)], "order_id": f"SO-{n}",
                        "amount": "100.00", "sold_on": "2026-03-02"}).encode() + b"\n"
            for n in range(args.lines)
        )
        with TestClient(create_app(url)) as client:
            began = time.perf_counter()
            response = client.post("/v1/sales/import", content=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
            elapsed = time.perf_counter() - began
        result = response.json()
        print(f"{args.lines} lines over {args.contracts} contracts: accepted {result['accepted']},"
              f" rejected {len(result['rejected'])}, {elapsed:.1f} s, {args.lines / elapsed:.0f} lines/s")


if __name__ == "__main__":
    main()
