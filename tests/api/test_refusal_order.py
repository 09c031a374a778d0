"""Over HTTP, the refusal order of api.md's Precise points: 403 (role, segregation of duties)
before 422 (the state of what the step acts on); 404 for a step's unknown record, which must be
found to know who requested or prepared it."""

from __future__ import annotations

from tests.api.flows import FINANCE, approved_partner, post, problem, signed_contract
from tests.api.test_commissions import with_account

PAT = ("pat", ("channel_specialist", "finance"))
BOSS = ("boss", ("channel_manager", "general_manager"))


def funded_partner(api) -> str:
    partner = approved_partner(api, "retailer")
    signed_contract(api, partner)
    with_account(api, partner)
    return partner


def test_the_preparer_approving_an_unverified_payout_is_403_not_422(api):
    partner = funded_partner(api)
    version = post(api, f"/v1/partners/{partner}/payouts", {"period": "2026-03", "amount": "10.00"}, BOSS).json()[
        "version"]
    problem(post(api, f"/v1/partners/{partner}/payouts/2026-03/approve", None, BOSS, None), 403,
            "segregation_of_duties")
    problem(post(api, f"/v1/partners/{partner}/payouts/2026-04/approve", None, BOSS, None), 404, "not_found")
    assert api.get(f"/v1/partners/{partner}").json()["version"] == version


def test_the_preparer_verifying_a_verified_subsidy_again_is_403_not_422(api):
    partner = funded_partner(api)
    post(api, f"/v1/partners/{partner}/housing-subsidies", {"period": "2026-03", "amount": "800.00"}, PAT)
    post(api, f"/v1/partners/{partner}/housing-subsidies/2026-03/verify", None, FINANCE)
    problem(post(api, f"/v1/partners/{partner}/housing-subsidies/2026-03/verify", None, PAT, None), 403,
            "segregation_of_duties")
    problem(post(api, f"/v1/partners/{partner}/housing-subsidies/2026-03/verify", None, FINANCE, None), 422,
            "invalid_transition")


def test_the_requester_approving_a_rejected_account_change_is_403_not_422(api):
    partner = approved_partner(api, "retailer")
    change = post(api, f"/v1/partners/{partner}/payout-account/changes", {"account": "6222 0000 1111"},
                  PAT).json()["change_id"]
    post(api, f"/v1/partners/{partner}/payout-account/changes/{change}/reject", {"reason": "no"}, FINANCE)
    problem(post(api, f"/v1/partners/{partner}/payout-account/changes/{change}/approve", None, PAT, None), 403,
            "segregation_of_duties")
