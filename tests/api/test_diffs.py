"""Diffs over HTTP (api.md, "Proof for auditors"): a record between two versions or times, and a
statement between two "as known at" times, each change with the events that made it. Figures
worked by hand: a flat 3 % contract, sales of 60 000.00 and 40 000.00, a return of 5 000.00."""

from __future__ import annotations

from tests.api.flows import AUDITOR, ERP, HR, REPORTING, approved_partner, post, problem, signed_contract
from tests.api.test_read_side import catch_up


def sell(api, contract: str, order: str, amount: str, request: str) -> None:
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": order, "amount": amount, "sold_on": "2026-03-02"},
         ERP, **{"X-Correlation-Id": request})


def give_back(api, contract: str, order: str, amount: str, request: str) -> None:
    post(api, f"/v1/contracts/{contract}/returns", {"order_id": order, "amount": amount,
                                                    "returned_on": "2026-03-20"}, ERP, **{"X-Correlation-Id": request})


def history(api, record: str) -> dict[int, dict]:
    items = api.get(f"/v1/contracts/{record}/history", limit=1000).json()["items"]
    return {item["version"]: item for item in items}


def as_named(item: dict) -> dict:
    """An event as a diff names it, from the history endpoint's item for it."""
    return {name: item[name] for name in ("position", "version", "type", "actor", "recorded_at", "correlation_id")}


def diff(api, path: str, who=AUDITOR, **params):
    return api.get(path, actor=who[0], roles=who[1], **params)


def contract_with_sales(api) -> tuple[str, str]:
    partner = approved_partner(api, "retailer")
    contract = signed_contract(api, partner)  # drafted, submitted, approved, signed: version 4
    sell(api, contract, "A", "60000.00", "erp-batch-1")  # v5
    sell(api, contract, "B", "40000.00", "erp-batch-2")  # v6
    give_back(api, contract, "A", "5000.00", "erp-batch-3")  # v7
    return partner, contract


def test_a_contract_between_two_versions_names_each_changed_field_and_the_events_that_moved_it(api):
    _, contract = contract_with_sales(api)
    events = history(api, contract)
    body = diff(api, f"/v1/contracts/{contract}/diff", **{"from": "4", "to": "7"}).json()
    assert (body["id"], body["from"], body["to"], body["events_between"]) == (
        contract, {"given": 4, "version": 4}, {"given": 7, "version": 7}, 3)
    assert [(c["field"], c["old"], c["new"], c["events_total"]) for c in body["changes"]] == [
        ("gross_sales", "0.00", "100000.00", 2),
        ("orders", 0, 2, 2),
        ("returns", "0.00", "5000.00", 1),
    ]
    by_field = {c["field"]: c["events"] for c in body["changes"]}
    assert by_field["gross_sales"] == by_field["orders"] == [as_named(events[5]), as_named(events[6])]
    assert by_field["returns"] == [as_named(events[7])]
    assert [e["correlation_id"] for e in by_field["gross_sales"]] == ["erp-batch-1", "erp-batch-2"]
    assert {e["actor"] for e in by_field["gross_sales"]} == {"erp"}

    # The same diff read by any role: a contract has no personal fields.
    assert diff(api, f"/v1/contracts/{contract}/diff", REPORTING, **{"from": "4", "to": "7"}).json() == body
    # Nothing between a version and itself.
    same = diff(api, f"/v1/contracts/{contract}/diff", **{"from": "6", "to": "6"}).json()
    assert (same["events_between"], same["changes"]) == (0, [])


def test_times_are_the_versions_recorded_by_then_and_before_the_record_nothing_was(api):
    _, contract = contract_with_sales(api)
    events = history(api, contract)
    # At the first sale's own time: version 5 (recorded at or before).
    body = diff(api, f"/v1/contracts/{contract}/diff", **{"from": events[5]["recorded_at"],
                                                          "to": "2099-01-01T00:00:00+08:00"}).json()
    assert (body["from"], body["to"]["version"], body["events_between"]) == (
        {"given": events[5]["recorded_at"], "version": 5}, 7, 2)
    assert [(c["field"], c["old"], c["new"], c["events"]) for c in body["changes"]] == [
        ("gross_sales", "60000.00", "100000.00", [as_named(events[6])]),
        ("orders", 1, 2, [as_named(events[6])]),
        ("returns", "0.00", "5000.00", [as_named(events[7])]),
    ]
    # Before the contract existed: version 0, every field it was drafted with is new.
    body = diff(api, f"/v1/contracts/{contract}/diff", **{"from": "2000-01-01T00:00:00Z", "to": "1"}).json()
    assert body["from"] == {"given": "2000-01-01T00:00:00Z", "version": 0}
    changes = {c["field"]: c for c in body["changes"]}
    assert (changes["status"]["old"], changes["status"]["new"]) == (None, "draft")
    assert changes["commission"]["new"] == {"type": "flat", "rate": "0.03"}
    assert changes["status"]["events"] == [as_named(events[1])]


def test_moments_that_read_two_ways_or_as_no_single_moment_are_refused(api):
    _, contract = contract_with_sales(api)
    path = f"/v1/contracts/{contract}/diff"
    for ambiguous in ("2026-03-01", "2026-03-01T08:00:00", "20260301"):
        body = problem(diff(api, path, **{"from": ambiguous, "to": "7"}), 422, "ambiguous_moment")
        assert ambiguous in body["detail"]
    # A '+' of an offset sent unencoded arrives as a space: said so, not guessed.
    raw = api.client.get(f"{path}?from=2026-03-01T08:00:00+08:00&to=7", headers=api.headers(*AUDITOR[:1], "auditor"))
    assert "%2B" in problem(raw, 422, "ambiguous_moment")["detail"]
    problem(diff(api, path, **{"from": "yesterday", "to": "7"}), 422, "validation_error")
    problem(diff(api, path, **{"from": "7", "to": "4"}), 422, "validation_error")
    problem(diff(api, path, **{"from": "4", "to": "8"}), 404, "not_found")
    problem(diff(api, path, **{"to": "7"}), 422, "validation_error")
    # A partner is no contract; an unknown id is nothing.
    partner = approved_partner(api, "retailer")
    problem(diff(api, f"/v1/contracts/{partner}/diff", **{"from": "1", "to": "2"}), 404, "not_found")
    problem(diff(api, "/v1/targets/00000000-0000-0000-0000-00000000000a/diff", **{"from": "1", "to": "2"}), 404,
            "not_found")


def test_an_employees_personal_fields_follow_the_record_reads_rules_in_a_diff(api):
    hired = post(api, "/v1/employees", {"name": "王芳", "role": "sales_rep", "hired_on": "2020-01-06",
                                        "national_id": "110101199003071234", "bank_card": "6222020200112233",
                                        "login": "wang.fang"}, HR, 201).json()
    employee = hired["id"]
    post(api, f"/v1/employees/{employee}/promote", {"role": "specialist", "on": "2020-06-01"}, HR)  # v2
    path = f"/v1/employees/{employee}/diff"

    for_hr = diff(api, path, HR, **{"from": "2000-01-01T00:00:00Z", "to": "2"}).json()
    changes = {c["field"]: (c["old"], c["new"]) for c in for_hr["changes"]}
    assert changes["name"] == (None, "王芳")
    assert changes["national_id"] == (None, "110101199003071234")
    assert changes["role"] == (None, "specialist")

    # Every other role: the fields are absent, as from GET /v1/employees/{id}; nothing sealed leaks.
    response = diff(api, path, AUDITOR, **{"from": "2000-01-01T00:00:00Z", "to": "2"})
    assert {"name", "national_id", "bank_card"}.isdisjoint(c["field"] for c in response.json()["changes"])
    assert "王芳" not in response.text and "pii:" not in response.text and "6222" not in response.text

    post(api, f"/v1/employees/{employee}/separation", {"on": "2020-12-31", "reason": "resignation"}, HR)  # v3
    post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR)  # v4
    # Once erased, nobody: hr's diff of the hire no longer shows the values it once did.
    response = diff(api, path, HR, **{"from": "0", "to": "4"})
    fields = {c["field"]: (c["old"], c["new"]) for c in response.json()["changes"]}
    assert {"name", "national_id", "bank_card"}.isdisjoint(fields)
    assert fields["personal_data_erased"] == (None, True)
    assert "王芳" not in response.text and "pii:" not in response.text and "6222" not in response.text


def test_a_statement_between_two_known_at_times_lists_the_lines_that_appeared_with_their_events(api):
    partner, contract = contract_with_sales(api)
    events = history(api, contract)
    catch_up(api)
    path = f"/v1/commissions/statements/{partner}/2026-03/diff"
    first_sale_known = events[5]["recorded_at"]
    response = diff(api, path, REPORTING, **{"from": first_sale_known, "to": "2099-01-01T00:00:00Z"})
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Projection-Position"]) >= events[7]["position"]
    body = response.json()
    assert (body["partner_id"], body["period"], body["from"]) == (partner, "2026-03", first_sale_known)
    # Before: the first sale only, 60 000.00 at 3 % = 1 800.00. After: 100 000.00 sold, 5 000.00
    # returned; 1 800.00 + 1 200.00 − 150.00 = 2 850.00.
    assert [(c["figure"], c["old"], c["new"]) for c in body["changed"]] == [
        ("gross_sales", "60000.00", "100000.00"),
        ("returns", "0.00", "5000.00"),
        ("net_sales", "60000.00", "95000.00"),
        ("commission", "1800.00", "2850.00"),
        ("total_due", "1800.00", "2850.00"),
    ]
    assert (body["before"]["total_due"], body["after"]["total_due"]) == ("1800.00", "2850.00")
    assert [(line["kind"], line["order_id"], line["amount"], line["commission"]) for line in body["lines"]] == [
        ("sale", "B", "40000.00", "1200.00"),
        ("return", "A", "-5000.00", "-150.00"),
    ]
    assert [line["event"] for line in body["lines"]] == [
        {"position": events[v]["position"], "type": events[v]["type"], "actor": "erp", "stream_id": contract,
         "recorded_at": events[v]["recorded_at"], "correlation_id": f"erp-batch-{v - 4}"} for v in (6, 7)]

    # From before anything to the first sale: that line alone; between equal times, nothing.
    early = diff(api, path, **{"from": "2000-01-01T00:00:00Z", "to": first_sale_known}).json()
    assert [line["order_id"] for line in early["lines"]] == ["A"]
    assert early["before"]["total_due"] == "0.00"
    same = diff(api, path, **{"from": first_sale_known, "to": first_sale_known}).json()
    assert (same["lines"], same["changed"]) == ([], [])
    # `to` defaults to now.
    assert diff(api, path, **{"from": first_sale_known}).json()["lines"] == body["lines"]

    problem(diff(api, path, **{"from": "2026-03-01T00:00:00"}), 422, "validation_error")
    problem(diff(api, path, **{"from": "2099-01-01T00:00:00Z", "to": first_sale_known}), 422, "validation_error")
    problem(diff(api, f"/v1/commissions/statements/{contract}/2026-03/diff", **{"from": first_sale_known}), 404,
            "not_found")
