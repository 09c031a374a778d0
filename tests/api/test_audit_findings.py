"""GET /v1/audit/findings: each finding of domain.md §7 raised when its cause is there, and
not raised when it is not. Where the domain refuses the cause outright, the test records the
event behind the domain's back — the finding exists to prove no such event slipped through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from channel_domain.contract import Contract
from channel_domain.partner import Partner
from channel_domain.values import add_months
from tests.api.flows import (
    AUDITOR,
    CONTENTS,
    FINANCE,
    HR,
    MANAGER,
    SPECIALIST,
    approved_partner,
    post,
    problem,
    signed_contract,
)
from tests.api.test_read_side import catch_up
from tests.channel_domain.helpers import as_


def findings(api, kind: str) -> list[dict]:
    catch_up(api)
    response = api.get("/v1/audit/findings", kind=kind, status="open")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_approval_by_the_requester(api):
    app = api.department
    honest = signed_contract(api, approved_partner(api, "retailer"))
    drafted = post(api, "/v1/contracts", {"partner_id": approved_partner(api, "retailer"), "starts_on": "2026-01-01",
                                          "ends_on": "2026-12-31", "commission": {"type": "flat", "rate": "0.03"},
                                          **CONTENTS}, MANAGER, 201).json()["id"]
    post(api, f"/v1/contracts/{drafted}/submit", None, MANAGER)
    with as_("mgr-1", "channel_manager", "general_manager"):
        contract = app.get(Contract, UUID(drafted))
        contract._approved(approved_by="mgr-1")  # behind the domain's back
        app.save(contract)
    raised = findings(api, "approved_by_requester")
    assert [(f["subject_id"], len(f["positions"])) for f in raised] == [(drafted, 2), (drafted, 2)]  # drafted, submitted
    assert honest not in {f["subject_id"] for f in raised}


def test_deposit_refunded_before_termination(api):
    app = api.department
    partner = approved_partner(api, "retailer")
    post(api, f"/v1/partners/{partner}/deposit/payments", {"amount": "100.00", "on": "2026-01-10"}, FINANCE)
    with as_("fin-1", "finance"):
        record = app.get(Partner, UUID(partner))
        record._deposit_refunded(amount=record.deposit_paid, on=datetime(2026, 2, 1).date())
        app.save(record)
    proper = approved_partner(api, "retailer")
    post(api, f"/v1/partners/{proper}/deposit/payments", {"amount": "100.00", "on": "2026-01-10"}, FINANCE)
    post(api, f"/v1/partners/{proper}/terminate", {"reason": "ended", "on": "2026-06-30"}, MANAGER)
    post(api, f"/v1/partners/{proper}/deposit/refunds", {"amount": "100.00", "on": "2026-07-01"}, FINANCE)
    assert [f["subject_id"] for f in findings(api, "deposit_refunded_before_termination")] == [partner]


def test_probation_overdue(api):
    forgotten = post(api, "/v1/employees", {"name": "A", "role": "sales_rep", "hired_on": "2025-01-06"}, HR, 201).json()
    handled = post(api, "/v1/employees", {"name": "B", "role": "sales_rep", "hired_on": "2025-01-06"}, HR, 201).json()
    post(api, f"/v1/employees/{handled['id']}/regularize", {"on": "2025-03-05"}, HR)
    recent = post(api, "/v1/employees", {"name": "C", "role": "sales_rep", "hired_on": datetime.now(UTC).date().isoformat()},
                  HR, 201).json()
    raised = findings(api, "probation_overdue")
    assert [f["subject_id"] for f in raised] == [forgotten["id"]]
    assert "2025-03-05" in raised[0]["detail"]
    assert recent["id"] not in str(raised)


def test_direct_store_below_its_visit_minimum(api):
    store = post(api, "/v1/partners", {"kind": "direct_store", "name": "Store A", "grade": "A"}, SPECIALIST, 201).json()["id"]
    post(api, f"/v1/partners/{store}/review", {"decision": "approve"}, MANAGER)
    employee = "00000000-0000-0000-0000-0000000000e1"
    # The three full months before this one (the finding looks at every full month up to today).
    this_month = datetime.now(UTC).date().replace(day=1)
    enough, short, enough_again = (add_months(this_month, -n) for n in (3, 2, 1))
    for month, visits in ((enough, 5), (short, 3), (enough_again, 5)):
        for n in range(visits):
            post(api, f"/v1/partners/{store}/visits", {"visited_on": month.replace(day=1 + 5 * n).isoformat(),
                                                       "employee_id": employee}, SPECIALIST)
    raised = findings(api, "visits_below_minimum")
    assert [(f["subject_id"], f["raised_on"]) for f in raised] == [(store, enough_again.isoformat())]
    assert f"3 visit(s) in {short:%Y-%m}" in raised[0]["detail"] and len(raised[0]["positions"]) == 4


def test_payout_account_changed_within_30_days_before_a_payout(api):
    app = api.department
    contract = signed_contract(api, approved_partner(api, "retailer"))
    partner = api.get(f"/v1/contracts/{contract}").json()["partner_id"]
    change = post(api, f"/v1/partners/{partner}/payout-account/changes", {"account": "6222 01"}, SPECIALIST).json()
    post(api, f"/v1/partners/{partner}/payout-account/changes/{change['change_id']}/approve", None, FINANCE)
    post(api, f"/v1/partners/{partner}/payouts", {"period": "2026-10", "amount": "10.00"}, SPECIALIST)

    settled = approved_partner(api, "retailer")
    signed_contract(api, settled, "2025-01-01", "2025-12-31")
    with as_("spec-1", "channel_specialist"):
        record = app.get(Partner, UUID(settled))
        change_id = record.request_payout_account_change("6222 02")
        app.save(record)
    with as_("fin-1", "finance"):
        record = app.get(Partner, UUID(settled))
        # An approval forty days ago, recorded as it was then.
        record.trigger_event(Partner.PayoutAccountChangeApproved, change_id=change_id, approved_by="fin-1",
                             timestamp=datetime.now(UTC) - timedelta(days=40))
        app.save(record)
    post(api, f"/v1/partners/{settled}/payouts", {"period": "2026-10", "amount": "10.00"}, SPECIALIST)
    assert [f["subject_id"] for f in findings(api, "account_changed_before_payout")] == [partner]


def test_sales_agent_rate_not_below_enterprise_agents(api):
    signed_contract(api, approved_partner(api, "enterprise_agent"), territory="Zhejiang",
                    commission={"type": "flat", "rate": "0.03"})
    assert findings(api, "sales_agent_rate_not_below_enterprise_agents") == []
    justified = signed_contract(api, approved_partner(api), commission={"type": "flat", "rate": "0.035"},
                                rate_justification="national coverage")
    raised = findings(api, "sales_agent_rate_not_below_enterprise_agents")
    assert [f["subject_id"] for f in raised] == [justified]
    assert "0.035" in raised[0]["detail"]


def test_findings_are_for_auditors_and_kinds_are_checked(api):
    problem(api.get("/v1/audit/findings", actor="bi", roles=("reporting",)), 403, "forbidden")
    problem(api.get("/v1/audit/findings", kind="made_up"), 422, "validation_error")
    assert api.get("/v1/audit/findings", actor=AUDITOR[0], roles=AUDITOR[1]).json() == {"items": [], "next_cursor": None}


def test_findings_are_paginated(api):
    for name in ("A", "B", "C"):
        post(api, "/v1/employees", {"name": name, "role": "sales_rep", "hired_on": "2025-01-06"}, HR, 201)
    api.catch_up()
    first = api.get("/v1/audit/findings", kind="probation_overdue", limit=2).json()
    rest = api.get("/v1/audit/findings", kind="probation_overdue", limit=2, cursor=first["next_cursor"]).json()
    assert len(first["items"]) == 2 and len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert {f["subject_id"] for f in first["items"]}.isdisjoint(f["subject_id"] for f in rest["items"])


def test_contract_review_missing_by_31_december(api):
    # Hired 6 Jan 2025 on the standard year: the contract ends 5 Jan 2026, so it was due for
    # review in December 2025. Today lies past that 31 December.
    forgotten = post(api, "/v1/employees", {"name": "A", "role": "sales_rep", "hired_on": "2025-01-06"}, HR, 201).json()
    reviewed = post(api, "/v1/employees", {"name": "B", "role": "sales_rep", "hired_on": "2025-01-06"}, HR, 201).json()
    post(api, f"/v1/employees/{reviewed['id']}/contract-reviews", {"on": "2025-12-15", "decision": "not_renew"}, HR)
    renewed = post(api, "/v1/employees", {"name": "C", "role": "sales_rep", "hired_on": "2025-01-06"}, HR, 201).json()
    post(api, f"/v1/employees/{renewed['id']}/contract-reviews",
         {"on": "2025-12-15", "decision": "renew", "contract_months": 36}, HR)  # now ends in 2029
    open_ended = post(api, "/v1/employees", {"name": "D", "role": "sales_rep", "hired_on": "2025-01-06",
                                             "contract_months": 0}, HR, 201).json()
    for employee in (forgotten, reviewed, renewed, open_ended):
        post(api, f"/v1/employees/{employee['id']}/regularize", {"on": "2025-02-01"}, HR)
    raised = findings(api, "contract_review_missing")
    assert [(f["subject_id"], f["raised_on"]) for f in raised] == [(forgotten["id"], "2026-01-01")]
    assert "2026-01-05" in raised[0]["detail"]
