"""R1: many clients commanding a few hot records over HTTP at once lose no update."""

from __future__ import annotations

import asyncio
import collections
import json

import aiohttp
import psycopg

from tests.channel_domain.test_application import partner, signed_contract

CLIENTS, COMMANDS, HOT = 32, 200, 8


def test_every_answered_command_is_exactly_one_event_and_versions_are_contiguous(app, served, figure):
    contracts = [str(signed_contract(app, partner(app, "retailer"))) for _ in range(HOT)]
    token = served.token("erp", "integration")
    answers: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)  # contract -> (order, status)

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        for n in range(COMMANDS):
            contract = contracts[(number + n) % HOT]
            order = f"C{number}-{n}" if n % 10 else f"C{number}-{n - HOT}"  # every tenth repeats an order here
            headers = {"Authorization": f"Bearer {token}"}
            if n % 4 == 0:  # optimistic: on the version just read, which others may pass first
                async with session.get(f"/v1/contracts/{contract}", headers=headers) as read:
                    headers["If-Match"] = f'"{(await read.json())["version"]}"'
            async with session.post(f"/v1/contracts/{contract}/sales", headers=headers,
                                    json={"order_id": order, "amount": "10.00", "sold_on": "2026-03-02"}) as answer:
                await answer.read()
                answers[contract].append((order, answer.status))

    async def everyone() -> None:
        async with aiohttp.ClientSession(served.base, connector=aiohttp.TCPConnector(limit=CLIENTS),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(client(n, session) for n in range(CLIENTS)))

    asyncio.run(everyone())
    statuses = collections.Counter(status for per in answers.values() for _, status in per)
    assert set(statuses) <= {200, 409, 412, 422}, statuses
    with psycopg.connect(served.database_url) as conn:
        for contract, per in answers.items():
            rows = conn.execute(
                "SELECT originator_version, topic, state FROM events WHERE originator_id = %s"
                " ORDER BY originator_version", (contract,)).fetchall()
            assert [row[0] for row in rows] == list(range(1, len(rows) + 1))  # no gap, no repeat
            recorded = [json.loads(bytes(row[2]))["order_id"] for row in rows
                        if row[1].endswith("Contract.SaleRecorded")]
            accepted = [order for order, status in per if status == 200]
            assert sorted(recorded) == sorted(accepted)  # each answered sale once, nothing unanswered
    assert statuses[412] > 0 and statuses[422] > 0  # both refusals were exercised
    lost = CLIENTS * COMMANDS - sum(statuses.values())
    figure(f"R1: {CLIENTS} clients x {COMMANDS} commands on {HOT} records: {dict(statuses)}, {lost} lost,"
          " versions contiguous")
    assert lost == 0
