"""People over HTTP: logins, separation and what it stops, dismissal for performance, the
retention period, an erased hire that leaves nothing to confirm a guess against, trainings,
a recruiter and their recruit, and the December review finding raising nothing impossible."""

from __future__ import annotations

import psycopg

from tests.api.flows import HR, MANAGER, MANAGER_2, SPECIALIST, approved_partner, post, problem
from tests.api.test_audit_findings import findings

HR_2 = ("hr-2", ("hr",))


def hire(api, name: str = "Wang Fang", **fields) -> str:
    body = {"name": name, "role": "sales_rep", "hired_on": "2026-01-05", **fields}
    return post(api, "/v1/employees", body, HR, 201).json()["id"]


def test_a_login_is_unique_among_employees(api):
    employee = hire(api, login="wang.fang")
    assert api.get(f"/v1/employees/{employee}").json()["login"] == "wang.fang"
    problem(post(api, "/v1/employees", {"name": "Other", "role": "sales_rep", "hired_on": "2026-02-01",
                                        "login": "wang.fang"}, HR, None), 422, "login_taken")


def test_separation_is_recorded_and_nothing_is_recorded_against_the_employee_after_it(api):
    employee = hire(api, hired_on="2025-03-01")
    separated = post(api, f"/v1/employees/{employee}/separation", {"on": "2025-09-30", "reason": "resignation"},
                     HR).json()
    assert (separated["status"], separated["left_on"], separated["separation_reason"]) == (
        "separated", "2025-09-30", "resignation")
    assert separated["employment_ends_on"] == "2025-09-30" and separated["erasable_from"] == "2027-09-30"
    history = api.get(f"/v1/employees/{employee}/history").json()["items"]
    assert history[-1]["type"] == "Employee.Separated" and history[-1]["effective_on"] == "2025-09-30"
    problem(post(api, f"/v1/employees/{employee}/warnings", {"level": "oral", "reason": "late"}, HR, None),
            422, "invalid_transition")
    problem(post(api, f"/v1/employees/{employee}/evaluations", {"period": "2025-Q3", "score": 70}, MANAGER, None),
            422, "invalid_transition")
    problem(post(api, f"/v1/employees/{employee}/separation", {"on": "2025-10-30", "reason": "bored"}, HR, None),
            422, "validation_error")


def test_a_contract_that_ended_without_renewal_takes_no_warning_or_evaluation(api):
    employee = hire(api, hired_on="2024-01-05")  # the contract ended on 2025-01-04
    body = problem(post(api, f"/v1/employees/{employee}/warnings", {"level": "oral", "reason": "late"}, HR, None),
                   422, "employee_separated")
    assert body["employment_ended_on"] == "2025-01-04"
    problem(post(api, f"/v1/employees/{employee}/evaluations", {"period": "2025-Q1", "score": 70}, MANAGER, None),
            422, "employee_separated")


def test_a_dismissal_for_performance_is_proposed_by_the_manager_and_approved_by_someone_else_in_hr(api):
    boss = hire(api, "Zhao Lei", role="manager", login="mgr-1")
    rep = hire(api, "Sun Li", manager_id=boss)
    problem(post(api, f"/v1/employees/{rep}/dismissal-proposals", {"on": "2026-09-30", "reason": "targets missed"},
                 MANAGER_2, None), 403, "not_the_manager")
    proposed = post(api, f"/v1/employees/{rep}/dismissal-proposals",
                    {"on": "2026-09-30", "reason": "targets missed"}, MANAGER).json()
    assert proposed["status"] == "probation"
    proposal = proposed["proposal_id"]
    assert proposed["dismissal_proposals"][proposal]["status"] == "proposed"
    manager_in_hr = ("mgr-1", ("channel_manager", "hr"))
    problem(post(api, f"/v1/employees/{rep}/dismissal-proposals/{proposal}/approve", None, manager_in_hr, None),
            403, "segregation_of_duties")
    problem(post(api, f"/v1/employees/{rep}/dismissal-proposals/{rep}/approve", None, HR, None), 404, "not_found")
    dismissed = post(api, f"/v1/employees/{rep}/dismissal-proposals/{proposal}/approve", None, HR).json()
    assert (dismissed["status"], dismissed["left_on"]) == ("dismissed", "2026-09-30")


def test_personal_data_is_kept_two_years_after_the_employment_ended(api):
    employee = hire(api, hired_on="2025-01-06")
    body = problem(post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR, None), 422,
                   "retention_period")
    assert body["erasable_from"] is None  # the employment has not ended
    post(api, f"/v1/employees/{employee}/separation", {"on": "2025-06-30", "reason": "resignation"}, HR)
    body = problem(post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR, None), 422,
                   "retention_period")
    assert body["erasable_from"] == "2027-06-30"


def test_after_erasure_nothing_in_the_database_confirms_a_guessed_national_id(api):
    national_id = "330101199001011234"
    body = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06", "national_id": national_id,
            "bank_card": "6222000011112222"}
    employee = post(api, "/v1/employees", body, HR, 201, **{"Idempotency-Key": "hire-wang"}).json()["id"]
    replayed = post(api, "/v1/employees", body, HR, 201, **{"Idempotency-Key": "hire-wang"})
    assert replayed.headers["Idempotent-Replayed"] == "true"
    problem(post(api, "/v1/employees", {**body, "national_id": "330101199001011235"}, HR, None,
                 **{"Idempotency-Key": "hire-wang"}), 422, "idempotency_key_reused")
    post(api, f"/v1/employees/{employee}/separation", {"on": "2020-12-31", "reason": "resignation"}, HR)
    with psycopg.connect(api.database_url) as conn:
        (fingerprint,) = conn.execute(
            "SELECT fingerprint FROM command_outcomes WHERE idempotency_key = 'hire-wang'").fetchone()
    post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR)
    api.catch_up()

    # A guess could be confirmed by the national id in clear, or by a value computed from it that
    # one can compute again from a guess: a plain hash, or a keyed one whose key is still there.
    assert fingerprint.startswith("keyed:"), "the fingerprint of a request with personal data is keyed"
    with psycopg.connect(api.database_url) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT quote_ident(table_name) FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
        for table in tables:
            (hits,) = conn.execute(f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s",  # noqa: S608
                                   (f"%{national_id}%",)).fetchone()
            assert hits == 0, table
        (key,) = conn.execute("SELECT key FROM personal_data_keys WHERE subject_id = %s", (employee,)).fetchone()
    assert key is None, "the key of the fingerprint (and of the sealed fields) is destroyed"
    # The same key now replays what it did — there is nothing left to compare a guess with.
    again = post(api, "/v1/employees", {**body, "national_id": "330101199001011235"}, HR, 201,
                 **{"Idempotency-Key": "hire-wang"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == employee


def test_a_training_is_recorded_on_the_partner(api):
    trainer = hire(api, "Trainer")
    partner = approved_partner(api, "distributor")
    recorded = post(api, f"/v1/partners/{partner}/trainings", {"held_on": "2026-04-10", "topic": "Pricing",
                                                                "trainer_id": trainer, "attendees": 12,
                                                                "passed": 10}, SPECIALIST).json()
    history = api.get(f"/v1/partners/{partner}/history").json()["items"]
    assert history[-1]["type"] == "Partner.TrainingRecorded"
    assert history[-1]["data"] == {"training_id": recorded["training_id"], "held_on": "2026-04-10",
                                   "topic": "Pricing", "trainer_id": trainer, "attendees": 12, "passed": 10}
    problem(post(api, f"/v1/partners/{partner}/trainings", {"held_on": "2026-04-10", "topic": "Pricing",
                                                             "trainer_id": trainer, "attendees": 12, "passed": 13},
                 SPECIALIST, None), 422, "validation_error")
    problem(post(api, f"/v1/partners/{partner}/trainings", {"held_on": "2025-04-10", "topic": "Pricing",
                                                             "trainer_id": trainer, "attendees": 12, "passed": 3},
                 SPECIALIST, None), 422, "unknown_employee")  # not yet hired
    problem(post(api, f"/v1/partners/{partner}/trainings", {"held_on": "2026-04-10", "topic": "Pricing",
                                                             "trainer_id": trainer, "attendees": 1.0, "passed": 0},
                 SPECIALIST, None), 422, "validation_error")


def test_a_recruiter_cannot_review_their_recruit_under_their_login(api):
    li_na = hire(api, "Li Na", role="manager", login="li.na")
    recruit = post(api, "/v1/partners", {"kind": "retailer", "name": "R", "recruited_by": li_na}, SPECIALIST,
                   201).json()["id"]
    problem(post(api, f"/v1/partners/{recruit}/review", {"decision": "approve"}, ("li.na", ("channel_manager",)),
                 None), 403, "segregation_of_duties")
    assert post(api, f"/v1/partners/{recruit}/review", {"decision": "approve"}, MANAGER).json()["status"] == "approved"


def test_a_contract_review_before_the_hire_is_refused(api):
    employee = hire(api, hired_on="2025-12-20")
    problem(post(api, f"/v1/employees/{employee}/contract-reviews", {"on": "2025-12-10", "decision": "renew"}, HR,
                 None), 422, "validation_error")


def test_the_december_review_finding_raises_nothing_impossible(api):
    # Hired on 1 January 2025 for a year (ends 31 December 2025) or in February for six months:
    # the December before the end (2024) came before the hire, so no review was ever possible.
    # Hired on 6 January 2025 for a year: the contract ends in 2026 and December 2025 was missed.
    impossible = [hire(api, "A", hired_on="2025-01-01"), hire(api, "B", hired_on="2025-02-01", contract_months=6)]
    missed = hire(api, "C", hired_on="2025-01-06")
    raised = {f["subject_id"] for f in findings(api, "contract_review_missing")}
    assert missed in raised and raised.isdisjoint(impossible)
    assert HR_2  # the second hr actor is for tests that need two
