"""/v1/employees over HTTP: every command, personal fields for hr only, history and time travel."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.api.flows import HR, MANAGER, REPORTING, post, problem


def hire(api, **fields) -> dict:
    body = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2026-01-05", "national_id": "330101199001011234",
            "bank_card": "6222000011112222", **fields}
    return post(api, "/v1/employees", body, HR, 201).json()


def test_hire_defaults_to_the_legal_probation_and_refuses_more(api):
    employee = hire(api)
    assert (employee["status"], employee["probation_months"], employee["probation_ends_on"]) == ("probation", 2, "2026-03-04")
    problem(post(api, "/v1/employees", {"name": "X", "role": "sales_rep", "hired_on": "2026-01-05",
                                        "probation_months": 3}, HR, None), 422, "probation_exceeds_legal_cap")


def test_probation_regularize_and_fail(api):
    employee = hire(api)["id"]
    assert post(api, f"/v1/employees/{employee}/regularize", {"on": "2026-02-20"}, HR).json()["status"] == "regular"
    problem(post(api, f"/v1/employees/{employee}/fail-probation", {"on": "2026-02-21", "reason": "x"}, HR, None),
            422, "invalid_transition")
    other = hire(api)["id"]
    failed = post(api, f"/v1/employees/{other}/fail-probation", {"on": "2026-02-01", "reason": "absent"}, HR).json()
    assert failed["status"] == "probation_failed"


def test_promote_transfer_evaluate(api):
    manager = hire(api, role="manager")["id"]
    employee = hire(api, contract_months=0)["id"]  # still employed whenever the test runs
    assert post(api, f"/v1/employees/{employee}/promote", {"role": "supervisor", "on": "2026-06-01"}, HR).json()["role"] == "supervisor"
    moved = post(api, f"/v1/employees/{employee}/transfer", {"manager_id": manager, "on": "2026-06-01"}, HR).json()
    assert moved["manager_id"] == manager
    scored = post(api, f"/v1/employees/{employee}/evaluations", {"period": "2026-Q2", "score": 88}, MANAGER).json()
    assert scored["evaluations"] == {"2026-Q2": "88"}
    problem(post(api, f"/v1/employees/{employee}/evaluations", {"period": "2026-Q2", "score": 70}, HR, None),
            422, "duplicate_evaluation")


def test_warnings_and_dismissal(api):
    employee = hire(api, contract_months=0)["id"]  # still employed whenever the test runs
    problem(post(api, f"/v1/employees/{employee}/warnings", {"level": "serious", "reason": "late"}, HR, None),
            422, "warning_ladder_skipped")
    problem(post(api, f"/v1/employees/{employee}/dismiss", {"on": "2026-03-01", "reason": "late"}, HR, None),
            422, "dismissal_not_warranted")
    post(api, f"/v1/employees/{employee}/warnings", {"level": "dereliction", "reason": "left the till open"}, HR)
    dismissed = post(api, f"/v1/employees/{employee}/dismiss", {"on": "2026-03-01", "reason": "dereliction"}, HR)
    assert dismissed.json()["status"] == "dismissed"


def test_december_contract_review(api):
    employee = hire(api)["id"]
    problem(post(api, f"/v1/employees/{employee}/contract-reviews", {"on": "2026-11-15", "decision": "renew"}, HR,
                 None), 422, "review_outside_december")
    renewed = post(api, f"/v1/employees/{employee}/contract-reviews",
                   {"on": "2026-12-15", "decision": "renew", "contract_months": 12}, HR).json()
    assert (renewed["contract_starts_on"], renewed["contract_ends_on"]) == ("2027-01-05", "2028-01-04")


def test_personal_fields_are_for_hr_only(api):
    employee = hire(api)
    assert employee["national_id"] == "330101199001011234"
    as_reporting = api.get(f"/v1/employees/{employee['id']}", actor=REPORTING[0], roles=REPORTING[1]).json()
    assert not {"name", "national_id", "bank_card"} & set(as_reporting)
    history = api.get(f"/v1/employees/{employee['id']}/history").json()["items"]
    assert "national_id" not in history[0]["data"] and history[0]["data"]["role"] == "sales_rep"
    as_hr = api.get(f"/v1/employees/{employee['id']}/history", actor=HR[0], roles=HR[1]).json()["items"]
    assert as_hr[0]["data"]["bank_card"] == "6222000011112222"


def test_time_travel_by_version_and_moment(api):
    employee = hire(api)["id"]
    before = datetime.now(UTC)
    time.sleep(0.01)
    post(api, f"/v1/employees/{employee}/regularize", {"on": "2026-02-20"}, HR)
    assert api.get(f"/v1/employees/{employee}", version=1).json()["status"] == "probation"
    assert api.get(f"/v1/employees/{employee}", as_of=before.isoformat()).json()["status"] == "probation"
    assert api.get(f"/v1/employees/{employee}").json()["status"] == "regular"
    problem(api.get(f"/v1/employees/{employee}", version=5), 404, "not_found")
    problem(api.get(f"/v1/employees/{employee}", as_of="2000-01-01T00:00:00Z"), 404, "not_found")
    problem(api.get(f"/v1/employees/{employee}", as_of="2026-01-01T00:00:00"), 422, "validation_error")


def test_history_pages_with_a_cursor(api):
    employee = hire(api)["id"]
    post(api, f"/v1/employees/{employee}/regularize", {"on": "2026-02-20"}, HR)
    post(api, f"/v1/employees/{employee}/promote", {"role": "supervisor", "on": "2026-06-01"}, HR)
    first = api.get(f"/v1/employees/{employee}/history", limit=2).json()
    assert [item["type"] for item in first["items"]] == ["Employee.Hired", "Employee.Regularized"]
    rest = api.get(f"/v1/employees/{employee}/history", limit=2, cursor=first["next_cursor"]).json()
    assert [item["type"] for item in rest["items"]] == ["Employee.Promoted"] and rest["next_cursor"] is None
    assert rest["items"][0]["effective_on"] == "2026-06-01"


def separated_long_ago(api, **fields) -> dict:
    """Hired in 2020, left at the end of that year: erasable since 2022-12-31."""
    employee = hire(api, hired_on="2020-01-06", **fields)
    post(api, f"/v1/employees/{employee['id']}/separation", {"on": "2020-12-30", "reason": "resignation"}, HR)
    return employee


def test_erasure_makes_personal_fields_unreadable_everywhere_and_keeps_the_rest(api):
    employee = separated_long_ago(api)
    erased = post(api, f"/v1/employees/{employee['id']}/personal-data/erase", None, HR).json()
    assert erased["personal_data_erased"] is True
    assert (erased["name"], erased["national_id"], erased["bank_card"]) == (None, None, None)
    assert erased["role"] == "sales_rep" and erased["hired_on"] == "2020-01-06"
    as_hr = api.get(f"/v1/employees/{employee['id']}", actor=HR[0], roles=HR[1]).json()
    assert as_hr["name"] is None
    past = api.get(f"/v1/employees/{employee['id']}", actor=HR[0], roles=HR[1], version=1).json()
    assert past["name"] is None, "time travel must not bring erased data back"
    history = api.get(f"/v1/employees/{employee['id']}/history", actor=HR[0], roles=HR[1]).json()["items"]
    assert history[0]["data"]["national_id"] is None and history[-1]["type"] == "Employee.PersonalDataErased"
    problem(post(api, f"/v1/employees/{employee['id']}/personal-data/erase", None, HR, None), 422, "already_erased")


def test_personal_fields_are_sealed_in_the_stored_events(api):
    import psycopg

    employee = hire(api)
    with psycopg.connect(api.database_url) as conn:
        (state,) = conn.execute("SELECT state FROM events WHERE originator_id = %s AND originator_version = 1",
                                (employee["id"],)).fetchone()
    assert b"330101199001011234" not in bytes(state) and b"Wang Fang" not in bytes(state)
    assert b"pii:v1:" in bytes(state)
