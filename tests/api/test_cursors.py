"""Every cursor, `after` and `min_position` a client can send: a bad one is a 422, never a 500.

The endpoints are found in /openapi.json, so a new paginated read is covered the day it lands.
"""

from __future__ import annotations

import re
import uuid

import psycopg
from api.tokens import ROLES
from tests.api.flows import approved_partner

PAGING = {"cursor", "after", "min_position"}
BAD = [
    "99999999999999999999",  # past a PostgreSQL bigint
    "9223372036854775808",  # 2**63
    "-1",
    "abc",
    "\u00b2",  # a digit to str.isdigit, not to int()
    "\u0661\u0662",  # Arabic-Indic digits
    "MTIzNDU2Nzg5MA==",  # base64
    "1e3",
    "0x10",
]


def _paged_operations(api) -> list[tuple[str, str]]:
    operations = []
    for path, item in api.client.get("/openapi.json").json()["paths"].items():
        get = item.get("get")
        if get is None:
            continue
        for parameter in get.get("parameters", []):
            if parameter["in"] == "query" and parameter["name"] in PAGING:
                operations.append((path, parameter["name"]))
    return operations


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]*(period)[^}]*\}", "2026-03", re.sub(r"\{[^}]*_?id\}", str(uuid.uuid4()), path))


def _events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_the_paging_parameters_are_found(api):
    names = {name for _, name in _paged_operations(api)}
    assert names == PAGING
    assert len(_paged_operations(api)) >= 10


def test_a_bad_cursor_after_or_min_position_is_a_validation_error(api):
    approved_partner(api)
    written = _events(api.database_url)
    headers = api.headers("everyone", *sorted(ROLES))
    for path, name in _paged_operations(api):
        for value in BAD:
            response = api.client.get(_fill(path), params={name: value}, headers=headers)
            assert response.status_code == 422, (path, name, value, response.status_code, response.text)
            assert response.json()["code"] == "validation_error", (path, name, value)
    assert _events(api.database_url) == written


def test_a_cursor_given_back_still_pages(api):
    partner = approved_partner(api)
    first = api.get(f"/v1/partners/{partner}/history", limit=1).json()
    assert first["next_cursor"] == "1"
    second = api.get(f"/v1/partners/{partner}/history", limit=1, cursor=first["next_cursor"]).json()
    assert [item["version"] for item in second["items"]] == [2]
    api.catch_up()
    events = api.get("/v1/audit/events", limit=1).json()
    assert events["next_cursor"] is not None
    assert api.get("/v1/audit/events", limit=1, cursor=events["next_cursor"]).status_code == 200
    assert api.get("/v1/audit/findings", cursor="999999999999999999").json() == {"items": [], "next_cursor": None}
