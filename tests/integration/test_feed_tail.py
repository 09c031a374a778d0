"""The shared tail's memory: a client served from it gets exactly what a client reading the log
alone gets, also once the tail has trimmed what it keeps (a client between what was dropped
and what is held must neither miss an event nor see one twice)."""

from __future__ import annotations

import asyncio

import psycopg

from integration.feed import FeedTail, next_page
from integration.items import EventFilter
from tests.api.flows import SPECIALIST, post


def test_a_client_anywhere_behind_a_trimmed_tail_gets_the_very_next_event(api):
    department = api.department
    everything = EventFilter.of()

    async def scenario() -> tuple[list[int], list[list[int]]]:
        tail = FeedTail(department, poll_interval_s=0.005, capacity=4)  # trimmed past 8 held events
        try:
            async with tail.watching():
                for n in range(30):
                    await asyncio.to_thread(post, api, "/v1/partners", {"kind": "retailer", "name": f"shop {n}"},
                                            SPECIALIST, 201)
                await tail.wait_beyond(await asyncio.to_thread(department.event_recorder.max_notification_id), 10)
                assert tail.held_from is not None and tail.held_from > 0, "the tail never trimmed"
                head = tail.examined
                nexts = []
                for after in range(head):
                    page = await next_page(tail, after, everything, 1, wait_s=1)
                    nexts.append([entry.position for entry in page.entries])
                return list(range(head)), nexts
        finally:
            await tail.close()

    afters, nexts = asyncio.run(scenario())
    with psycopg.connect(api.database_url) as conn:
        log = [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]
    for after, got in zip(afters, nexts, strict=True):
        assert got == [next(p for p in log if p > after)], f"after {after}: {got}"
