"""Issue 18 diagnostic: sales through the ASGI application itself, one after another, with no
socket or HTTP server between: the CPU a request costs in the framework, the dependencies and
the command together. With PROFILE=1, a cProfile of the event loop's thread as well.

    PYTHONPATH=src:bench:. python bench/asgi_sales.py postgresql://…/db [requests]   # a migrated database
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import sys
import time

from common import signed_contract_of, token

from api.app import create_app
from channel_domain.application import ChannelDepartment


def main() -> None:
    url = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    setup = ChannelDepartment(url)
    contracts = [str(signed_contract_of(setup, "retailer", f"ASGI {n} {time.time()}")[1]) for n in range(16)]
    setup.close()
    authorization = f"Bearer {token(url, 'erp', ['integration'])}".encode()
    app = create_app(url)
    prefix = f"asgi-{time.time()}"

    async def sale(number: int) -> None:
        body = json.dumps({"order_id": f"{prefix}-{number}", "amount": "100.00", "sold_on": "2026-03-02"}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": f"/v1/contracts/{contracts[number % 16]}/sales", "raw_path": b"",
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("bench", 80),
                 "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                             (b"authorization", authorization), (b"content-length", str(len(body)).encode())]}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async def run() -> None:
        async with app.router.lifespan_context(app):
            for number in range(100):  # warm: the department, the token cache, each contract
                await sale(number)
            began, cpu = time.perf_counter(), time.process_time()
            for number in range(100, 100 + requests):
                await sale(number)
            print(f"{requests / (time.perf_counter() - began):.0f} requests/s one at a time,"
                  f" {(time.process_time() - cpu) / requests * 1000:.3f} ms of CPU each", flush=True)
            if os.environ.get("PROFILE"):
                profile = cProfile.Profile()
                profile.enable()
                for number in range(100 + requests, 100 + 2 * requests):
                    await sale(number)
                profile.disable()
                profile.dump_stats("var/asgi_sales.prof")
                print("profile: var/asgi_sales.prof")

    asyncio.run(run())


if __name__ == "__main__":
    main()
