"""/v1/targets over HTTP: set, decompose, revise (approved by another), close and confirm."""

from __future__ import annotations

from tests.api.flows import GM, HR, MANAGER, MANAGER_2, post, problem

KPIS = {"sales_revenue": "0.6", "partner_satisfaction": "0.4"}


def employee(api, name: str = "Rep", **fields) -> str:
    body = {"name": name, "role": "sales_rep", "hired_on": "2024-06-01", "contract_months": 0, **fields}
    return post(api, "/v1/employees", body, HR, 201).json()["id"]


def test_set_decompose_revise_close(api):
    leader, rep_1, rep_2 = employee(api, "Leader"), employee(api, "One"), employee(api, "Two")
    team = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": leader, "period": "2025",
                                     "amount": "1000.00", "kpis": KPIS}, MANAGER, 201).json()
    problem(post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": leader, "period": "2025",
                                      "amount": "1000.00", "kpis": {"sales_revenue": "0.6"}}, MANAGER, None),
            422, "kpi_weights_must_sum_to_one")
    child = {"assignee_type": "employee", "period": "2025-Q1", "kpis": KPIS, "parent_id": team["id"]}
    post(api, "/v1/targets", {**child, "assignee_id": rep_1, "amount": "600.00"}, MANAGER, 201)
    problem(post(api, "/v1/targets", {**child, "assignee_id": rep_2, "amount": "400.01"}, MANAGER, None),
            422, "decomposition_exceeds_parent")
    problem(post(api, f"/v1/targets/{team['id']}/close", None, MANAGER, None), 422, "decomposition_incomplete")
    second = post(api, "/v1/targets", {**child, "assignee_id": rep_2, "amount": "300.00"}, MANAGER, 201).json()
    revision = post(api, f"/v1/targets/{second['id']}/revisions", {"amount": "400.00", "reason": "bigger area"},
                    MANAGER_2).json()["revision_id"]
    problem(post(api, f"/v1/targets/{second['id']}/revisions/{revision}/approve", None, MANAGER_2, None),
            403, "segregation_of_duties")
    post(api, f"/v1/targets/{second['id']}/revisions/{revision}/approve", None, GM)
    assert api.get(f"/v1/targets/{team['id']}").json()["allocated"] == "1000.00"
    closing = post(api, f"/v1/targets/{team['id']}/close", {"kpi_results": {"partner_satisfaction": "0.9"}}).json()
    assert (closing["status"], closing["kpi_results"], closing["results_entered_by"]) == (
        "closing", {"partner_satisfaction": "0.9"}, MANAGER[0])
    problem(post(api, f"/v1/targets/{team['id']}/close/confirm", None, MANAGER, None), 403, "segregation_of_duties")
    closed = post(api, f"/v1/targets/{team['id']}/close/confirm", None, MANAGER_2).json()
    assert (closed["status"], closed["kpi_results"]) == ("closed", {"partner_satisfaction": "0.9"})


def test_a_target_cannot_close_before_its_period_ends(api):
    target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": employee(api), "period": "2099",
                                       "amount": "1.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()
    problem(post(api, f"/v1/targets/{target['id']}/close", None, MANAGER, None), 422, "period_not_ended")


def test_the_assignee_must_exist(api):
    body = {"period": "2025", "amount": "1.00", "kpis": {"sales_revenue": "1"}}
    for kind, assignee in (("employee", "e-1024"), ("team", "east"),
                           ("partner", "00000000-0000-0000-0000-000000000001")):
        refused = problem(post(api, "/v1/targets", {**body, "assignee_type": kind, "assignee_id": assignee},
                               MANAGER, None), 422, "unknown_assignee")
        assert assignee in refused["detail"]


def test_computed_kpis_are_never_typed_in_and_counted_ones_carry_a_goal(api):
    rep = employee(api)
    kpis = {"sales_revenue": "0.5", "new_partners": {"weight": "0.3", "goal": "4"}, "partner_satisfaction": "0.2"}
    target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep, "period": "2025",
                                       "amount": "100.00", "kpis": kpis}, MANAGER, 201).json()
    assert target["kpi_goals"] == {"new_partners": "4"} and target["kpis"]["new_partners"] == "0.3"
    for computed in ("sales_revenue", "new_partners", "active_second_tier_agents", "training_pass_rate"):
        problem(post(api, f"/v1/targets/{target['id']}/close",
                     {"kpi_results": {"partner_satisfaction": "0.8", computed: "1"}}, MANAGER, None), 422,
                "kpi_computed")
    problem(post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep, "period": "2025",
                                      "amount": "100.00", "kpis": {"sales_revenue": "0.5", "new_partners": "0.5"}},
                 MANAGER, None), 422, "validation_error")


def test_a_child_revision_never_changes_a_closed_parent(api):
    rep = employee(api)
    parent = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": rep, "period": "2025-Q1",
                                       "amount": "100.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()["id"]
    child = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep, "period": "2025-Q1",
                                      "amount": "100.00", "kpis": {"sales_revenue": "1"}, "parent_id": parent},
                 MANAGER, 201).json()["id"]
    revision = post(api, f"/v1/targets/{child}/revisions", {"amount": "80.00", "reason": "smaller"},
                    MANAGER_2).json()["revision_id"]
    assert post(api, f"/v1/targets/{parent}/close", None, MANAGER).json()["status"] == "closed"  # all computed
    problem(post(api, f"/v1/targets/{child}/revisions/{revision}/approve", None, GM, None), 422, "parent_closed")
    assert api.get(f"/v1/targets/{parent}").json()["children"] == {child: "100.00"}
    assert api.get(f"/v1/targets/{child}").json()["amount"] == "100.00"


def test_the_assignee_never_approves_or_confirms_for_themselves(api):
    li_na = employee(api, "Li Na", login="li.na")
    target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": li_na, "period": "2025",
                                       "amount": "100.00", "kpis": KPIS}, MANAGER, 201).json()["id"]
    revision = post(api, f"/v1/targets/{target}/revisions", {"amount": "120.00", "reason": "more"},
                    MANAGER).json()["revision_id"]
    li_na_as_gm = ("li.na", ("general_manager",))
    problem(post(api, f"/v1/targets/{target}/revisions/{revision}/approve", None, li_na_as_gm, None), 403,
            "segregation_of_duties")
    post(api, f"/v1/targets/{target}/close", {"kpi_results": {"partner_satisfaction": "0.7"}}, MANAGER)
    problem(post(api, f"/v1/targets/{target}/close/confirm", None, li_na_as_gm, None), 403, "segregation_of_duties")
    assert post(api, f"/v1/targets/{target}/close/confirm", None, GM).json()["status"] == "closed"
