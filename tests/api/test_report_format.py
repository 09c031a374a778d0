"""The one way every report answers: JSON or CSV, streamed, money in plain notation."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from api.reports import ReportFormat, report_answer

ROWS = [{"key": "华东", "net": Decimal("0.0000001"), "on": date(2026, 3, 1), "missing": None},
        {"key": "a,\"b\"", "net": Decimal("-12.50"), "on": None, "missing": None}]


def _client(rows_made: list[int]) -> TestClient:
    app = FastAPI()

    @app.get("/report")
    def report(request: Request, report_format: ReportFormat = None):  # type: ignore[no-untyped-def]
        def rows():
            for row in ROWS * 600:  # more than one chunk
                rows_made.append(1)
                yield row
        return report_answer(request, report_format, ["key", "net", "on", "missing"], rows(),
                             name="sales", position=7, extra={"next_cursor": None})

    return TestClient(app)


def test_json_by_default_with_money_as_strings_and_the_extra_fields() -> None:
    answer = _client([]).get("/report")
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-projection-position"] == "7"
    body = answer.json()
    assert body["next_cursor"] is None
    assert len(body["items"]) == 1200
    assert body["items"][0] == {"key": "华东", "net": "1E-7", "on": "2026-03-01", "missing": None}
    assert body["items"][1]["net"] == "-12.50"


def test_csv_on_accept_or_format_parses_back_to_the_same_rows() -> None:
    client = _client([])
    for answer in (client.get("/report", headers={"Accept": "text/csv"}), client.get("/report?format=csv"),
                   client.get("/report?format=csv", headers={"Accept": "application/json"})):
        assert answer.headers["content-type"].startswith("text/csv")
        assert 'filename="sales.csv"' in answer.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert len(rows) == 1200
        assert rows[0] == {"key": "华东", "net": "0.0000001", "on": "2026-03-01", "missing": ""}
        assert rows[1] == {"key": 'a,"b"', "net": "-12.50", "on": "", "missing": ""}


def test_format_json_wins_over_accept_and_an_unknown_format_is_refused() -> None:
    client = _client([])
    assert client.get("/report?format=json", headers={"Accept": "text/csv"}).headers["content-type"] == \
        "application/json"
    assert client.get("/report?format=xml").status_code == 422


def test_rows_are_read_while_the_answer_streams() -> None:
    made: list[int] = []
    with _client(made).stream("GET", "/report?format=csv") as answer:
        first = next(answer.iter_raw())
        assert first.startswith(b"key,net,on,missing\r\n")
        assert len(made) < 1200
    assert json.loads(_client([]).get("/report").text)["items"][-1]["key"] == 'a,"b"'


def test_free_text_that_a_spreadsheet_would_run_as_a_formula_stays_text_and_numbers_stay_numbers() -> None:
    app = FastAPI()
    texts = ['=HYPERLINK("http://x","pay")', "+86 21", "-lead", "@SUM(A1)", "\tx", "plain -dash"]

    @app.get("/report")
    def report(request: Request, report_format: ReportFormat = None):  # type: ignore[no-untyped-def]
        rows = [{"name": text, "net": Decimal("-12.50"), "as_text": "-12.50"} for text in texts]
        return report_answer(request, report_format, ["name", "net", "as_text"], iter(rows), name="x", position=1)

    client = TestClient(app)
    rows = list(csv.DictReader(io.StringIO(client.get("/report?format=csv").text)))
    assert [row["name"] for row in rows] == ["'" + text for text in texts[:5]] + ["plain -dash"]
    # A negative amount is a number, not a formula, whether the report holds it as a decimal or as text.
    assert {(row["net"], row["as_text"]) for row in rows} == {("-12.50", "-12.50")}
    assert [item["name"] for item in client.get("/report").json()["items"]] == texts  # JSON as given
