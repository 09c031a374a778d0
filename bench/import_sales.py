"""POST /v1/sales/import throughput, in process (FastAPI's test client), one request.

    .venv/bin/python bench/import_sales.py [--lines 20000] [--contracts 20] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg
from common import arguments, bench_database, signed_contract
from fastapi.testclient import TestClient

from api.app import create_app
from api.tokens import create_token
from channel_domain.application import ChannelDepartment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--contracts", type=int, default=20)
    args = arguments(parser)
    with bench_database(args.url) as url:
        setup = ChannelDepartment(url)
        contracts = [str(signed_contract(setup, "retailer", f"Shop {n}")) for n in range(args.contracts)]
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
