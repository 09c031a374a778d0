"""Every event says who, on whose behalf and when; no command goes unattributed."""

from __future__ import annotations

from datetime import UTC, date, datetime

from channel_domain import acting_as
from channel_domain.aggregate import effective_on
from channel_domain.employee import Employee
from tests.channel_domain.helpers import refused


def test_events_carry_actor_roles_correlation_and_causation_from_the_context():
    with acting_as("hr-1", ["hr", "finance"], correlation_id="req-42", causation_id="msg-7") as context:
        employee = Employee.hire(name="Zhao Lei", role="specialist", hired_on="2026-01-05")
        employee.regularize("2026-02-01")
    hired, regularized = employee.collect_events()
    for event in (hired, regularized):
        assert event.meta == {
            "actor": "hr-1",
            "roles": ["finance", "hr"],
            "correlation_id": "req-42",
            "causation_id": "msg-7",
            "command_id": context.command_id,
        }
        assert event.timestamp.tzinfo is not None and event.timestamp.utcoffset().total_seconds() == 0
        assert abs(event.timestamp - datetime.now(UTC)).total_seconds() < 60


def test_correlation_and_causation_default_to_the_command_itself():
    with acting_as("hr-1", ["hr"]) as context:
        employee = Employee.hire(name="Zhao Lei", role="specialist", hired_on="2026-01-05")
    (hired,) = employee.collect_events()
    assert hired.meta["correlation_id"] == hired.meta["causation_id"] == context.command_id


def test_business_effective_date_is_taken_from_the_event():
    with acting_as("hr-1", ["hr"]):
        employee = Employee.hire(name="Zhao Lei", role="specialist", hired_on="2026-01-05", contract_months=0)
        employee.evaluate("2026-Q1", 80)
    hired, evaluated = employee.collect_events()
    assert effective_on(hired) == date(2026, 1, 5)
    assert effective_on(evaluated) is None


def test_no_command_without_an_actor():
    with refused("missing_command_context"):
        Employee.hire(name="Zhao Lei", role="specialist", hired_on="2026-01-05")
    with refused("missing_command_context"), acting_as("  ", ["hr"]):
        pass
