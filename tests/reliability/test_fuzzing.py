"""R5: schemathesis over every operation of `/openapi.json`, with a token holding every role so
each request reaches the code behind its endpoint: no server error, no answer outside the schema."""

from __future__ import annotations

import collections
import os
import random
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as openapi_checks

from api.app import create_app
from api.tokens import ROLES
from channel_domain.store.database import scratch_database
from tests.api.conftest import Api
from tests.api.flows import HR, MANAGER, approved_partner, post, signed_contract
from tests.reliability.conftest import Served, serving

# CI runs a fixed sample (derandomized: the same cases every run, so a red run is a real one);
# a longer hunt: CHANNEL_DOMAIN_FUZZ_EXAMPLES=300 CHANNEL_DOMAIN_FUZZ_SEED=random pytest on this file.
EXAMPLES_PER_OPERATION = int(os.environ.get("CHANNEL_DOMAIN_FUZZ_EXAMPLES", "30"))
DERANDOMIZE = os.environ.get("CHANNEL_DOMAIN_FUZZ_SEED", "fixed") == "fixed"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
schemathesis.serializer.alias("application/x-ndjson", "text/plain")  # the import's body: lines of text
TALLY: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module")
def fuzzed_server(server_url: str, template_database: str) -> Iterator[Served]:
    with scratch_database(server_url, prefix="cd_fuzz", template=template_database) as url, \
            serving(url, projections=True) as server:
        yield server


@pytest.fixture(scope="module")
def every_role(fuzzed_server: Served, figure) -> Iterator[str]:
    assert httpx.get(f"{fuzzed_server.base}/openapi.json").json() == schema.raw_schema  # what it serves
    yield fuzzed_server.token("fuzzer", *ROLES)
    answered = ", ".join(f"{status}: {TALLY[status]}" for status in sorted(k for k in TALLY if k.isdigit()))
    figure(f"R5: schemathesis, {TALLY['operations']} operations, {TALLY['requests']} requests"
           f" ({TALLY['on records']} on existing records; answers {answered}):"
           f" {TALLY['server errors']} server errors, {TALLY['failures']} answers outside the schema")


@pytest.fixture(scope="module")
def existing(fuzzed_server: Served) -> dict[str, str]:
    """Records for half the cases to name, so that generated bodies meet real state and rules,
    not only `404`."""
    with httpx.Client(base_url=fuzzed_server.base, timeout=30) as client:
        api = Api(client, fuzzed_server.database_url)
        partner = approved_partner(api, "enterprise_agent")
        contract = signed_contract(api, partner, territory="Zhejiang")
        employee = post(api, "/v1/employees", {"name": "Wang", "role": "sales_rep", "hired_on": "2026-01-05"},
                        HR, 201).json()["id"]
        target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": employee, "period": "2026",
                                           "amount": "1000.00", "kpis": {"sales_revenue": "1"}}, MANAGER, 201).json()["id"]
    return {"employee": employee, "partner": partner, "contract": contract, "target": target}


def _on_existing_records(case, existing: dict[str, str]) -> bool:
    if not case.path_parameters or random.Random(repr(sorted(case.path_parameters.items()))).random() < 0.5:
        return False
    resource = case.path.split("/")[2].rstrip("s")  # /v1/partners/{record_id} -> partner
    for name in case.path_parameters:
        kind = resource if name == "record_id" else name.removesuffix("_id")
        if kind in existing:
            case.path_parameters[name] = existing[kind]
    return True


# The document `/openapi.json` serves, built without a server so that pytest can collect one
# test per operation (schemathesis' lazy fixture loader does not run on pytest 9.2).
schema = schemathesis.openapi.from_dict(create_app("postgresql:///not-connected").openapi())


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_answer_as_documented(case, fuzzed_server, every_role, existing):
    if case.operation.label not in TALLY:
        TALLY[case.operation.label] = 1
        TALLY["operations"] += 1
    TALLY["requests"] += 1
    TALLY["on records"] += _on_existing_records(case, existing)
    try:
        response = case.call(base_url=fuzzed_server.base, headers={"Authorization": f"Bearer {every_role}"})
        TALLY[str(response.status_code)] += 1
        if response.status_code >= 500:
            TALLY["server errors"] += 1
            time.sleep(0.5)  # the server logs the traceback after it has answered
            print(fuzzed_server.log_tail())  # shown with the failure
        case.validate_response(response, checks=CHECKS)
    except Exception:
        TALLY["failures"] += 1
        raise
