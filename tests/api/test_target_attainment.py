"""GET /v1/targets/{id}/attainment with hand-computed figures.

The east team's Q1 target of 100 000.00 is split between two reps, 60 000.00 and 40 000.00,
weighted 70 % sales revenue and 30 % partner satisfaction. Rep A sells 50 000.00 and 10 000.00
and has 5 000.00 returned; rep B sells 30 000.00, plus 9 999.00 in April (outside Q1).
  rep A: actual 55 000.00 → 55000/60000 = 0.9167; rep B: 30 000.00 → 0.75
  team:  85 000.00 → 0.85; closed with partner satisfaction 0.9 → 0.7 × 0.85 + 0.3 × 0.9 = 0.865
"""

from __future__ import annotations

from tests.api.flows import ERP, HR, MANAGER, REPORTING, approved_partner, post, problem, signed_contract
from tests.api.test_read_side import catch_up

KPIS = {"sales_revenue": "0.7", "partner_satisfaction": "0.3"}


def test_attainment_per_employee_and_for_the_team(api):
    rep_a = post(api, "/v1/employees", {"name": "A", "role": "sales_rep", "hired_on": "2024-12-02"}, HR, 201).json()["id"]
    rep_b = post(api, "/v1/employees", {"name": "B", "role": "sales_rep", "hired_on": "2024-12-02"}, HR, 201).json()["id"]
    contract = signed_contract(api, approved_partner(api), "2025-01-01", "2025-12-31")
    for order, amount, day, rep in (("A1", "50000.00", "2025-01-10", rep_a), ("A2", "10000.00", "2025-02-10", rep_a),
                                    ("B1", "30000.00", "2025-03-10", rep_b), ("B2", "9999.00", "2025-04-01", rep_b)):
        post(api, f"/v1/contracts/{contract}/sales",
             {"order_id": order, "amount": amount, "sold_on": day, "employee_id": rep}, ERP)
    post(api, f"/v1/contracts/{contract}/returns", {"order_id": "A1", "amount": "5000.00", "returned_on": "2025-03-01"},
         ERP)
    team = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": "east", "period": "2025-Q1",
                                     "amount": "100000.00", "kpis": KPIS}, MANAGER, 201).json()["id"]
    child = {"period": "2025-Q1", "kpis": KPIS, "parent_id": team, "assignee_type": "employee"}
    target_a = post(api, "/v1/targets", {**child, "assignee_id": rep_a, "amount": "60000.00"}, MANAGER, 201).json()["id"]
    post(api, "/v1/targets", {**child, "assignee_id": rep_b, "amount": "40000.00"}, MANAGER, 201)
    post(api, f"/v1/targets/{team}/close", {"kpi_results": {"partner_satisfaction": "0.9"}}, MANAGER)
    catch_up(api)

    a = api.get(f"/v1/targets/{target_a}/attainment", actor=REPORTING[0], roles=REPORTING[1]).json()
    assert (a["amount"], a["actual"], a["attainment"]) == ("60000.00", "55000.00", "0.9167")
    assert a["kpis"]["partner_satisfaction"] == {"weight": "0.3", "attainment": None}
    assert a["weighted_score"] == "0.6417"  # 0.7 × 0.9167, satisfaction not yet given

    whole = api.get(f"/v1/targets/{team}/attainment").json()
    assert (whole["actual"], whole["attainment"], whole["status"]) == ("85000.00", "0.8500", "closed")
    assert whole["kpis"] == {"sales_revenue": {"weight": "0.7", "attainment": "0.8500"},
                             "partner_satisfaction": {"weight": "0.3", "attainment": "0.9"}}
    assert whole["weighted_score"] == "0.8650"


def test_partner_target_counts_the_partners_sales(api):
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner, "2025-01-01", "2025-12-31")
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "R1", "amount": "2500.00", "sold_on": "2025-05-05"}, ERP)
    target = post(api, "/v1/targets", {"assignee_type": "partner", "assignee_id": partner, "period": "2025-05",
                                       "amount": "10000.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()["id"]
    catch_up(api)
    body = api.get(f"/v1/targets/{target}/attainment").json()
    assert (body["actual"], body["attainment"], body["weighted_score"]) == ("2500.00", "0.2500", "0.2500")
    problem(api.get("/v1/targets/00000000-0000-0000-0000-000000000001/attainment"), 404, "not_found")
