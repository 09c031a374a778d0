"""P6: a contract with many sales, read as it stood at a past moment (and now, for scale)."""

from __future__ import annotations

from datetime import UTC, datetime

from common import median_ms, signed_contract

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment, SalesLine
from channel_domain.contract import Contract

CHUNK = 1000


def measure(url: str, sales: int, runs: int = 15) -> dict[str, float]:
    """Median milliseconds to load the contract latest and as of the moment half its sales were in."""
    app = ChannelDepartment(url)
    try:
        contract = signed_contract(app, "sales_agent", "Bench")
        halfway = None
        with acting_as("erp", ["integration"]):
            for first in range(0, sales, CHUNK):
                if first >= sales // 2 and halfway is None:
                    halfway = datetime.now(UTC)
                app.import_sales([
                    SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "100.00", "sold_on": "2026-03-01"})
                    for n in range(first, min(first + CHUNK, sales))
                ])
        halfway = halfway or datetime.now(UTC)
        app.get(Contract, contract, as_of=halfway)  # warm, as a server would be
        return {
            "latest": median_ms(lambda: app.get(Contract, contract), runs),
            "as_of": median_ms(lambda: app.get(Contract, contract, as_of=halfway), runs),
        }
    finally:
        app.close()
