"""R5: schemathesis over every operation of `/openapi.json`, with a token holding every role so
each request reaches the code behind its endpoint: no server error, no answer outside the schema."""

from __future__ import annotations

import base64
import collections
import json
import os
import random
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    # Under `make test` the operations are shared out among the suite's processes: one line each.
    share = f" (process {os.environ['PYTEST_XDIST_WORKER']}'s share)" if "PYTEST_XDIST_WORKER" in os.environ else ""
    figure(f"R5{share}: schemathesis, {TALLY['operations']} operations, {TALLY['requests']} requests"
           f" ({TALLY['on records']} on existing records; answers {answered}):"
           f" {TALLY['server errors']} server errors, {TALLY['failures']} answers outside the schema;"
           f" then {TALLY['import requests']} generated import bodies and {TALLY['cursor requests']} generated"
           " cursors, none a server error")


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
        if case.path == "/v1/events/stream":
            _call_the_stream(case, fuzzed_server, every_role)
            return
        if case.path == "/v1/events" and _within(case.query, "wait_s", 0.2, 30):
            case.query["wait_s"] = 0.2  # the long-poll's bounds are fuzzed; its patience is not
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


def _within(query, name: str, low: float, high: float) -> bool:
    try:
        return low < float(query[name]) <= high
    except (TypeError, KeyError, ValueError):
        return False


def _call_the_stream(case, fuzzed_server: Served, every_role: str) -> None:
    """The event stream never ends by itself: an accepted request is checked by its status and
    content type, then closed; a refusal is read and validated like any other answer."""
    request = case.as_transport_kwargs(base_url=fuzzed_server.base, headers={"Authorization": f"Bearer {every_role}"})
    with requests.request(**{**request, "stream": True, "timeout": 30}) as response:
        TALLY[str(response.status_code)] += 1
        if response.status_code >= 500:
            TALLY["server errors"] += 1
        assert response.status_code < 500, fuzzed_server.log_tail()
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            return
        response.content  # noqa: B018 - a refusal is short: read it whole for the checks
        case.validate_response(response, checks=CHECKS)


# --- the import's body and every cursor: schemathesis sends the import a plain string and
# cursors as the schema allows; these generate what a careless or hostile client would. ---

FUZZ_IMPORT_EXAMPLES = EXAMPLES_PER_OPERATION * 2
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                | st.text())
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
HUGE_NUMBERS = st.sampled_from(["1" * 5000, "9" * 40, "-" + "9" * 30, "1e400", "-1e-400", "1.5", "0.000001",
                                "123456789012345678901234567890.12", "NaN", "Infinity"])


def _nested(depth: int, kind: str) -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "list" else (b'{"a":' * depth + b"1" + b"}" * depth)


@st.composite
def import_lines(draw, contract: str) -> bytes:
    """One NDJSON line: a sale or return with its fields mangled, deep nesting, any JSON, or
    bytes that are not JSON at all."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return _nested(draw(st.sampled_from([10, 900, 1100, 20_000, 40_000])), draw(st.sampled_from(["list", "dict"])))
    if choice == 1:
        return json.dumps(draw(JSON_VALUES)).encode()
    if choice == 2:
        return draw(st.binary(max_size=64)).replace(b"\n", b" ")
    line: dict[str, object] = {
        "kind": draw(st.sampled_from(["sale", "return", "Sale", ""])),
        "contract_id": draw(st.sampled_from([contract, str(uuid.uuid4()), "not-a-uuid"])),
        "order_id": draw(st.text(max_size=20) | st.just("SO\u00001")),
        "sold_on": draw(st.sampled_from(["2026-03-02", "0001-01-01", "9999-12-31", "2026-02-30", ""])),
        "returned_on": "2026-03-05",
        "product": draw(st.none() | st.text(max_size=10)),
        "region": draw(st.sampled_from([None, "Zhejiang", "\u6d59\u6c5f", "Zhe\u0000jiang"])),
    }
    raw = json.dumps(line, ensure_ascii=draw(st.booleans()))
    amount = draw(st.sampled_from(['"10.00"', '"-1.00"', '"1e3"', "10.5", "10"]) | HUGE_NUMBERS)
    return (raw[:-1] + f', "amount": {amount}' + "}").encode()


def test_no_import_body_is_a_server_error(fuzzed_server, every_role, existing):
    @given(st.lists(import_lines(existing["contract"]), max_size=12), st.sampled_from([b"\n", b"\r\n"]))
    @settings(max_examples=FUZZ_IMPORT_EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def import_(lines: list[bytes], newline: bytes) -> None:
        body = b"".join(line + newline for line in lines)
        response = httpx.post(f"{fuzzed_server.base}/v1/sales/import", content=body, timeout=60, headers={
            "Authorization": f"Bearer {every_role}", "Content-Type": "application/x-ndjson"})
        TALLY["import requests"] += 1
        assert response.status_code < 500, (body[:2000], response.text, fuzzed_server.log_tail())
        if response.status_code == 200:
            result = response.json()
            # Every non-blank line is accounted for, accepted or rejected with its number.
            non_blank = [n for n, line in enumerate(body.split(b"\n"), 1) if line.strip()]
            assert result["accepted"] + result["rejected_total"] == len(non_blank), (body[:2000], result)
            assert {r["line"] for r in result["rejected"]} <= set(non_blank)

    import_()


PAGING = ("cursor", "after", "min_position")
CURSOR_VALUES = (st.integers(min_value=-(2**80), max_value=2**80).map(str)
                 | st.sampled_from(["", "0", "-0", "00000000000000000001", "9" * 19, "9" * 40, "1e3", "0x1f",
                                    "\u00b2", "\u0661\u0662", "\uff11", "MTIz", "bnVsbA==", "null", "%00", " 7"])
                 | st.text(max_size=30)
                 | st.binary(max_size=24).map(lambda b: base64.urlsafe_b64encode(b).decode()))


def _paged(existing: dict[str, str]) -> list[tuple[str, str]]:
    paged = []
    for path, item in schema.raw_schema["paths"].items():
        for parameter in item.get("get", {}).get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] in PAGING:
                resource = path.split("/")[2].rstrip("s")
                filled = re.sub(r"\{(\w+)\}", lambda m: existing.get(
                    resource if m[1] == "record_id" else m[1].removesuffix("_id"), "2026-03"), path)
                paged.append((filled, parameter["name"]))
    return paged


def test_no_cursor_is_a_server_error(fuzzed_server, every_role, existing):
    paged = _paged(existing)
    assert {name for _, name in paged} == set(PAGING)

    @given(st.sampled_from(paged), CURSOR_VALUES)
    @settings(max_examples=EXAMPLES_PER_OPERATION * 3, deadline=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    def page(where: tuple[str, str], value: str) -> None:
        check(*where, value)

    def check(path: str, name: str, value: str) -> None:
        with httpx.stream("GET", f"{fuzzed_server.base}{path}", params={name: value, "wait_s": "0"}, timeout=60,
                          headers={"Authorization": f"Bearer {every_role}"}) as response:
            # The event stream answers a good `after` with a stream that never ends: its status is
            # the answer (which of the paged operations a fixed seed draws a good `after` for
            # changes with the operations the service has).
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                response.read()
        TALLY["cursor requests"] += 1
        lagging = response.status_code == 503 and response.json().get("code") == "projection_lagging"
        assert response.status_code < 500 or lagging, (path, name, value, response.text, fuzzed_server.log_tail())
        if response.status_code == 422:
            # A well-formed position past the log's end is a refusal of its own (api.md's feed).
            beyond = name == "after" and value.isascii() and value.isdigit()
            assert response.json()["code"] in (("validation_error", "after_beyond_head") if beyond
                                               else ("validation_error",))

    for where in paged:  # each parameter meets the worst of them at least once, whatever is drawn
        for value in ("9" * 40, "\u00b2", "-1"):
            check(*where, value)
    page()
