"""Housing subsidies and remittances as stored: events and snapshots from before issue 13 still load."""

from __future__ import annotations

from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from channel_domain.partner import Partner
from channel_domain.store.backfills import copy_housing_subsidy_grants
from channel_domain.store.projecting import ProjectionRunner
from projections.commissions import Commissions, statement
from tests.channel_domain.helpers import as_, refused
from tests.channel_domain.test_application import partner


def test_a_stored_one_step_subsidy_grant_loads_as_prepared(app):
    retailer = partner(app, "retailer")
    record = app.get(Partner, retailer)
    with as_("old-clerk", "finance"):
        record.trigger_event(Partner.HousingSubsidyGranted, period="2026-02", amount=Decimal("500.00"))
    app.save(record)
    app.records.forget(retailer)
    loaded = app.get(Partner, retailer)
    subsidy = loaded.housing_subsidies["2026-02"]
    assert (subsidy["status"], subsidy["amount"], subsidy["prepared_by"], subsidy["account"]) == (
        "prepared", Decimal("500.00"), "old-clerk", None)
    with as_("old-clerk", "finance"), refused("segregation_of_duties"):
        app.verify_housing_subsidy(retailer, "2026-02")
    with as_("fin-1", "finance"):
        app.verify_housing_subsidy(retailer, "2026-02")
    assert app.get(Partner, retailer).housing_subsidies["2026-02"]["verified_by"] == "fin-1"


def test_a_partner_snapshot_from_before_subsidies_had_steps_is_upcast(app):
    retailer = partner(app, "retailer")
    record = app.get(Partner, retailer)
    old = Partner.Snapshot.take(record)
    old.state.pop("class_version")
    old.state["housing_subsidies"] = {"2026-01": Decimal("300.00")}  # the shape of class version 1
    old.state.pop("remittances")
    app.snapshots.put([old])
    app.records.forget(retailer)
    loaded = app.get(Partner, retailer)
    assert loaded.remittances == {}
    assert (loaded.housing_subsidies["2026-01"]["status"], loaded.housing_subsidies["2026-01"]["amount"]) == (
        "prepared", Decimal("300.00"))


def test_a_grant_the_read_model_passed_before_0013_reaches_the_statement_after_the_upgrade(app, database_url):
    retailer = partner(app, "retailer")
    record = app.get(Partner, retailer)
    with as_("old-clerk", "finance"):
        record.trigger_event(Partner.HousingSubsidyGranted, period="2026-02", amount=Decimal("500.00"))
    app.save(record)
    runner = ProjectionRunner(app, [Commissions()])
    runner.catch_up(runner.projections[0])
    with psycopg.connect(database_url, autocommit=True) as conn:
        # As the read model stood when it had passed the grant before subsidies had a table.
        conn.execute("DELETE FROM commission_housing_subsidies")
        copy_housing_subsidy_grants(conn)  # what migration 0019 runs
        copy_housing_subsidy_grants(conn)  # a grant is copied once
        with conn.cursor(row_factory=dict_row) as cursor:
            stated = statement(cursor, retailer, "2026-02", with_lines=False)
            copied = conn.execute("SELECT count(*) FROM commission_housing_subsidies").fetchone()[0]
    assert (stated["housing_subsidy"], copied) == ({"amount": Decimal("500.00"), "status": "prepared"}, 1)
