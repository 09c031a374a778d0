"""Months of recorded times are read in the company's time zone (domain.md: Beijing time,
configurable with CHANNEL_DOMAIN_TIME_ZONE)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg

from channel_domain.aggregate import ChannelAggregate
from channel_domain.application import ChannelDepartment
from channel_domain.company_time import local_date, recorded_month
from channel_domain.context import acting_as
from channel_domain.store.projecting import ProjectionRunner
from projections.commissions import Commissions
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract
from tests.channel_domain.test_contract_requests import approve_amendment, request_amendment

# 07:30 on 1 April in Beijing.
LATE_ON_31_MARCH_UTC = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)


def test_a_recorded_time_is_read_on_the_companys_calendar(monkeypatch):
    monkeypatch.delenv("CHANNEL_DOMAIN_TIME_ZONE", raising=False)
    assert local_date(LATE_ON_31_MARCH_UTC) == date(2026, 4, 1)
    assert recorded_month(LATE_ON_31_MARCH_UTC) == "2026-04"
    with acting_as("fin-1", ["finance"], now=LATE_ON_31_MARCH_UTC) as context:
        assert context.today == date(2026, 4, 1)
    monkeypatch.setenv("CHANNEL_DOMAIN_TIME_ZONE", "UTC")
    assert recorded_month(LATE_ON_31_MARCH_UTC) == "2026-03"


def adjustments_of_an_amendment_recorded_late_on_31_march_utc(app, database_url, monkeypatch) -> list[tuple]:
    contract = signed_contract(app, partner(app, "retailer"), commission={"type": "flat", "rate": "0.03"})
    with as_("erp", "integration"):
        app.record_sale(contract, "A", "10000.00", "2026-02-10")
    with monkeypatch.context() as clock:
        clock.setattr(ChannelAggregate.Event, "create_timestamp", staticmethod(lambda: LATE_ON_31_MARCH_UTC))
        approve_amendment(app, contract, request_amendment(app, contract, "2026-02-01",
                                                           {"type": "flat", "rate": "0.05"}, reason="new scale"))
    runner = ProjectionRunner(app, [Commissions()])
    runner.catch_up(runner.projections[0])
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT period, corrects_period, commission FROM commission_lines"
                            " WHERE kind = 'adjustment'").fetchall()


def test_an_amendment_recorded_at_0730_beijing_time_on_1_april_books_its_adjustment_in_april(
        app, database_url, monkeypatch):
    monkeypatch.delenv("CHANNEL_DOMAIN_TIME_ZONE", raising=False)
    # February's 10 000 at 5 % instead of 3 %: 200 more, booked in April.
    assert adjustments_of_an_amendment_recorded_late_on_31_march_utc(app, database_url, monkeypatch) == [
        ("2026-04", "2026-02", Decimal("200.00"))]


def test_with_the_company_on_utc_the_same_amendment_books_in_march(app, database_url, monkeypatch):
    monkeypatch.setenv("CHANNEL_DOMAIN_TIME_ZONE", "UTC")
    assert adjustments_of_an_amendment_recorded_late_on_31_march_utc(app, database_url, monkeypatch) == [
        ("2026-03", "2026-02", Decimal("200.00"))]


def test_sql_reads_recorded_days_on_the_company_calendar_of_the_service_sessions(database_url, monkeypatch):
    for zone, day in ((None, date(2026, 4, 1)), ("UTC", date(2026, 3, 31))):
        if zone is None:
            monkeypatch.delenv("CHANNEL_DOMAIN_TIME_ZONE", raising=False)
        else:
            monkeypatch.setenv("CHANNEL_DOMAIN_TIME_ZONE", zone)
        with ChannelDepartment(database_url) as department, department.event_recorder.datastore.get_connection() as conn:
            found = conn.execute("SELECT company_time_zone() AS zone, company_date(%s) AS day",
                                 (LATE_ON_31_MARCH_UTC,)).fetchone()
            assert (found["zone"], found["day"]) == (zone or "Asia/Shanghai", day)


def test_a_finding_is_raised_on_the_day_the_company_recorded_it(app, database_url, monkeypatch):
    monkeypatch.delenv("CHANNEL_DOMAIN_TIME_ZONE", raising=False)
    retailer = partner(app, "retailer")
    signed_contract(app, retailer)
    with as_("spec-1", "channel_specialist"):
        change = app.request_payout_account_change(retailer, "6222 0001").extra["change_id"]
    with as_("fin-1", "finance"):
        app.approve_payout_account_change(retailer, change)
    with monkeypatch.context() as clock, as_("spec-1", "channel_specialist"):
        clock.setattr(ChannelAggregate.Event, "create_timestamp", staticmethod(lambda: LATE_ON_31_MARCH_UTC))
        app.prepare_payout(retailer, "2026-03", "10.00")  # the statement's total due is 0.00
    runner = ProjectionRunner(app, [Commissions()])
    runner.catch_up(runner.projections[0])
    with psycopg.connect(database_url) as conn:
        raised = conn.execute("SELECT raised_on FROM audit_findings WHERE kind = 'payout_not_total_due'").fetchall()
    assert raised == [(date(2026, 4, 1),)]
