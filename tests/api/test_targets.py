"""/v1/targets over HTTP: set, decompose, revise (approved by another), close."""

from __future__ import annotations

from tests.api.flows import GM, MANAGER, MANAGER_2, post, problem

KPIS = {"sales_revenue": "0.6", "partner_satisfaction": "0.4"}


def test_set_decompose_revise_close(api):
    team = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": "east", "period": "2025",
                                     "amount": "1000.00", "kpis": KPIS}, MANAGER, 201).json()
    problem(post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": "west", "period": "2025",
                                      "amount": "1000.00", "kpis": {"sales_revenue": "0.6"}}, MANAGER, None),
            422, "kpi_weights_must_sum_to_one")
    child = {"assignee_type": "employee", "period": "2025-Q1", "kpis": KPIS, "parent_id": team["id"]}
    post(api, "/v1/targets", {**child, "assignee_id": "e-1", "amount": "600.00"}, MANAGER, 201)
    problem(post(api, "/v1/targets", {**child, "assignee_id": "e-2", "amount": "400.01"}, MANAGER, None),
            422, "decomposition_exceeds_parent")
    problem(post(api, f"/v1/targets/{team['id']}/close", None, MANAGER, None), 422, "decomposition_incomplete")
    second = post(api, "/v1/targets", {**child, "assignee_id": "e-2", "amount": "300.00"}, MANAGER, 201).json()
    revision = post(api, f"/v1/targets/{second['id']}/revisions", {"amount": "400.00", "reason": "bigger area"},
                    MANAGER_2).json()["revision_id"]
    problem(post(api, f"/v1/targets/{second['id']}/revisions/{revision}/approve", None, MANAGER_2, None),
            403, "segregation_of_duties")
    post(api, f"/v1/targets/{second['id']}/revisions/{revision}/approve", None, GM)
    assert api.get(f"/v1/targets/{team['id']}").json()["allocated"] == "1000.00"
    closed = post(api, f"/v1/targets/{team['id']}/close", {"kpi_results": {"partner_satisfaction": "0.9"}}).json()
    assert (closed["status"], closed["kpi_results"]) == ("closed", {"partner_satisfaction": "0.9"})


def test_a_target_cannot_close_before_its_period_ends(api):
    target = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": "east", "period": "2099",
                                       "amount": "1.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()
    problem(post(api, f"/v1/targets/{target['id']}/close", None, MANAGER, None), 422, "period_not_ended")
