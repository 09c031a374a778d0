"""GET /v1/partners/{id}/activity: visits per month against the grade's minimum, and only the
second-tier agents that placed an order in the period count as active."""

from __future__ import annotations

from tests.api.flows import ERP, MANAGER, REPORTING, SPECIALIST, approved_partner, post, problem, signed_contract
from tests.api.test_read_side import catch_up

EMPLOYEE = "00000000-0000-0000-0000-0000000000e1"


def test_visits_against_the_grade_minimum(api):
    store = post(api, "/v1/partners", {"kind": "direct_store", "name": "Store 1", "grade": "B"}, SPECIALIST, 201).json()
    post(api, f"/v1/partners/{store['id']}/review", {"decision": "approve"}, MANAGER)
    for day in ("2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30", "2026-04-06"):
        post(api, f"/v1/partners/{store['id']}/visits", {"visited_on": day, "employee_id": EMPLOYEE}, SPECIALIST)
    catch_up(api)
    quarter = api.get(f"/v1/partners/{store['id']}/activity", actor=REPORTING[0], roles=REPORTING[1],
                      period="2026-Q1").json()
    assert quarter["visits"] == 5
    assert [(m["month"], m["visits"], m["minimum"], m["meets_minimum"]) for m in quarter["months"]] == [
        ("2026-01", 0, 5, False), ("2026-02", 0, 5, False), ("2026-03", 5, 5, True)]
    april = api.get(f"/v1/partners/{store['id']}/activity", period="2026-04").json()
    assert [(m["visits"], m["meets_minimum"]) for m in april["months"]] == [(1, False)]


def test_only_second_tier_agents_with_an_order_are_active(api):
    parent = approved_partner(api, "enterprise_agent")
    selling = approved_partner(api, "retailer", parent_partner_id=parent)
    approved_partner(api, "retailer", parent_partner_id=parent)  # signed but silent
    contract = signed_contract(api, selling)
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "R-1", "amount": "10.00", "sold_on": "2026-03-05"}, ERP)
    catch_up(api)
    march = api.get(f"/v1/partners/{parent}/activity", period="2026-03").json()
    assert (march["second_tier_agents"], march["active_second_tier_agents"]) == (2, [selling])
    february = api.get(f"/v1/partners/{parent}/activity", period="2026-02").json()
    assert february["active_second_tier_agents"] == []
    assert march["months"][0]["minimum"] is None  # only direct stores have a visit minimum


def test_activity_of_an_unknown_partner_is_404_and_roles_are_enforced(api):
    problem(api.get("/v1/partners/00000000-0000-0000-0000-000000000001/activity", period="2026-03"), 404, "not_found")
    problem(api.get("/v1/partners/00000000-0000-0000-0000-000000000001/activity", actor="fin", roles=("finance",),
                    period="2026-03"), 403, "forbidden")
