"""Read models as rows, and a log that exercises the commission ledger: shared by the rebuild
tests and the crash test (R3), which both compare read models with a clean rebuild."""

from __future__ import annotations

import random
from uuid import UUID

import psycopg

from channel_domain.application import SalesLine
from projections import all_projections
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract

TIERED_SALES = 2000
TIERED = {"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": "0.045"}]}


TABLES = [table for projection in all_projections() for table in projection.tables]


WHEN_WRITTEN = {"event_seals": "sealed_at"}  # the one column that says when, not what


def read_models(database_url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(database_url) as conn:
        models = {}
        for table in TABLES:
            rows = conn.execute(f"SELECT to_jsonb(r) - %s::text AS row FROM {table} AS r ORDER BY r",
                                (WHEN_WRITTEN.get(table, ""),)).fetchall()
            models[table] = [row[0] for row in rows]
        return models


def record_tiered_sales(app, rng: random.Random) -> None:
    """Sales reported out of date order under tiered terms, returns, and amendments with past
    effective dates: the commission ledger's adjustments, under crashes too."""
    contract = signed_contract(app, partner(app, "retailer"), commission=TIERED)
    for chunk in range(4):
        lines = []
        for n in range(TIERED_SALES // 4):
            order = f"T-{chunk}-{n}"
            day = f"2026-0{rng.randint(2, 4)}-{rng.randint(1, 28):02d}"
            lines.append(SalesLine(contract, "sale", {"order_id": order, "amount": f"{rng.randint(1, 900)}000.00",
                                                      "sold_on": day}))
            if n % 7 == 0:
                lines.append(SalesLine(contract, "return", {"order_id": order, "amount": "500.00",
                                                            "returned_on": "2026-04-28"}))
        with as_("erp", "integration"):
            assert not any(app.import_sales(lines))
        with as_("mgr-1", "channel_manager"):
            rate = f"0.0{5 + chunk}"
            amendment_id = UUID(app.request_amendment(
                contract, effective_on=f"2026-0{2 + chunk % 3}-15", reason="new scale",
                commission={"type": "tiered", "tiers": [{"up_to": "100000.00", "rate": "0.03"}, {"rate": rate}]},
            ).extra["amendment_id"])
        with as_("gm-1", "general_manager"):
            app.approve_amendment(contract, amendment_id, app.preview_amendment(contract, amendment_id).digest)
