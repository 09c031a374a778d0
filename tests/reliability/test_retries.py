"""R2: commands sent two or three times with one Idempotency-Key, some repeats racing the
first: each is recorded once, and every repeat is answered exactly as the first was."""

from __future__ import annotations

import asyncio
import collections
import random

import aiohttp
import pytest

from tests.channel_domain.test_application import partner, signed_contract
from tests.reliability.conftest import recorded_orders

COMMANDS, WORKERS, CONTRACTS = 10_000, 32, 64


# A guard against a hang, not a time limit: 10 000 commands sent 25 000 times took up to 290 s on a loaded two-core CI machine.
@pytest.mark.timeout(900)
def test_repeats_write_nothing_and_answer_as_the_first(app, served, figure):
    contracts = [str(signed_contract(app, partner(app, "retailer"))) for _ in range(CONTRACTS)]
    token = served.token("erp", "integration")
    rng = random.Random(7)
    plan = [(n, 2 + (rng.random() < 0.5), rng.random() < 0.5) for n in range(COMMANDS)]  # (n, sends, racing)
    answers: dict[int, list[tuple[int, str, dict]]] = collections.defaultdict(list)
    in_flight = 0

    async def send(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal in_flight
        while True:
            async with session.post(
                f"/v1/contracts/{contracts[n % CONTRACTS]}/sales",
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"key-{n}"},
                json={"order_id": f"O-{n}", "amount": "10.00", "sold_on": "2026-03-02"},
            ) as answer:
                body = await answer.json()
                if answer.status == 409 and body.get("code") == "idempotency_key_in_flight":
                    in_flight += 1  # the first is still running: as a client would, ask again
                    await asyncio.sleep(0.01)
                    continue
                answers[n].append((answer.status, answer.headers.get("Idempotent-Replayed", ""), body))
                return

    async def worker(session: aiohttp.ClientSession, queue: asyncio.Queue) -> None:
        while not queue.empty():
            n, sends, racing = queue.get_nowait()
            if racing:  # the first and a repeat at once, as after a client's timeout
                await asyncio.gather(send(session, n), send(session, n))
                sends -= 2
            for _ in range(sends):
                await send(session, n)

    async def everyone() -> None:
        queue: asyncio.Queue = asyncio.Queue()
        for item in plan:
            queue.put_nowait(item)
        async with aiohttp.ClientSession(served.base, connector=aiohttp.TCPConnector(limit=WORKERS * 2),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(worker(session, queue) for _ in range(WORKERS)))

    asyncio.run(everyone())
    sent = sum(len(per) for per in answers.values())
    assert sent == sum(sends for _, sends, _ in plan)
    different = 0
    for n, per in answers.items():
        firsts = [answer for answer in per if answer[1] != "true"]
        assert len(firsts) == 1, (n, per)  # exactly one answer was the command itself
        status, _, body = firsts[0]
        assert status == 200, body
        different += sum((replay[0], replay[2]) != (status, body) for replay in per if replay[1] == "true")
    orders = recorded_orders(served.database_url)
    duplicates = sum(count - 1 for count in orders.values())
    figure(f"R2: {COMMANDS} commands sent {sent} times ({in_flight} answered 409 while the first ran):"
          f" {len(orders)} recorded, {duplicates} duplicate events, {different} replays unlike the first answer")
    assert (len(orders), duplicates, different) == (COMMANDS, 0, 0)
