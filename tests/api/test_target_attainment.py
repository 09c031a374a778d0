"""GET /v1/targets/{id}/attainment with hand-computed figures.

The team's Q1 target of 100 000.00 is split between the leader's two reps, 60 000.00 and 40 000.00,
weighted 70 % sales revenue and 30 % partner satisfaction. Rep A sells 50 000.00 and 10 000.00
and has 5 000.00 returned; rep B sells 30 000.00, plus 9 999.00 in April (outside Q1).
  rep A: actual 55 000.00 → 55000/60000 = 0.9167; rep B: 30 000.00 → 0.75
  team:  85 000.00 → 0.85; closed with partner satisfaction 0.9 → 0.7 × 0.85 + 0.3 × 0.9 = 0.865
          (0.595 until someone other than who entered the 0.9 confirms it)
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tests.api.flows import (
    ERP,
    GM,
    HR,
    MANAGER,
    REPORTING,
    SPECIALIST,
    approved_partner,
    post,
    problem,
    signed_contract,
)
from tests.api.test_read_side import catch_up

KPIS = {"sales_revenue": "0.7", "partner_satisfaction": "0.3"}


def test_attainment_per_employee_and_for_the_team(api):
    leader = post(api, "/v1/employees", {"name": "L", "role": "manager", "hired_on": "2024-06-01"}, HR, 201).json()["id"]
    rep = {"role": "sales_rep", "hired_on": "2024-06-01", "manager_id": leader}
    rep_a = post(api, "/v1/employees", {"name": "A", **rep}, HR, 201).json()["id"]
    rep_b = post(api, "/v1/employees", {"name": "B", **rep}, HR, 201).json()["id"]
    contract = signed_contract(api, approved_partner(api), "2025-01-01", "2025-12-31")
    for order, amount, day, rep in (("A1", "50000.00", "2025-01-10", rep_a), ("A2", "10000.00", "2025-02-10", rep_a),
                                    ("B1", "30000.00", "2025-03-10", rep_b), ("B2", "9999.00", "2025-04-01", rep_b)):
        post(api, f"/v1/contracts/{contract}/sales",
             {"order_id": order, "amount": amount, "sold_on": day, "employee_id": rep}, ERP)
    post(api, f"/v1/contracts/{contract}/returns", {"order_id": "A1", "amount": "5000.00", "returned_on": "2025-03-01"},
         ERP)
    team = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": leader, "period": "2025-Q1",
                                     "amount": "100000.00", "kpis": KPIS}, MANAGER, 201).json()["id"]
    child = {"period": "2025-Q1", "kpis": KPIS, "parent_id": team, "assignee_type": "employee"}
    target_a = post(api, "/v1/targets", {**child, "assignee_id": rep_a, "amount": "60000.00"}, MANAGER, 201).json()["id"]
    post(api, "/v1/targets", {**child, "assignee_id": rep_b, "amount": "40000.00"}, MANAGER, 201)
    post(api, f"/v1/targets/{team}/close", {"kpi_results": {"partner_satisfaction": "0.9"}}, MANAGER)
    catch_up(api)

    a = api.get(f"/v1/targets/{target_a}/attainment", actor=REPORTING[0], roles=REPORTING[1]).json()
    assert (a["amount"], a["actual"], a["attainment"]) == ("60000.00", "55000.00", "0.9167")
    assert a["kpis"]["partner_satisfaction"] == {"weight": "0.3", "attainment": None, "status": "pending",
                                                 "goal": None, "actual": None, "proposed": None}
    assert a["weighted_score"] == "0.6417"  # 0.7 × 0.9167, satisfaction not yet given

    whole = api.get(f"/v1/targets/{team}/attainment").json()
    assert (whole["actual"], whole["attainment"], whole["status"]) == ("85000.00", "0.8500", "closing")
    assert whole["kpis"]["sales_revenue"] == {"weight": "0.7", "attainment": "0.8500", "status": "computed",
                                              "goal": None, "actual": "85000.00", "proposed": None}
    assert whole["kpis"]["partner_satisfaction"] == {"weight": "0.3", "attainment": None, "status": "proposed",
                                                     "goal": None, "actual": None, "proposed": "0.9"}
    assert whole["weighted_score"] == "0.5950"  # 0.7 × 0.85: an entered result counts once confirmed

    post(api, f"/v1/targets/{team}/close/confirm", None, GM)
    catch_up(api)
    whole = api.get(f"/v1/targets/{team}/attainment").json()
    assert whole["status"] == "closed"
    assert whole["kpis"]["partner_satisfaction"]["status"] == "confirmed"
    assert whole["kpis"]["partner_satisfaction"]["attainment"] == "0.9"
    assert whole["weighted_score"] == "0.8650"  # 0.7 × 0.85 + 0.3 × 0.9


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


def test_counted_kpis_of_an_employee_new_partners_and_training_pass_rate(api):
    """Zhou recruits three partners this year: two approved, one rejected → 2 of a goal of 4 = 0.5.
    Zhou trains 10 (8 pass) and 6 (3 pass) this year, 5 (5 pass) last year; a colleague trains
    20 (0 pass) this year → 11 ÷ 16 = 0.6875 of a goal of 0.8 = 0.859375.
    No sales: 0.4 × 0 + 0.3 × 0.5 + 0.3 × 0.859375 = 0.4078125."""
    year = datetime.now(ZoneInfo("Asia/Shanghai")).year  # approvals count on the day they are recorded
    hired = {"role": "specialist", "hired_on": f"{year - 1}-01-02", "contract_months": 0}
    zhou = post(api, "/v1/employees", {"name": "Zhou", **hired}, HR, 201).json()["id"]
    colleague = post(api, "/v1/employees", {"name": "Wu", **hired}, HR, 201).json()["id"]
    recruits = [post(api, "/v1/partners", {"kind": "retailer", "name": f"R{n}", "recruited_by": zhou}, SPECIALIST,
                     201).json()["id"] for n in range(3)]
    for recruit, decision in zip(recruits, ("approve", "approve", "reject"), strict=True):
        post(api, f"/v1/partners/{recruit}/review", {"decision": decision}, MANAGER)
    for trainer, held_on, attendees, passed in ((zhou, f"{year}-03-10", 10, 8), (zhou, f"{year}-04-10", 6, 3),
                                                 (zhou, f"{year - 1}-11-10", 5, 5),
                                                 (colleague, f"{year}-03-10", 20, 0)):
        post(api, f"/v1/partners/{recruits[0]}/trainings", {"held_on": held_on, "topic": "Pricing",
                                                             "trainer_id": trainer, "attendees": attendees,
                                                             "passed": passed}, SPECIALIST)
    kpis = {"sales_revenue": "0.4", "new_partners": {"weight": "0.3", "goal": "4"},
            "training_pass_rate": {"weight": "0.3", "goal": "0.8"}}
    target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": zhou, "period": str(year),
                                       "amount": "1000.00", "kpis": kpis}, MANAGER, 201).json()["id"]
    catch_up(api)
    body = api.get(f"/v1/targets/{target}/attainment").json()
    assert body["kpis"]["new_partners"] == {"weight": "0.3", "goal": "4", "actual": "2", "attainment": "0.5000",
                                            "status": "computed", "proposed": None}
    assert body["kpis"]["training_pass_rate"] == {"weight": "0.3", "goal": "0.8", "actual": "0.6875",
                                                  "attainment": "0.8594", "status": "computed", "proposed": None}
    assert body["weighted_score"] == "0.4078"


def test_counted_kpi_of_a_partner_active_second_tier_agents(api):
    """Of the agent's three second-tier agents, one sells in 2025, one only in 2024, one never:
    1 of a goal of 2 = 0.5. The agent's own 2 500.00 of 10 000.00 = 0.25. 0.5 × 0.25 + 0.5 × 0.5 = 0.375."""
    agent = approved_partner(api, "retailer")
    own = signed_contract(api, agent, "2024-01-01", "2025-12-31")
    post(api, f"/v1/contracts/{own}/sales", {"order_id": "A1", "amount": "2500.00", "sold_on": "2025-05-05"}, ERP)
    children = [approved_partner(api, "retailer", parent_partner_id=agent) for _ in range(3)]
    for child, sold_on in zip(children[:2], ("2025-02-01", "2024-12-31"), strict=True):
        contract = signed_contract(api, child, "2024-01-01", "2025-12-31")
        post(api, f"/v1/contracts/{contract}/sales", {"order_id": "C1", "amount": "10.00", "sold_on": sold_on}, ERP)
    kpis = {"sales_revenue": "0.5", "active_second_tier_agents": {"weight": "0.5", "goal": "2"}}
    target = post(api, "/v1/targets", {"assignee_type": "partner", "assignee_id": agent, "period": "2025",
                                       "amount": "10000.00", "kpis": kpis}, MANAGER, 201).json()["id"]
    catch_up(api)
    body = api.get(f"/v1/targets/{target}/attainment").json()
    assert body["kpis"]["active_second_tier_agents"]["actual"] == "1"
    assert body["kpis"]["active_second_tier_agents"]["attainment"] == "0.5000"
    assert body["weighted_score"] == "0.3750"


def test_a_team_is_its_leader_and_everyone_below_on_the_day_of_each_sale(api):
    """Q1 2025, leader L. A reports to L; C reports to A; B reports to M until 15 February, then
    to L; D reports to M throughout.
      L sells 500.00 (20 Jan)                          → counts
      B sells 2 000.00 (10 Feb, under M)               → does not count
      B sells 3 000.00 (20 Feb, under L)               → counts
      C sells 1 000.00 (1 Mar, under A under L)        → counts
      A sells 4 000.00 (5 Mar), 1 000.00 returned      → 3 000.00 counts
      D sells 7 000.00                                 → does not count
    Actual 500 + 3 000 + 1 000 + 3 000 = 7 500.00 of 10 000.00 = 0.75.
    Trainings: C trains 10, 7 pass; D trains 10, 0 pass → the team's rate 0.7 of a goal of 0.7 = 1.
    Weighted: 0.5 × 0.75 + 0.5 × 1 = 0.875."""
    def hire(name: str, manager: str | None = None) -> str:
        body = {"name": name, "role": "sales_rep", "hired_on": "2024-06-01", "contract_months": 0,
                "manager_id": manager}
        return post(api, "/v1/employees", body, HR, 201).json()["id"]

    leader, other = hire("L"), hire("M")
    a = hire("A", leader)
    c, b, d = hire("C", a), hire("B", other), hire("D", other)
    post(api, f"/v1/employees/{b}/transfer", {"manager_id": leader, "on": "2025-02-15"}, HR)
    contract = signed_contract(api, approved_partner(api, "retailer"), "2025-01-01", "2025-12-31")
    for order, amount, day, who in (("L1", "500.00", "2025-01-20", leader), ("B1", "2000.00", "2025-02-10", b),
                                    ("B2", "3000.00", "2025-02-20", b), ("C1", "1000.00", "2025-03-01", c),
                                    ("A1", "4000.00", "2025-03-05", a), ("D1", "7000.00", "2025-03-05", d)):
        post(api, f"/v1/contracts/{contract}/sales",
             {"order_id": order, "amount": amount, "sold_on": day, "employee_id": who}, ERP)
    post(api, f"/v1/contracts/{contract}/returns", {"order_id": "A1", "amount": "1000.00", "returned_on": "2025-03-20"},
         ERP)
    partner = approved_partner(api, "retailer")
    for trainer, passed in ((c, 7), (d, 0)):
        post(api, f"/v1/partners/{partner}/trainings", {"held_on": "2025-03-02", "topic": "Pricing",
                                                         "trainer_id": trainer, "attendees": 10, "passed": passed},
             SPECIALIST)
    kpis = {"sales_revenue": "0.5", "training_pass_rate": {"weight": "0.5", "goal": "0.7"}}
    team = post(api, "/v1/targets", {"assignee_type": "team", "assignee_id": leader, "period": "2025-Q1",
                                     "amount": "10000.00", "kpis": kpis}, MANAGER, 201).json()["id"]
    catch_up(api)
    body = api.get(f"/v1/targets/{team}/attainment").json()
    assert (body["actual"], body["attainment"]) == ("7500.00", "0.7500")
    assert (body["kpis"]["training_pass_rate"]["actual"], body["kpis"]["training_pass_rate"]["attainment"]) == (
        "0.7000", "1.0000")
    assert body["weighted_score"] == "0.8750"
