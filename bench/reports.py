"""P10: the reports of issue 16 over a year's log — each report's p99 read at a steady rate while
sales arrive, and the full-year sales detail streamed as CSV.

`REPORTS` is the list of report requests measured: add a path here and it is measured; a path
the server does not serve (404) is reported as such, never skipped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import httpx
from http_load import Load, _open_loop, _sales

# (label, path and query): one period each, as a reporting tool asks.
REPORTS: list[tuple[str, str]] = [
    ("sales by partner, a month", "/v1/reports/sales?period=2026-06&group_by=partner"),
    ("sales by region, a month", "/v1/reports/sales?period=2026-06&group_by=region"),
    ("sales by product, a month", "/v1/reports/sales?period=2026-06&group_by=product"),
    ("sales by employee, a month", "/v1/reports/sales?period=2026-06&group_by=employee"),
    ("sales by month, a year", "/v1/reports/sales?period=2026&group_by=month"),
    ("sales by partner, a quarter", "/v1/reports/sales?period=2026-Q2&group_by=partner"),
    ("sales lines, a month's first page of 1000", "/v1/reports/sales?period=2026-06&group_by=order&limit=1000"),
    ("key terminals, a month", "/v1/reports/key-terminals?period=2026-06"),
    ("key terminals, a year", "/v1/reports/key-terminals?period=2026"),
    ("commission efficiency, a month", "/v1/reports/commission-efficiency?period=2026-06"),
    ("partners, a month", "/v1/reports/partners?period=2026-06"),
    ("inventory as of a day", "/v1/reports/inventory?as_of=2026-06-30"),
    ("receivables as of a day", "/v1/reports/receivables?as_of=2026-07-31"),
    ("payout register, a month", "/v1/reports/payouts?period=2026-06"),
    ("evaluations, a month", "/v1/reports/evaluations?period=2026-06"),
]
DETAIL_CSV = "/v1/reports/sales?period=2026&group_by=order&format=csv"


@dataclass(frozen=True)
class Streamed:
    rows: int
    seconds: float
    first_byte_ms: float
    megabytes: float

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds


def probe(base: str, reader: str, path: str) -> int:
    """The status a report answers once (warms the server's pools; 404: not served)."""
    with httpx.Client(base_url=base, timeout=120) as client:
        return client.get(path, headers={"Authorization": f"Bearer {reader}"}).status_code


def read_under_load(base: str, reader: str, path: str, rate: float, count: int, writer: str,
                    contracts: list[str], write_rate: float, prefix: str) -> tuple[Load, Load]:
    """(reads, writes): `path` read at a steady `rate` while sales are recorded at a steady
    `write_rate`, both open loop (each request timed from when it was due), as P7."""
    async def read(session: aiohttp.ClientSession, _: int, __: int) -> int:
        async with session.get(path, headers={"Authorization": f"Bearer {reader}"}) as answer:
            await answer.read()
            return answer.status

    async def both() -> tuple[Load, Load]:
        writes = int(count / rate * write_rate)
        return tuple(await asyncio.gather(_open_loop(base, rate, count, read),
                                          _open_loop(base, write_rate, writes, _sales(writer, contracts, prefix))))

    return asyncio.run(both())


def stream_csv(base: str, reader: str, path: str = DETAIL_CSV) -> Streamed:
    """Rows a second of one CSV answer, from the request to its last byte (header line excluded)."""
    newlines = size = 0
    first = None
    with httpx.Client(base_url=base, timeout=3600) as client:
        began = time.perf_counter()
        with client.stream("GET", path, headers={"Authorization": f"Bearer {reader}"}) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_raw(1 << 16):
                if first is None:
                    first = time.perf_counter()
                newlines += chunk.count(b"\n")
                size += len(chunk)
        seconds = time.perf_counter() - began
    return Streamed(newlines - 1, seconds, ((first or began) - began) * 1000, size / 1e6)
