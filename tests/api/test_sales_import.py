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


def test_a_deeply_nested_line_is_rejected_alone_and_the_import_goes_on(api):
    contract = signed_contract(api, approved_partner(api))
    sale = {"kind": "sale", "contract_id": contract, "order_id": "SO-1", "amount": "1.00", "sold_on": "2026-03-02"}
    deep_value = json.dumps({**sale, "order_id": "SO-X"}).replace('"SO-X"', "[" * 20_000 + "]" * 20_000).encode()
    response = send(api, ndjson(
        sale,
        b"[" * 30_000 + b"]" * 30_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        deep_value,
        b"[" * 60_000,  # not even closed
        {**sale, "order_id": "SO-2"},
    ))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 2
    assert [(r["line"], r["code"]) for r in result["rejected"]] == [
        (2, "malformed_json"), (3, "malformed_json"), (4, "malformed_json"), (5, "malformed_json")]
    assert "nested" in result["rejected"][0]["detail"]
    assert api.get(f"/v1/contracts/{contract}").json()["orders"] == 2


def test_rejections_are_counted_without_bound_but_kept_in_bounded_memory():
    import tracemalloc

    from api.routes.sales_import import MAX_LISTED_REJECTIONS, Rejection, Rejections

    rejections = Rejections()
    tracemalloc.start()
    try:
        # Out of line order, as a batch's refusals arrive after later lines failed to parse.
        for block in range(200):
            rejections.add(*(Rejection(line=block * 1000 + n + 2, code="malformed_json", detail="x" * 40)
                             for n in range(1000)))
            if block == 150:
                rejections.add(Rejection(line=1, code="not_found", detail="y"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rejections.total == 200_001
    listed = rejections.listed()
    assert len(listed) == MAX_LISTED_REJECTIONS
    assert [r.line for r in listed[:3]] == [1, 2, 3]
    # 200 000 kept rejections take about 100 MB; the bound keeps a few thousand.
    assert peak < 10 * 1024 * 1024, peak
