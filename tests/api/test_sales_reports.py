"""GET /v1/reports/sales, /key-terminals and /commission-efficiency over HTTP, with figures worked
by hand from the sales below (docs/reports.md).

The book, all in 2026 (CNY; employees li.na and wang.wei):

- East, enterprise agent in 华东 at 5 %: A-1 10 000 router li.na on 01-10 (1 000 returned on 02-05);
  A-2 5 000 switch wang.wei on 02-03; A-3 1 500 router li.na on 04-01 (all returned on 04-30).
- Corner, retailer at 3 %: B-1 2 000 switch 华北 wang.wei on 01-15 (500 returned on 03-02);
  B-2 3 000 router li.na on 02-20, naming no region.
- Broker, broker at 1 %: deal D-1 4 000 on 03-01.
- Big, distributor at 2 %: X-1 20 000 router 华南 on 03-10, crediting no employee.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from channel_domain.company_time import recorded_month
from tests.api.conftest import Api
from tests.api.flows import (
    AUDITOR,
    ERP,
    FINANCE,
    HR,
    MANAGER,
    REPORTING,
    amend,
    approved_partner,
    post,
    problem,
    signed_contract,
)
from tests.api.test_read_side import catch_up

READERS = (REPORTING, MANAGER, FINANCE, AUDITOR)
PRODUCTS = ["router", "switch"]


def book(api: Api) -> dict[str, str]:
    """The book above; returns the ids by name."""
    li = post(api, "/v1/employees", {"name": "Li Na", "role": "sales_rep", "hired_on": "2025-06-01",
                                     "login": "li.na"}, HR, 201).json()["id"]
    wang = post(api, "/v1/employees", {"name": "Wang Wei", "role": "sales_rep", "hired_on": "2025-06-01",
                                       "login": "wang.wei"}, HR, 201).json()["id"]
    east = approved_partner(api, "enterprise_agent", name="East")
    corner = approved_partner(api, "retailer", name="Corner")
    broker = approved_partner(api, "broker", name="Broker", commission_rate="0.01")
    big = approved_partner(api, "distributor", name="Big")
    east_c = signed_contract(api, east, territory="华东", products=PRODUCTS,
                             commission={"type": "flat", "rate": "0.05"})
    corner_c = signed_contract(api, corner, products=PRODUCTS, commission={"type": "flat", "rate": "0.03"})
    big_c = signed_contract(api, big, products=PRODUCTS, commission={"type": "flat", "rate": "0.02"})

    def sale(contract: str, order: str, amount: str, day: str, product: str, region: str | None, employee):
        body = {"order_id": order, "amount": amount, "sold_on": day, "product": product}
        body.update({"region": region} if region else {})
        body.update({"employee_id": employee} if employee else {})
        post(api, f"/v1/contracts/{contract}/sales", body, ERP)

    def give_back(contract: str, order: str, amount: str, day: str) -> None:
        post(api, f"/v1/contracts/{contract}/returns", {"order_id": order, "amount": amount, "returned_on": day}, ERP)

    sale(east_c, "A-1", "10000.00", "2026-01-10", "router", "华东", li)
    sale(corner_c, "B-1", "2000.00", "2026-01-15", "switch", "华北", wang)
    sale(east_c, "A-2", "5000.00", "2026-02-03", "switch", "华东", wang)
    give_back(east_c, "A-1", "1000.00", "2026-02-05")
    sale(corner_c, "B-2", "3000.00", "2026-02-20", "router", None, li)
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-1", "amount": "4000.00", "closed_on": "2026-03-01"}, ERP)
    give_back(corner_c, "B-1", "500.00", "2026-03-02")
    sale(big_c, "X-1", "20000.00", "2026-03-10", "router", "华南", None)
    sale(east_c, "A-3", "1500.00", "2026-04-01", "router", "华东", li)
    give_back(east_c, "A-3", "1500.00", "2026-04-30")
    catch_up(api)
    return {"li": li, "wang": wang, "east": east, "corner": corner, "broker": broker, "big": big,
            "east_c": east_c, "corner_c": corner_c, "big_c": big_c}


def report(api: Api, path: str, who=REPORTING, **params) -> dict:
    response = api.get(path, actor=who[0], roles=who[1], **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["x-projection-position"]) > 0
    return response.json()


def as_csv(api: Api, path: str, **params) -> list[dict[str, str]]:
    response = api.client.get(path, params=params, headers=api.headers(REPORTING[0], *REPORTING[1], Accept="text/csv"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert int(response.headers["x-projection-position"]) > 0
    return list(csv.DictReader(io.StringIO(response.text)))


def cell(value) -> str:
    """A JSON value as its CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def same_in_csv(api: Api, path: str, items: list[dict], **params) -> None:
    rows = as_csv(api, path, **params)
    assert rows == [{column: cell(value) for column, value in item.items()} for item in items]


def figures(items: list[dict], *columns: str) -> list[tuple]:
    return [tuple(item[c] for c in columns) for item in items]


def test_sales_of_a_quarter_by_partner_region_product_employee_and_month(api):
    ids = book(api)
    q1 = {"period": "2026-Q1"}
    by_partner = report(api, "/v1/reports/sales", group_by="partner", **q1)
    # East 10 000 + 5 000, less the 1 000 returned in February; Corner 2 000 + 3 000 less 500;
    # the broker's deal is its sale; Big one sale.
    expected = {
        ids["east"]: ("East", "enterprise_agent", "15000.00", "1000.00", "14000.00", 2),
        ids["corner"]: ("Corner", "retailer", "5000.00", "500.00", "4500.00", 2),
        ids["broker"]: ("Broker", "broker", "4000.00", "0.00", "4000.00", 1),
        ids["big"]: ("Big", "distributor", "20000.00", "0.00", "20000.00", 1),
    }
    assert figures(by_partner["items"], "key", "name", "kind", "gross", "returns", "net", "orders") == [
        (key, *expected[key]) for key in sorted(expected)]
    assert by_partner["total"] == {"gross": "44000.00", "returns": "1500.00", "net": "42500.00", "orders": 6}
    assert (by_partner["period"], by_partner["group_by"]) == ("2026-Q1", "partner")
    same_in_csv(api, "/v1/reports/sales", by_partner["items"], group_by="partner", **q1)

    by_region = report(api, "/v1/reports/sales", group_by="region", **q1)
    # A return counts in its sale's region (A-1 华东, B-1 华北); B-2 and the deal named none.
    assert figures(by_region["items"], "key", "gross", "returns", "net", "orders") == [
        ("华东", "15000.00", "1000.00", "14000.00", 2),  # code-point order: 东 U+4E1C, 北 U+5317, 南 U+5357
        ("华北", "2000.00", "500.00", "1500.00", 1),
        ("华南", "20000.00", "0.00", "20000.00", 1),
        (None, "7000.00", "0.00", "7000.00", 2),  # none last
    ]
    same_in_csv(api, "/v1/reports/sales", by_region["items"], group_by="region", **q1)

    by_product = report(api, "/v1/reports/sales", group_by="product", **q1)
    assert figures(by_product["items"], "key", "gross", "returns", "net", "orders") == [
        ("router", "33000.00", "1000.00", "32000.00", 3),  # A-1, B-2, X-1; A-1's return
        ("switch", "7000.00", "500.00", "6500.00", 2),  # B-1, A-2; B-1's return
        (None, "4000.00", "0.00", "4000.00", 1),  # the deal
    ]
    same_in_csv(api, "/v1/reports/sales", by_product["items"], group_by="product", **q1)

    by_employee = report(api, "/v1/reports/sales", group_by="employee", **q1)
    people = {ids["li"]: ("li.na", "13000.00", "1000.00", "12000.00", 2),  # A-1, B-2; A-1's return
              ids["wang"]: ("wang.wei", "7000.00", "500.00", "6500.00", 2)}  # B-1, A-2; B-1's return
    assert figures(by_employee["items"], "key", "name", "gross", "returns", "net", "orders") == [
        *[(key, *people[key]) for key in sorted(people)], (None, None, "24000.00", "0.00", "24000.00", 2)]
    assert "Li Na" not in str(by_employee)  # a name is personal data, for hr only
    same_in_csv(api, "/v1/reports/sales", by_employee["items"], group_by="employee", **q1)

    by_month = report(api, "/v1/reports/sales", group_by="month", **q1)
    assert figures(by_month["items"], "key", "gross", "returns", "net", "orders") == [
        ("2026-01", "12000.00", "0.00", "12000.00", 2),
        ("2026-02", "8000.00", "1000.00", "7000.00", 2),
        ("2026-03", "24000.00", "500.00", "23500.00", 2),
    ]
    same_in_csv(api, "/v1/reports/sales", by_month["items"], group_by="month", format="csv", **q1)
    for grouped in (by_partner, by_region, by_product, by_employee, by_month):  # every grouping adds up the same
        assert sum(Decimal(item["net"]) for item in grouped["items"]) == Decimal("42500.00")
        assert sum(item["orders"] for item in grouped["items"]) == 6


def test_sales_of_a_month_and_of_a_year(api):
    ids = book(api)
    february = report(api, "/v1/reports/sales", period="2026-02", group_by="partner")
    assert figures(february["items"], "key", "gross", "returns", "net", "orders") == sorted([
        (ids["east"], "5000.00", "1000.00", "4000.00", 1), (ids["corner"], "3000.00", "0.00", "3000.00", 1)])
    april = report(api, "/v1/reports/sales", period="2026-04", group_by="region")
    # A-3 sold and wholly returned in April: a gross sale, a return, nothing net; one order.
    assert figures(april["items"], "key", "gross", "returns", "net", "orders") == [
        ("华东", "1500.00", "1500.00", "0.00", 1)]
    year = report(api, "/v1/reports/sales", period="2026", group_by="month")
    assert len(year["items"]) == 12  # every month of the period, those without sales as zeros
    assert figures(year["items"][3:5], "key", "gross", "returns", "net", "orders") == [
        ("2026-04", "1500.00", "1500.00", "0.00", 1), ("2026-05", "0.00", "0.00", "0.00", 0)]
    assert year["total"] == {"gross": "45500.00", "returns": "3000.00", "net": "42500.00", "orders": 7}
    assert report(api, "/v1/reports/sales", period="2025", group_by="partner")["items"] == []


def test_every_line_of_a_period_paged_in_json_and_whole_in_csv(api):
    ids = book(api)
    pages, cursor = [], None
    while True:
        params = {"period": "2026-Q1", "group_by": "order", "limit": 3} | ({"cursor": cursor} if cursor else {})
        page = report(api, "/v1/reports/sales", **params)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [3, 3, 2]
    lines = [line for page in pages for line in page]
    # In date order; returns carry their sale's product, region and employee.
    assert figures(lines, "date", "kind", "partner_id", "order_id", "product", "region", "employee_id", "gross",
                   "returns", "net") == [
        ("2026-01-10", "sale", ids["east"], "A-1", "router", "华东", ids["li"], "10000.00", "0.00", "10000.00"),
        ("2026-01-15", "sale", ids["corner"], "B-1", "switch", "华北", ids["wang"], "2000.00", "0.00", "2000.00"),
        ("2026-02-03", "sale", ids["east"], "A-2", "switch", "华东", ids["wang"], "5000.00", "0.00", "5000.00"),
        ("2026-02-05", "return", ids["east"], "A-1", "router", "华东", ids["li"], "0.00", "1000.00", "-1000.00"),
        ("2026-02-20", "sale", ids["corner"], "B-2", "router", None, ids["li"], "3000.00", "0.00", "3000.00"),
        ("2026-03-01", "deal", ids["broker"], "D-1", None, None, None, "4000.00", "0.00", "4000.00"),
        ("2026-03-02", "return", ids["corner"], "B-1", "switch", "华北", ids["wang"], "0.00", "500.00", "-500.00"),
        ("2026-03-10", "sale", ids["big"], "X-1", "router", "华南", None, "20000.00", "0.00", "20000.00"),
    ]
    assert [(line["partner_name"], line["partner_kind"], line["contract_id"]) for line in lines[4:6]] == [
        ("Corner", "retailer", ids["corner_c"]), ("Broker", "broker", None)]
    history = api.get(f"/v1/contracts/{ids['east_c']}/history").json()["items"]
    assert lines[0]["position"] == next(e["position"] for e in history if e["type"] == "Contract.SaleRecorded")
    same_in_csv(api, "/v1/reports/sales", lines, period="2026-Q1", group_by="order")  # every row, one answer
    same_in_csv(api, "/v1/reports/sales", lines[3:6], period="2026-Q1", group_by="order", limit=3,
                cursor=f"{lines[2]['date']}.{lines[2]['position']}")  # a page, when asked for one


def test_key_terminals_are_the_fewest_top_partners_reaching_80_percent(api):
    ids = book(api)
    body = report(api, "/v1/reports/key-terminals", period="2026-Q1")
    # Net 42 500: Big 20 000 (47.06 %), East 14 000 — together 34 000, exactly 80 %: both key;
    # Corner 4 500 and the broker's 4 000 are not.
    assert figures(body["items"], "rank", "partner_id", "name", "kind", "net", "share", "cumulative_share", "key") == [
        (1, ids["big"], "Big", "distributor", "20000.00", "0.4706", "0.4706", True),  # 0.470588…
        (2, ids["east"], "East", "enterprise_agent", "14000.00", "0.3294", "0.8000", True),  # 0.329411…
        (3, ids["corner"], "Corner", "retailer", "4500.00", "0.1059", "0.9059", False),  # 0.105882…, 0.905882…
        (4, ids["broker"], "Broker", "broker", "4000.00", "0.0941", "1.0000", False),  # 0.094117…
    ]
    assert (body["total_net"], body["partners"], body["key_partners"]) == ("42500.00", 4, 2)
    same_in_csv(api, "/v1/reports/key-terminals", body["items"], period="2026-Q1")
    march = report(api, "/v1/reports/key-terminals", period="2026-03")["items"]
    # March: Big 20 000 of 23 500 (85.1 %) is key alone; the broker 4 000; Corner −500 (a return only).
    assert figures(march, "partner_id", "net", "share", "key") == [
        (ids["big"], "20000.00", "0.8511", True), (ids["broker"], "4000.00", "0.1702", False),
        (ids["corner"], "-500.00", "-0.0213", False)]
    assert report(api, "/v1/reports/key-terminals", period="2026-05") == {
        "items": [], "period": "2026-05", "total_net": "0.00", "partners": 0, "key_partners": 0}


def test_commission_efficiency_per_kind_against_the_statements(api):
    ids = book(api)
    body = report(api, "/v1/reports/commission-efficiency", period="2026-Q1")
    # Commission of the quarter's statements: East 500 + 250 − 50 (5 % of the 1 000 returned);
    # Corner 60 + 90 − 15; the broker 1 % of 4 000; Big 2 % of 20 000.
    assert figures(body["items"], "kind", "partners", "net_sales", "sales_commission", "adjustments", "commission",
                   "efficiency") == [
        ("enterprise_agent", 1, "14000.00", "700.00", "0.00", "700.00", "0.0500"),
        ("sales_agent", 0, "0.00", "0.00", "0.00", "0.00", None),
        ("consignee", 0, "0.00", "0.00", "0.00", "0.00", None),
        ("broker", 1, "4000.00", "40.00", "0.00", "40.00", "0.0100"),
        ("distributor", 1, "20000.00", "400.00", "0.00", "400.00", "0.0200"),
        ("retailer", 1, "4500.00", "135.00", "0.00", "135.00", "0.0300"),
        ("direct_store", 0, "0.00", "0.00", "0.00", "0.00", None),
    ]
    assert body["total"] == {"partners": 4, "net_sales": "42500.00", "sales_commission": "1275.00",
                             "adjustments": "0.00", "commission": "1275.00", "efficiency": "0.0300"}
    same_in_csv(api, "/v1/reports/commission-efficiency", body["items"], period="2026-Q1")
    # The statements of the quarter's months say the same.
    for partner, kind in ((ids["east"], "enterprise_agent"), (ids["corner"], "retailer")):
        months = [report(api, f"/v1/commissions/statements/{partner}/2026-0{m}") for m in (1, 2, 3)]
        row = next(item for item in body["items"] if item["kind"] == kind)
        assert sum(Decimal(s["net_sales"]) for s in months) == Decimal(row["net_sales"])
        assert sum(Decimal(s["commission"]) + Decimal(s["adjustments"]) for s in months) == Decimal(row["commission"])


def test_an_adjustment_counts_in_the_month_its_statement_books_it(api):
    partner = approved_partner(api, "retailer", name="Late")
    contract = signed_contract(api, partner, commission={"type": "flat", "rate": "0.05"})
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "F", "amount": "20000.00", "sold_on": "2026-02-10"},
         ERP)
    amend(api, contract, {"effective_on": "2026-02-01", "commission": {"type": "flat", "rate": "0.06"},
                          "reason": "new scale"})
    amended = api.get(f"/v1/contracts/{contract}/history").json()["items"][-1]
    booked_in = recorded_month(datetime.fromisoformat(amended["recorded_at"]))  # today's month, Beijing time
    catch_up(api)
    row = next(item for item in report(api, "/v1/reports/commission-efficiency", period=booked_in)["items"]
               if item["kind"] == "retailer")
    # 20 000 × 1 % more, booked when recorded; the sale's own 1 000 in February.
    if booked_in == "2026-02":
        assert figures([row], "net_sales", "sales_commission", "adjustments", "commission", "efficiency") == [
            ("20000.00", "1000.00", "200.00", "1200.00", "0.0600")]
    else:
        assert figures([row], "net_sales", "sales_commission", "adjustments", "commission", "efficiency") == [
            ("0.00", "0.00", "200.00", "200.00", None)]  # no sales that month: no ratio
    february = report(api, "/v1/reports/commission-efficiency", period="2026-02")["items"]
    assert [(r["net_sales"], r["commission"]) for r in february if r["kind"] == "retailer"] == [
        ("20000.00", "1200.00" if booked_in == "2026-02" else "1000.00")]


def test_bad_parameters_are_refused_with_nothing_written(api):
    book(api)
    with psycopg.connect(api.database_url) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    for path, params in (
        ("/v1/reports/sales", {"period": "2026-13", "group_by": "partner"}),
        ("/v1/reports/sales", {"period": "2026-Q5", "group_by": "partner"}),
        ("/v1/reports/sales", {"period": "26", "group_by": "partner"}),
        ("/v1/reports/sales", {"group_by": "partner"}),
        ("/v1/reports/sales", {"period": "2026-03"}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "colour"}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "partner", "limit": 5}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "order", "limit": 1001}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "order", "limit": 0}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "order", "cursor": "abc"}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "order", "cursor": "2026-02-30.5"}),
        ("/v1/reports/sales", {"period": "2026-03", "group_by": "region", "format": "xml"}),
        ("/v1/reports/key-terminals", {"period": "2026-3"}),
        ("/v1/reports/key-terminals", {}),
        ("/v1/reports/commission-efficiency", {"period": "Q1-2026"}),
    ):
        problem(api.get(path, actor=REPORTING[0], roles=REPORTING[1], **params), 422, "validation_error")
    with psycopg.connect(api.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == events


def test_only_the_reporting_roles_read_the_reports(api):
    book(api)
    paths = [("/v1/reports/sales", {"period": "2026-Q1", "group_by": "partner"}),
             ("/v1/reports/sales", {"period": "2026-Q1", "group_by": "order"}),
             ("/v1/reports/key-terminals", {"period": "2026-Q1"}),
             ("/v1/reports/commission-efficiency", {"period": "2026-Q1"})]
    for path, params in paths:
        for who in READERS:
            assert api.get(path, actor=who[0], roles=who[1], **params).status_code == 200, (path, who)
        for role in ("integration", "hr", "channel_specialist", "general_manager"):
            problem(api.get(path, actor=f"x-{role}", roles=(role,), **params), 403, "forbidden")
            problem(api.client.get(path, params={**params, "format": "csv"},
                                   headers=api.headers(f"x-{role}", role)), 403, "forbidden")
        problem(api.client.get(path, params=params), 401, "unauthenticated")


def test_min_position_reads_your_own_sale(database_url):
    with TestClient(create_app(database_url, run_projections=True)) as client:
        api = Api(client, database_url)
        partner = approved_partner(api, "retailer", name="Quick")
        contract = signed_contract(api, partner)
        sold = post(api, f"/v1/contracts/{contract}/sales",
                    {"order_id": "Q-1", "amount": "123.45", "sold_on": "2026-06-01"}, ERP).json()
        for path, params in (("/v1/reports/sales", {"group_by": "partner"}), ("/v1/reports/key-terminals", {}),
                             ("/v1/reports/commission-efficiency", {})):
            answer = api.get(path, actor=REPORTING[0], roles=REPORTING[1], period="2026-06",
                             min_position=sold["position"], wait_s=10, **params)
            assert answer.status_code == 200, answer.text
            assert int(answer.headers["x-projection-position"]) >= sold["position"]
            assert "123.45" in answer.text
    with TestClient(create_app(database_url)) as client:  # nothing projects here
        api = Api(client, database_url)
        later = post(api, f"/v1/contracts/{contract}/sales",
                     {"order_id": "Q-2", "amount": "1.00", "sold_on": "2026-06-02"}, ERP).json()
        lagging = api.get("/v1/reports/sales", actor=REPORTING[0], roles=REPORTING[1], period="2026-06",
                          group_by="order", format="csv", min_position=later["position"], wait_s=0.1)
        problem(lagging, 503, "projection_lagging")


def answers(api: Api) -> list[tuple[str, str]]:
    """Every report of the book, JSON and CSV, as text."""
    found = []
    for period in ("2026-01", "2026-Q1", "2026"):
        for group_by in ("partner", "region", "product", "employee", "month", "order"):
            for fmt in ("json", "csv"):
                found.append((f"{period} {group_by} {fmt}", api.client.get(
                    "/v1/reports/sales", params={"period": period, "group_by": group_by, "format": fmt},
                    headers=api.headers(REPORTING[0], *REPORTING[1])).text))
        for path in ("/v1/reports/key-terminals", "/v1/reports/commission-efficiency"):
            for fmt in ("json", "csv"):
                found.append((f"{period} {path} {fmt}", api.client.get(
                    path, params={"period": period, "format": fmt}, headers=api.headers(REPORTING[0], *REPORTING[1])).text))
    return found


def test_a_rebuild_gives_the_same_answers(api, monkeypatch):
    book(api)
    before = answers(api)
    assert "华东" in dict(before)["2026-Q1 region csv"]
    with psycopg.connect(api.database_url, autocommit=True) as conn:  # a read model gone wrong
        conn.execute("DELETE FROM sales_report_months WHERE dimension = 'region'")
        conn.execute("DELETE FROM sales_report_lines WHERE kind = 'return'")
    assert answers(api) != before
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", api.database_url)
    result = CliRunner().invoke(cli, ["rebuild", "sales_reports"])
    assert result.exit_code == 0, result.output
    assert "switched sales_reports" in result.output
    assert answers(api) == before
