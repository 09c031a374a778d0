"""POST /v1/sales/import: NDJSON streamed, each line its own command and its own outcome."""

from __future__ import annotations

import json

from tests.api.flows import ERP, approved_partner, problem, signed_contract


def ndjson(*lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def send(api, body, who=ERP):
    return api.client.post("/v1/sales/import", content=body, headers={
        **api.headers(who[0], *who[1]), "Content-Type": "application/x-ndjson"})


def test_good_lines_land_and_every_bad_line_is_listed_with_its_code(api):
    contract = signed_contract(api, approved_partner(api, "enterprise_agent"), territory="Zhejiang")
    sale = {"kind": "sale", "contract_id": contract, "order_id": "SO-1", "amount": "100.00", "sold_on": "2026-03-02",
            "region": "Zhejiang"}
    response = send(api, ndjson(
        sale,
        {**sale, "order_id": "SO-2", "region": "Jiangsu"},
        {**sale, "order_id": "SO-3", "amount": 100.5},
        b"{not json",
        {"kind": "return", "contract_id": contract, "order_id": "SO-1", "amount": "40.00", "returned_on": "2026-03-04"},
        sale,
        b"",
        {**sale, "order_id": "SO-4", "contract_id": "00000000-0000-0000-0000-000000000004"},
    ))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 2
    assert [(r["line"], r["code"]) for r in result["rejected"]] == [
        (2, "outside_territory"), (3, "validation_error"), (4, "malformed_json"), (6, "duplicate_order"),
        (8, "not_found"),
    ]
    state = api.get(f"/v1/contracts/{contract}").json()
    assert (state["orders"], state["gross_sales"], state["returns"]) == (1, "100.00", "40.00")


def test_a_line_over_64_kib_is_rejected_alone(api):
    contract = signed_contract(api, approved_partner(api))
    sale = {"kind": "sale", "contract_id": contract, "order_id": "SO-1", "amount": "1.00", "sold_on": "2026-03-02"}
    huge = {**sale, "order_id": "SO-2", "product": "x" * (70 * 1024)}
    result = send(api, ndjson(huge, sale)).json()
    assert result["accepted"] == 1
    assert [(r["line"], r["code"]) for r in result["rejected"]] == [(1, "line_too_long")]


def test_many_lines_stream_through_one_request(api):
    contract = signed_contract(api, approved_partner(api))

    def body():
        for n in range(1000):
            yield ndjson({"kind": "sale", "contract_id": contract, "order_id": f"SO-{n}", "amount": "1.00",
                          "sold_on": "2026-03-02"})

    result = api.client.post("/v1/sales/import", content=body(), headers={
        **api.headers("erp", "integration"), "Content-Type": "application/x-ndjson"}).json()
    assert (result["accepted"], result["rejected"]) == (1000, [])
    assert api.get(f"/v1/contracts/{contract}").json()["gross_sales"] == "1000.00"


def test_only_integration_imports(api):
    problem(send(api, b"", ("spec-1", ("channel_specialist",))), 403, "forbidden")
