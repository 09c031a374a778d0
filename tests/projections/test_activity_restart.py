"""partner_activity after its runner restarts (a new process: a fresh PartnerActivity, its
contract -> partner map empty) still credits a sale of a contract signed before to its partner."""

from __future__ import annotations

import psycopg

from channel_domain.store.projecting import ProjectionRunner
from projections.activity import PartnerActivity
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract


def test_a_sale_after_a_restart_is_credited_to_the_contracts_partner(app, database_url):
    seller = partner(app, kind="retailer")
    contract = signed_contract(app, seller)
    ProjectionRunner(app, [PartnerActivity()], attempts=1, retry_pause_s=0).catch_up_all()
    with as_("erp", "integration"):
        app.record_sale(contract, "SO-1", "100.00", "2026-03-02")
    restarted = ProjectionRunner(app, [PartnerActivity()], attempts=1, retry_pause_s=0)  # a new process
    try:
        restarted.catch_up_all()
    finally:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT order_id, partner_id FROM partner_orders").fetchall()
    assert rows == [("SO-1", seller)]
