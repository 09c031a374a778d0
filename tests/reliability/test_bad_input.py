"""R7: bad input of every kind against a real server: each is answered with problem+json,
writes nothing, and leaks nothing of the service's insides (nor echoes what was sent)."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from api.tokens import ROLES
from channel_domain.store.database import scratch_database
from tests.api.conftest import Api
from tests.api.flows import MANAGER, approved_partner, post, signed_contract
from tests.reliability.conftest import Served, serving

SQL = ["' OR '1'='1", "1; DROP TABLE events; --", "\" OR 1=1 --", "'); DELETE FROM api_tokens; --",
       "1 UNION SELECT token_sha256 FROM api_tokens"]
PATHS = ["..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%00", "..\\..\\windows\\win.ini",
         "%252e%252e%252f", "x" * 5000]
# What an error must never show: a traceback, the database's words, where the code lives.
LEAKS = ["Traceback", "psycopg", "postgresql://", "site-packages", "/work/", ".py\"", "File \"", "SELECT ",
         "sqlstate", "syntax error", "relation \"", "eventsourcing", "pydantic_core"]
MEBIBYTES_10 = 10 * 1024 * 1024


@dataclass
class Target:
    server: Served
    api: Api
    contract: str
    partner: str
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def target(server_url: str, template_database: str) -> Iterator[Target]:
    with scratch_database(server_url, prefix="cd_bad", template=template_database) as url, serving(url) as server, \
            httpx.Client(base_url=server.base, timeout=60) as client:
        api = Api(client, url)
        partner = approved_partner(api)
        contract = signed_contract(api, partner)
        every_role = api.headers("prober", *ROLES)
        yield Target(server, api, contract, partner, every_role)


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _sale(**changes: Any) -> dict[str, Any]:
    return {"order_id": "SO-1", "amount": "10.00", "sold_on": "2026-03-02", **changes}


def cases(contract: str, partner: str) -> list[tuple[str, str, str, bytes | None, dict[str, str], tuple[int, ...]]]:
    """(name, method, path, body, extra headers, acceptable statuses)."""
    sales = f"/v1/contracts/{contract}/sales"
    found: list[tuple[str, str, str, bytes | None, dict[str, str], tuple[int, ...]]] = []
    for name, raw in {"truncated": b'{"order_id": "SO-1"', "bare bracket": b"[", "not json": b"nul",
                      "invalid utf-8": b'{"order_id": "\xff\xfe"}', "empty": b"", "trailing comma": b'{"a": 1,}',
                      "NaN": b'{"order_id": "SO-1", "amount": NaN, "sold_on": "2026-03-02"}',
                      "deep nesting": b"[" * 100_000 + b"]" * 100_000}.items():
        found.append((f"malformed JSON: {name}", "POST", sales, raw, {}, (400, 422)))
    for name, body in {"array": [_sale()], "string": "SO-1", "null": None, "number": 1}.items():
        found.append((f"not an object: {name}", "POST", sales, _json(body), {}, (400, 422)))
    for name, body in {
        "amount as list": _sale(amount=["10.00"]), "amount as object": _sale(amount={"value": "10.00"}),
        "amount as bool": _sale(amount=True), "date as number": _sale(sold_on=20260302),
        "impossible date": _sale(sold_on="2026-02-30"), "date in year 1": _sale(sold_on="0001-01-01"),
        "date in year 9999": _sale(sold_on="9999-12-31"), "order id as number": _sale(order_id=7),
        "order id empty": _sale(order_id=""), "order id 10 000 chars": _sale(order_id="x" * 10_000),
        "missing amount": {"order_id": "SO-1", "sold_on": "2026-03-02"},
        "money not a number": _sale(amount="ten"), "money with exponent": _sale(amount="1e3"),
        "money infinite": _sale(amount="Infinity"),
    }.items():
        found.append((f"wrong type: {name}", "POST", sales, _json(body), {}, (422,)))
    for name, amount in {"fraction": 10.5, "integer": 10, "huge": 10**40, "tiny": 1e-9}.items():
        found.append((f"float money: {name}", "POST", sales, _json(_sale(amount=amount)), {}, (422,)))
    for amount in ("-10.00", "-0.01"):
        found.append((f"negative amount {amount}", "POST", sales, _json(_sale(amount=amount)), {}, (422,)))
    found.append(("negative deposit", "POST", f"/v1/partners/{partner}/deposit/payments",
                  _json({"amount": "-1.00", "on": "2026-03-01"}), {}, (422,)))
    found.append(("negative target", "POST", "/v1/targets", _json({
        "assignee_type": "team", "assignee_id": "east", "period": "2026", "amount": "-5.00",
        "kpis": {"sales_revenue": "1"}}), {}, (422,)))
    # PostgreSQL text and jsonb cannot hold NUL: accepted, it would stop the projections at it.
    found.append(("NUL in a body string", "POST", "/v1/partners", _json({"kind": "retailer", "name": "a\x00b"}), {},
                  (422,)))
    found.append(("NUL in a nested key", "POST", f"/v1/partners/{partner}/evaluations",
                  _json({"period": "2026-Q1", "scores": {"service\x00": 80}}), {}, (422,)))
    found.append(("NUL in a query", "GET", "/v1/audit/events?actor=a%00b", None, {}, (422,)))
    found.append(("unknown field", "POST", sales, _json(_sale(discount="5.00")), {}, (422,)))
    found.append(("unknown field on a creation", "POST", "/v1/partners",
                  _json({"kind": "retailer", "name": "X", "is_admin": True}), {}, (422,)))
    found.append(("10 MB JSON body", "POST", sales, _json(_sale(product="x" * MEBIBYTES_10)), {}, (413,)))
    found.append(("10 MB body, no length declared", "POST", sales, None, {"x-chunked": "10MB"}, (413,)))
    for n, injection in enumerate(SQL):
        found.append((f"SQL in a path id #{n}", "GET", f"/v1/partners/{injection}", None, {}, (404, 422)))
        found.append((f"SQL in a query #{n}", "GET", "/v1/audit/events?actor=" + injection, None, {}, (200, 422)))
        found.append((f"SQL in a period #{n}", "GET", f"/v1/commissions/statements/{partner}/{injection}", None, {},
                      (404, 422)))
        found.append((f"SQL in an id field #{n}", "POST", "/v1/contracts",
                      _json({"partner_id": injection, "starts_on": "2026-01-01", "ends_on": "2026-12-31",
                             "commission": {"type": "flat", "rate": "0.03"}}), {}, (422,)))
        found.append((f"SQL in a cursor #{n}", "GET", "/v1/commissions/statements?cursor=" + injection, None, {},
                      (422,)))
    for n, path in enumerate(PATHS):
        found.append((f"path injection #{n}", "GET", f"/v1/partners/{path}", None, {}, (404, 422)))
        found.append((f"path injection in history #{n}", "GET", f"/v1/contracts/{path}/history", None, {},
                      (404, 422)))
    found.append(("If-Match not a version", "POST", sales, _json(_sale()), {"If-Match": "'; DROP TABLE events"},
                  (400, 412, 422)))
    found.append(("Idempotency-Key of 10 000 chars", "POST", sales, _json(_sale()),
                  {"Idempotency-Key": "k" * 10_000}, (400, 422)))
    found.append(("text/plain body", "POST", sales, b"order_id=SO-1", {"Content-Type": "text/plain"}, (400, 415, 422)))
    return found


TALLY: collections.Counter[str] = collections.Counter()


def _written(server: Served) -> tuple[int, ...]:
    with psycopg.connect(server.database_url) as conn:
        return tuple(conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM command_outcomes),"
            " (SELECT count(*) FROM api_tokens), (SELECT coalesce(max(position), 0) FROM events)").fetchone())


def _chunks(size: int) -> Iterator[bytes]:
    sent = 0
    yield b'{"order_id": "SO-1", "amount": "10.00", "sold_on": "2026-03-02", "product": "'
    while sent < size:
        yield b"x" * 65536
        sent += 65536
    yield b'"}'


def test_every_bad_input_is_a_problem_that_writes_and_leaks_nothing(target, figure):
    statuses: collections.Counter[int] = collections.Counter()
    failures = []
    for name, method, path, body, extra, acceptable in cases(target.contract, target.partner):
        before = _written(target.server)
        headers = {"Content-Type": "application/json", **target.headers, **extra}
        content = _chunks(MEBIBYTES_10) if headers.pop("x-chunked", None) else body
        response = target.api.client.request(method, path, content=content, headers=headers)
        statuses[response.status_code] += 1
        text = response.text
        problems = []
        if response.status_code not in acceptable:
            problems.append(f"status {response.status_code}, wanted one of {acceptable}")
        if response.status_code >= 400:
            if not response.headers.get("content-type", "").startswith("application/problem+json"):
                problems.append(f"content-type {response.headers.get('content-type')}")
            elif not {"type", "title", "status", "detail", "code"} <= set(response.json()):
                problems.append("a problem without its members")
        if name.startswith("malformed JSON") and response.status_code == 400 \
                and response.json().get("code") != "malformed_json":
            problems.append(f"code {response.json().get('code')}, not malformed_json")
        problems += [f"leaks {leak!r}" for leak in LEAKS if leak.lower() in text.lower()]
        problems += [f"echoes {probe!r}" for probe in SQL + ["passwd", "win.ini"] if probe in text]
        if _written(target.server) != before:
            problems.append("wrote something")
        if problems:
            failures.append((name, problems, text[:300]))
    TALLY.update(cases=sum(statuses.values()), failures=len(failures))
    figure(f"R7: {sum(statuses.values())} bad inputs: answers {dict(sorted(statuses.items()))};"
           f" {len(failures)} answered otherwise than a clean problem")
    assert failures == []


def test_free_text_that_looks_like_sql_is_stored_verbatim_and_harms_nothing(target):
    for n, injection in enumerate(SQL):
        created = post(target.api, "/v1/partners", {"kind": "retailer", "name": injection}, MANAGER, 201).json()
        assert target.api.get(f"/v1/partners/{created['id']}").json()["name"] == injection
    with psycopg.connect(target.server.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0] >= 1  # nothing was dropped or deleted


def test_huge_and_broken_ndjson_lines_are_rejected_alone_and_write_nothing(target, figure):
    good = json.dumps({"kind": "sale", "contract_id": target.contract, "order_id": "NDJ-1", "amount": "5.00",
                       "sold_on": "2026-03-03"})
    bad_lines = [
        b'{"kind": "sale", "contract_id": "' + target.contract.encode() + b'", "order_id": "' + b"x" * 200_000 + b'"}',
        b"x" * MEBIBYTES_10,  # a single 10 MB line, no newline inside
        b'{"kind": "sale", "amount": 5.0}',
        b'{"kind": "refund"}',
        b"\xff\xfe\x00",
        json.dumps({"kind": "sale", "contract_id": target.contract, "order_id": "N\x00UL", "amount": "1.00",
                    "sold_on": "2026-03-03"}).encode(),
        json.dumps({"kind": "sale", "contract_id": SQL[1], "order_id": "A", "amount": "1.00",
                    "sold_on": "2026-03-03"}).encode(),
        json.dumps({"kind": "sale", "contract_id": target.contract, "order_id": "N", "amount": "-1.00",
                    "sold_on": "2026-03-03"}).encode(),
    ]
    before = _written(target.server)
    body = b"\n".join(bad_lines) + b"\n" + good.encode() + b"\n"
    headers = {**target.headers, "Content-Type": "application/x-ndjson"}
    answer = target.api.client.post("/v1/sales/import", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["accepted"] == 1
    assert [r["line"] for r in result["rejected"]] == list(range(1, len(bad_lines) + 1))
    assert {r["code"] for r in result["rejected"][:2]} == {"line_too_long"}
    assert not any(leak.lower() in answer.text.lower() for leak in LEAKS)
    after = _written(target.server)
    assert after[0] == before[0] + 1  # only the good line's sale
    figure(f"R7: NDJSON import with {len(bad_lines)} bad lines (up to 10 MB) and one good: 1 recorded,"
           f" rejected codes {sorted({r['code'] for r in result['rejected']})}")
