"""The role table of api.md, row by row: every other role is refused with 403 before any
rule is looked at, so the path ids need not exist."""

from __future__ import annotations

import pytest

from tests.api.flows import problem

ALL_ROLES = {"channel_manager", "channel_specialist", "finance", "hr", "general_manager", "integration",
             "reporting", "auditor"}
X = "00000000-0000-0000-0000-00000000000a"
# (path, roles allowed) — transcribed from ../shared/api.md, not from the code.
TABLE = [
    ("/v1/employees", {"hr"}),
    (f"/v1/employees/{X}/regularize", {"hr"}),
    (f"/v1/employees/{X}/fail-probation", {"hr"}),
    (f"/v1/employees/{X}/promote", {"hr"}),
    (f"/v1/employees/{X}/transfer", {"hr"}),
    (f"/v1/employees/{X}/evaluations", {"channel_manager", "hr"}),
    (f"/v1/employees/{X}/warnings", {"hr"}),
    (f"/v1/employees/{X}/contract-reviews", {"hr"}),
    (f"/v1/employees/{X}/dismiss", {"hr"}),
    (f"/v1/employees/{X}/personal-data/erase", {"hr"}),
    (f"/v1/employees/{X}/separation", {"hr"}),
    (f"/v1/employees/{X}/dismissal-proposals", {"channel_manager"}),
    (f"/v1/employees/{X}/dismissal-proposals/{X}/approve", {"hr"}),
    ("/v1/partners", {"channel_manager", "channel_specialist"}),
    (f"/v1/partners/{X}/review", {"channel_manager"}),
    (f"/v1/partners/{X}/suspend", {"channel_manager"}),
    (f"/v1/partners/{X}/reinstate", {"channel_manager"}),
    (f"/v1/partners/{X}/terminate", {"channel_manager"}),
    (f"/v1/partners/{X}/visits", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/evaluations", {"channel_manager"}),
    (f"/v1/partners/{X}/complaints", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/complaints/{X}/resolve", {"channel_manager"}),
    (f"/v1/partners/{X}/complaints/{X}/escalate", {"channel_manager"}),
    (f"/v1/partners/{X}/deposit/payments", {"finance"}),
    (f"/v1/partners/{X}/deposit/refunds", {"finance"}),
    (f"/v1/partners/{X}/payout-account/changes", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/payout-account/changes/{X}/approve", {"finance"}),
    (f"/v1/partners/{X}/trainings", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/remittances", {"finance"}),
    (f"/v1/partners/{X}/housing-subsidies", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/housing-subsidies/2026-03/verify", {"finance"}),
    (f"/v1/partners/{X}/housing-subsidies/2026-03/approve", {"general_manager"}),
    (f"/v1/partners/{X}/housing-subsidies/2026-03/pay", {"finance"}),
    (f"/v1/partners/{X}/payout-account/changes/{X}/reject", {"finance"}),
    (f"/v1/partners/{X}/documents", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/corrective-plans", {"channel_manager"}),
    (f"/v1/partners/{X}/corrective-plans/{X}/close", {"channel_manager"}),
    (f"/v1/partners/{X}/inventory-reports", {"integration", "channel_specialist"}),
    (f"/v1/partners/{X}/deals", {"channel_specialist", "integration"}),
    (f"/v1/partners/{X}/payouts", {"channel_specialist", "channel_manager"}),
    (f"/v1/partners/{X}/payouts/2026-03/verify", {"finance"}),
    (f"/v1/partners/{X}/payouts/2026-03/approve", {"general_manager"}),
    (f"/v1/partners/{X}/payouts/2026-03/pay", {"finance"}),
    ("/v1/contracts", {"channel_manager"}),
    (f"/v1/contracts/{X}/submit", {"channel_manager"}),
    (f"/v1/contracts/{X}/approve", {"general_manager", "channel_manager"}),
    (f"/v1/contracts/{X}/sign", {"channel_manager"}),
    (f"/v1/contracts/{X}/amendments", {"channel_manager"}),
    (f"/v1/contracts/{X}/amendments/{X}/approve", {"general_manager", "channel_manager"}),
    (f"/v1/contracts/{X}/amendments/{X}/reject", {"general_manager", "channel_manager"}),
    (f"/v1/contracts/{X}/renewals/{X}/approve", {"general_manager", "channel_manager"}),
    (f"/v1/contracts/{X}/renewals/{X}/reject", {"general_manager", "channel_manager"}),
    (f"/v1/contracts/{X}/terminate", {"channel_manager"}),
    (f"/v1/contracts/{X}/renew", {"channel_manager"}),
    (f"/v1/contracts/{X}/sales", {"integration", "channel_specialist"}),
    (f"/v1/contracts/{X}/returns", {"integration", "channel_specialist"}),
    ("/v1/sales/import", {"integration"}),
    ("/v1/targets", {"channel_manager"}),
    (f"/v1/targets/{X}/revisions", {"channel_manager"}),
    (f"/v1/targets/{X}/revisions/{X}/approve", {"general_manager", "channel_manager"}),
    (f"/v1/targets/{X}/close", {"channel_manager"}),
    (f"/v1/targets/{X}/close/confirm", {"general_manager", "channel_manager"}),
    ("/v1/commissions/periods/2026-03/close", {"finance"}),
    (f"/v1/commissions/statements/{X}/2026-03/disputes", {"channel_specialist", "channel_manager", "finance"}),
    (f"/v1/commissions/statements/{X}/2026-03/disputes/{X}/resolve", {"finance"}),
    ("/v1/webhooks", {"integration"}),
    (f"/v1/webhooks/{X}/pause", {"integration"}),
    (f"/v1/webhooks/{X}/resume", {"integration"}),
    (f"/v1/webhooks/{X}/parked/replay", {"integration"}),
    ("/v1/audit/checkpoints", {"auditor"}),  # a checkpoint signed on demand (api.md "Checkpoints")
]


@pytest.mark.parametrize(("path", "allowed"), TABLE, ids=[path.replace(X, "{id}") for path, _ in TABLE])
def test_roles_outside_the_table_are_refused(api, path, allowed):
    for role in sorted(ALL_ROLES - allowed):
        response = api.post(path, {}, actor=f"someone-{role}", roles=(role,))
        problem(response, 403, "forbidden")
    for role in sorted(allowed):
        response = api.post(path, {}, actor=f"someone-{role}", roles=(role,))
        assert response.status_code != 403, (role, response.text)


def test_every_command_endpoint_is_in_the_table(api):
    spec = api.client.get("/openapi.json").json()
    posts = {path for path, item in spec["paths"].items() if "post" in item}
    table = {path.replace(X, "{id}") for path, _ in TABLE}
    normalised = {p.replace("{employee_id}", "{id}").replace("{partner_id}", "{id}").replace("{contract_id}", "{id}")
                  .replace("{target_id}", "{id}").replace("{complaint_id}", "{id}").replace("{change_id}", "{id}")
                  .replace("{revision_id}", "{id}").replace("{proposal_id}", "{id}").replace("{plan_id}", "{id}")
                  .replace("{amendment_id}", "{id}").replace("{renewal_id}", "{id}").replace("{webhook_id}", "{id}").replace("{dispute_id}", "{id}").replace("{period}", "2026-03")
                  for p in posts}
    assert normalised == table


def test_reads_are_open_to_every_role(api):
    for role in sorted(ALL_ROLES):
        response = api.get(f"/v1/partners/{X}", actor=f"reader-{role}", roles=(role,))
        problem(response, 404, "not_found")


# The read side of api.md: (path, roles allowed).
READ_TABLE = [
    (f"/v1/commissions/statements/{X}/2026-03", {"reporting", "finance", "auditor", "channel_manager"}),
    ("/v1/commissions/statements", {"reporting", "finance", "auditor", "channel_manager"}),
    ("/v1/commissions/periods/2026-03", {"reporting", "finance", "auditor", "channel_manager"}),
    (f"/v1/targets/{X}/attainment", {"reporting", "channel_manager", "auditor"}),
    (f"/v1/partners/{X}/activity?period=2026-03", {"reporting", "channel_manager", "auditor"}),
    # Reports (api.md "Lists and reports"): reporting, channel_manager, finance, auditor.
    ("/v1/reports/partners?period=2026-03", {"reporting", "channel_manager", "finance", "auditor"}),
    ("/v1/reports/inventory", {"reporting", "channel_manager", "finance", "auditor"}),
    ("/v1/reports/receivables", {"reporting", "channel_manager", "finance", "auditor"}),
    ("/v1/reports/payouts?period=2026-03", {"reporting", "channel_manager", "finance", "auditor"}),
    ("/v1/reports/evaluations?period=2026-03", {"reporting", "channel_manager", "finance", "auditor"}),
    ("/v1/audit/events", {"auditor"}),
    ("/v1/audit/findings", {"auditor"}),
    # Proof for auditors (api.md): the latest checkpoint for every role, the rest the auditor's.
    ("/v1/audit/checkpoints/latest", ALL_ROLES),
    ("/v1/audit/checkpoints", {"auditor"}),
    ("/v1/audit/proofs/inclusion?position=1", {"auditor"}),
    ("/v1/audit/proofs/consistency?first=1", {"auditor"}),
    (f"/v1/commissions/statements/{X}/2026-03?proofs=true", {"reporting", "finance", "auditor", "channel_manager"}),
    ("/v1/projections", ALL_ROLES),
    ("/v1/events/schemas", ALL_ROLES),
    ("/v1/events", {"integration", "auditor"}),
    (f"/v1/contracts/{X}/amendments/{X}/preview", {"general_manager", "channel_manager", "finance", "auditor"}),
    # Webhooks are the integration role's; auditors read everything (never a secret).
    ("/v1/webhooks", {"integration", "auditor"}),
    (f"/v1/webhooks/{X}", {"integration", "auditor"}),
    (f"/v1/webhooks/{X}/changes", {"integration", "auditor"}),
    # The record lists: every role reads them, as it reads the records (GET /v1/{record}/{id}).
    ("/v1/partners", ALL_ROLES),
    ("/v1/contracts", ALL_ROLES),
    ("/v1/employees", ALL_ROLES),
    ("/v1/targets", ALL_ROLES),
    # Diffs (api.md "Proof for auditors"): a record's for every role, a statement's as statements.
    (f"/v1/employees/{X}/diff?from=1&to=2", ALL_ROLES),
    (f"/v1/partners/{X}/diff?from=1&to=2", ALL_ROLES),
    (f"/v1/contracts/{X}/diff?from=1&to=2", ALL_ROLES),
    (f"/v1/targets/{X}/diff?from=1&to=2", ALL_ROLES),
    (f"/v1/commissions/disputes/{X}/diff?from=1&to=2", ALL_ROLES),  # a dispute is a record too
    (f"/v1/commissions/statements/{X}/2026-03/diff?from=2026-03-01T00:00:00Z",
     {"reporting", "finance", "auditor", "channel_manager"}),
]
# Reports (api.md "Lists and reports"): reporting, channel_manager, finance, auditor.
REPORT_READERS = {"reporting", "channel_manager", "finance", "auditor"}
READ_TABLE += [
    ("/v1/reports/sales?period=2026-03&group_by=partner", REPORT_READERS),
    ("/v1/reports/key-terminals?period=2026-03", REPORT_READERS),
    ("/v1/reports/commission-efficiency?period=2026-03", REPORT_READERS),
]


@pytest.mark.parametrize(("path", "allowed"), READ_TABLE, ids=[path.replace(X, "{id}") for path, _ in READ_TABLE])
def test_read_models_are_refused_to_roles_outside_the_table(api, path, allowed):
    for role in sorted(ALL_ROLES):
        response = api.client.get(path, headers=api.headers(f"reader-{role}", role))
        if role in allowed:
            assert response.status_code in (200, 404), (role, response.text)
        else:
            problem(response, 403, "forbidden")
