"""R5: schemathesis over every operation of `/openapi.json`, with a token holding every role so
each request reaches the code behind its endpoint: no server error, no answer outside the schema."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as openapi_checks

from api.app import create_app
from channel_domain.store.database import scratch_database
from tests.reliability.conftest import Served, serving

ROLES = ("channel_manager", "channel_specialist", "finance", "hr", "general_manager", "integration", "reporting",
         "auditor")
# CI runs a fixed sample (derandomized: the same cases every run, so a red run is a real one);
# a longer hunt: CHANNEL_DOMAIN_FUZZ_EXAMPLES=500 CHANNEL_DOMAIN_FUZZ_SEED=random make test.
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
    with scratch_database(server_url, prefix="cd_fuzz", template=template_database) as url, serving(url, projections=True) as server:
        yield server


@pytest.fixture(scope="module")
def every_role(fuzzed_server: Served, figure) -> Iterator[str]:
    yield fuzzed_server.token("fuzzer", *ROLES)
    figure(f"R5: schemathesis, {TALLY['operations']} operations, {TALLY['requests']} requests:"
           f" {TALLY['server errors']} server errors, {TALLY['failures']} answers outside the schema")


# The document `/openapi.json` serves, built without a server so that pytest can collect one
# test per operation (schemathesis' lazy fixture loader does not run on pytest 9.2).
schema = schemathesis.openapi.from_dict(create_app("postgresql:///not-connected").openapi())


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_answer_as_documented(case, fuzzed_server, every_role):
    if case.operation.label not in TALLY:
        TALLY[case.operation.label] = 1
        TALLY["operations"] += 1
    TALLY["requests"] += 1
    try:
        response = case.call(base_url=fuzzed_server.base, headers={"Authorization": f"Bearer {every_role}"})
        if response.status_code >= 500:
            TALLY["server errors"] += 1
            time.sleep(0.5)  # the server logs the traceback after it has answered
            print(fuzzed_server.log_tail())  # shown with the failure
        case.validate_response(response, checks=CHECKS)
    except Exception:
        TALLY["failures"] += 1
        raise
