"""What the benchmarks share: a scratch database on the chosen server, and signed contracts."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.store.database import database_url, scratch_database
from channel_domain.store.migrations import migrate

CONTENTS = {"goals": "g", "products": ["p"], "price_policy": "p", "obligations": "o", "support": "s",
            "confidentiality": "c"}


def arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    parser.add_argument("--url", default=os.environ.get("CHANNEL_DOMAIN_DATABASE_URL"),
                        help="server to use (default: CHANNEL_DOMAIN_DATABASE_URL or the embedded server)")
    return parser.parse_args()


@contextmanager
def bench_database(server: str | None) -> Iterator[str]:
    """A migrated database of its own, dropped afterwards."""
    with scratch_database(server or database_url(), prefix="cd_bench") as url:
        migrate(url)
        yield url


def signed_contract(app: ChannelDepartment, kind: str, name: str) -> UUID:
    with acting_as("spec", ["channel_specialist"]):
        partner = app.register_partner(kind=kind, name=name).id
    with acting_as("mgr", ["channel_manager"]):
        app.review_partner(partner, "approve")
        contract = app.draft_contract(partner_id=partner, starts_on="2026-01-01", ends_on="2026-12-31",
                                      commission={"type": "flat", "rate": "0.02"}, **CONTENTS).id
        app.submit_contract(contract)
    with acting_as("gm", ["general_manager"]):
        app.approve_contract(contract)
    with acting_as("mgr", ["channel_manager"]):
        app.sign_contract(contract, "2026-01-01")
    return contract
