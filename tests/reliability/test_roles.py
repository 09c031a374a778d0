"""R6: the whole role × endpoint matrix of ../shared/api.md against a real server; segregation of
duties on every approval; a revoked token refused at once by every server process."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from api.tokens import revoke_token
from tests.api.conftest import Api
from tests.api.flows import (
    FINANCE,
    GM,
    MANAGER,
    SPECIALIST,
    approved_partner,
    file_archive,
    post,
    problem,
    signed_contract,
)
from tests.api.test_role_table import ALL_ROLES, READ_TABLE, TABLE, X

# What the role table's transcription leaves to the conventions of api.md: every role reads
# records; the auditor alone verifies, exports and traces causation; anyone may ask for progress.
RECORD_READS = [(f"/v1/{noun}/{X}{tail}", ALL_ROLES)
                for noun in ("employees", "partners", "contracts", "targets", "commissions/disputes")
                for tail in ("", "/history")]
AUDIT_READS = [("/v1/audit/verify", {"auditor"}), ("/v1/audit/export", {"auditor"}),
               (f"/v1/audit/causation/{X}", {"auditor"})]
STREAMS = [("/v1/events/stream", {"integration", "auditor"})]  # endless: judged by status, then closed
SCHEMA_READS = [(f"/v1/events/schemas/{X}", ALL_ROLES)]  # one type's schema, as the list: every role
DELETES = [(f"/v1/webhooks/{X}", {"integration"})]
MATRIX = [("POST", path, allowed) for path, allowed in TABLE] + [
    ("GET", path, allowed) for path, allowed in READ_TABLE + RECORD_READS + AUDIT_READS + STREAMS + SCHEMA_READS] + [
    ("DELETE", path, allowed) for path, allowed in DELETES]
# Landing, liveness, Prometheus, and the keys that verify signed checkpoints (api.md): no token, by design.
OPEN = {("GET", "/"), ("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/audit/public-key")}


@pytest.fixture
def http(served) -> Iterator[Api]:
    with httpx.Client(base_url=served.base, timeout=30) as client:
        yield Api(client, served.database_url)


def _template(path: str) -> str:
    return path.split("?")[0].replace(X, "{}").replace("2026-03", "{}")


def test_the_matrix_covers_every_operation_the_service_documents(http):
    spec = http.client.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    as_templates = {(method, _template(path.replace("{", "§").replace("}", "§"))) for method, path in documented}
    normalised = {(method, "/".join("{}" if part.startswith("§") else part for part in path.split("/")))
                  for method, path in as_templates}
    assert normalised - {(m, p) for m, p in OPEN} == {(method, _template(path)) for method, path, _ in MATRIX}


def test_no_role_outside_the_table_succeeds_and_no_request_without_a_valid_token(http, figure):
    outcomes: collections.Counter[str] = collections.Counter()
    revoked = http.token("gone", *ALL_ROLES)
    with psycopg.connect(http.database_url, autocommit=True) as conn:
        token_id = conn.execute("SELECT token_id FROM api_tokens WHERE actor = 'gone'").fetchone()[0]
        revoke_token(conn, token_id)
    strangers = {"none": {}, "malformed": {"Authorization": "Bearer"}, "unknown": {"Authorization": "Bearer cd_x"},
                 "revoked": {"Authorization": f"Bearer {revoked}"}, "basic": {"Authorization": "Basic dXNlcjpwdw=="}}
    for method, path, allowed in MATRIX:
        for role in sorted(ALL_ROLES):
            response = _request(http, method, path, http.headers(f"someone-{role}", role))
            if role in allowed:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
                outcomes["allowed, reached the endpoint"] += 1
            else:
                outcomes["unauthorised successes"] += response.is_success
                problem(response, 403, "forbidden")
                outcomes["refused 403"] += 1
        for who, headers in strangers.items():
            response = _request(http, method, path, headers)
            outcomes["unauthorised successes"] += response.is_success
            problem(response, 401, "invalid_token" if who in ("unknown", "revoked") else response.json()["code"])
            # RFC 6750: a 401 names the scheme, and a token refused says so.
            challenge = response.headers.get("www-authenticate", "")
            assert challenge.startswith("Bearer"), (method, path, who, challenge)
            assert ('error="invalid_token"' in challenge) == (who in ("unknown", "revoked")), (method, path, who)
            outcomes["refused 401"] += 1
    figure(f"R6: {len(MATRIX)} endpoints x {len(ALL_ROLES)} roles + {len(strangers)} kinds of bad token:"
           f" {dict(outcomes)}")
    assert outcomes["unauthorised successes"] == 0


def _request(http: Api, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    with http.client.stream(method, path, json={} if method == "POST" else None, headers=headers) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        return response


def _version(http: Api, record: str, noun: str) -> int:
    return http.get(f"/v1/{noun}/{record}").json()["version"]


def test_segregation_of_duties_is_refused_on_every_approval_and_writes_nothing(http, figure):
    """Each approval of api.md, asked by the one actor who holds both the preparing and the
    approving role: 403 segregation_of_duties, nothing written; another approver then succeeds."""
    refused = []

    def refuse_then_allow(path: str, record: str, noun: str, both: tuple, other: tuple, body=None) -> None:
        before = _version(http, record, noun)
        problem(post(http, path, body, both, None), 403, "segregation_of_duties")
        assert _version(http, record, noun) == before
        post(http, path, body, other)
        refused.append(path.replace(record, "{id}"))

    boss = ("boss", ("channel_specialist", "channel_manager"))
    partner = post(http, "/v1/partners", {"kind": "enterprise_agent", "name": "Own Co."}, boss, 201).json()["id"]
    file_archive(http, partner)
    refuse_then_allow(f"/v1/partners/{partner}/review", partner, "partners", boss, MANAGER, {"decision": "approve"})

    drafter = ("mgr-gm", ("channel_manager", "general_manager"))
    contract = post(http, "/v1/contracts", {
        "partner_id": partner, "starts_on": "2026-01-01", "ends_on": "2026-12-31", "territory": "Zhejiang",
        "commission": {"type": "flat", "rate": "0.05"}, "goals": "grow", "products": ["router"],
        "price_policy": "list", "obligations": "report", "support": "training", "confidentiality": "two years",
    }, drafter, 201).json()["id"]
    post(http, f"/v1/contracts/{contract}/submit", None, drafter)
    refuse_then_allow(f"/v1/contracts/{contract}/approve", contract, "contracts", drafter, GM)
    post(http, f"/v1/contracts/{contract}/sign", {"signed_on": "2026-01-01"}, drafter)
    amendment = post(http, f"/v1/contracts/{contract}/amendments", {
        "effective_on": "2026-03-01", "commission": {"type": "flat", "rate": "0.06"}}, drafter).json()["amendment_id"]
    digest = http.get(f"/v1/contracts/{contract}/amendments/{amendment}/preview").json()["digest"]
    refuse_then_allow(f"/v1/contracts/{contract}/amendments/{amendment}/approve", contract, "contracts", drafter, GM,
                      {"preview_digest": digest})
    renewal = post(http, f"/v1/contracts/{contract}/renew", {"ends_on": "2027-06-30"}, drafter).json()["renewal_id"]
    refuse_then_allow(f"/v1/contracts/{contract}/renewals/{renewal}/approve", contract, "contracts", drafter, GM)

    clerk = ("li", ("channel_specialist", "finance"))
    change = post(http, f"/v1/partners/{partner}/payout-account/changes", {"account": "6222 0001"}, clerk).json()
    refuse_then_allow(f"/v1/partners/{partner}/payout-account/changes/{change['change_id']}/approve", partner,
                      "partners", clerk, FINANCE)
    post(http, f"/v1/partners/{partner}/payouts", {"period": "2026-03", "amount": "10.00"}, clerk)
    refuse_then_allow(f"/v1/partners/{partner}/payouts/2026-03/verify", partner, "partners", clerk, FINANCE)
    post(http, f"/v1/partners/{partner}/housing-subsidies", {"period": "2026-03", "amount": "800.00"}, clerk)
    refuse_then_allow(f"/v1/partners/{partner}/housing-subsidies/2026-03/verify", partner, "partners", clerk, FINANCE)

    other = approved_partner(http)
    signed_contract(http, other)
    account = post(http, f"/v1/partners/{other}/payout-account/changes", {"account": "6222 0002"}, SPECIALIST).json()
    post(http, f"/v1/partners/{other}/payout-account/changes/{account['change_id']}/approve", None, FINANCE)
    post(http, f"/v1/partners/{other}/payouts", {"period": "2026-03", "amount": "10.00"}, SPECIALIST)
    verifier = ("fin-gm", ("finance", "general_manager"))
    post(http, f"/v1/partners/{other}/payouts/2026-03/verify", None, verifier)
    refuse_then_allow(f"/v1/partners/{other}/payouts/2026-03/approve", other, "partners", verifier, GM)
    post(http, f"/v1/partners/{other}/housing-subsidies", {"period": "2026-03", "amount": "800.00"}, SPECIALIST)
    post(http, f"/v1/partners/{other}/housing-subsidies/2026-03/verify", None, verifier)
    refuse_then_allow(f"/v1/partners/{other}/housing-subsidies/2026-03/approve", other, "partners", verifier, GM)

    hr = ("hr-1", ("hr",))
    leader = post(http, "/v1/employees", {"name": "Lead", "role": "manager", "hired_on": "2026-01-05",
                                          "login": "lead"}, hr, 201).json()["id"]
    target = post(http, "/v1/targets", {"assignee_type": "team", "assignee_id": leader, "period": "2026",
                                        "amount": "1000.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()["id"]
    revision = post(http, f"/v1/targets/{target}/revisions", {"amount": "1200.00", "reason": "bigger area"},
                    drafter).json()["revision_id"]
    refuse_then_allow(f"/v1/targets/{target}/revisions/{revision}/approve", target, "targets", drafter, GM)

    rep = post(http, "/v1/employees", {"name": "Rep", "role": "sales_rep", "hired_on": "2026-01-05",
                                       "manager_id": leader}, hr, 201).json()["id"]
    lead_and_hr = ("lead", ("channel_manager", "hr"))
    proposal = post(http, f"/v1/employees/{rep}/dismissal-proposals", {"on": "2026-09-30", "reason": "targets"},
                    lead_and_hr).json()["proposal_id"]
    refuse_then_allow(f"/v1/employees/{rep}/dismissal-proposals/{proposal}/approve", rep, "employees",
                      lead_and_hr, hr)

    approvals = {path for path, _ in TABLE if path.endswith(("/review", "/approve", "/verify"))}
    assert len(refused) == len(approvals)
    figure(f"R6: segregation of duties refused on all {len(refused)} approvals (403, nothing written)")


def test_a_revoked_token_is_refused_at_once_by_every_server_process(http, figure):
    token = http.token("leaver", "auditor")
    headers = {"Authorization": f"Bearer {token}"}
    assert all(http.client.get("/v1/audit/verify", headers=headers).status_code == 200 for _ in range(8))
    with psycopg.connect(http.database_url, autocommit=True) as conn:
        token_id = conn.execute("SELECT token_id FROM api_tokens WHERE actor = 'leaver'").fetchone()[0]
        assert revoke_token(conn, token_id)
    revoked_at = time.monotonic()
    # Fresh connections, so the answers come from both worker processes, not one kept-alive.
    # Each process keeps tokens it has seen and forgets them when it hears the revocation's
    # notification (api/token_cache.py), about a millisecond after the commit.
    answers: list[tuple[float, int]] = []
    while len([status for _, status in answers if status == 401]) < 20:
        status = httpx.get(f"{http.client.base_url}/v1/audit/verify", headers=headers).status_code
        answers.append((time.monotonic() - revoked_at, status))
        assert answers[-1][0] < 5, f"still admitted 5 s after the revocation: {answers}"
    admitted = [at for at, status in answers if status != 401]
    figure(f"R6: a revoked token over fresh connections: {len(admitted)} admitted after the commit"
           f" (the last {max(admitted, default=0) * 1000:.1f} ms after it), then 20 of 20 refused")
    assert max(admitted, default=0) < 0.1, answers  # by either process: each heard it within 100 ms
