"""GET /v1/commissions/statements: a page costs a fixed number of queries however many statements
it holds (no query per statement), up to limit=1000 (api.md), and says what each statement says."""

from __future__ import annotations

import threading

import psycopg

from tests.api.flows import MANAGER, SPECIALIST, post, problem
from tests.api.test_commissions import give_back, sale, statement
from tests.api.test_period_close import close, prepare, retailer


class CountedQueries:
    """Counts every statement any psycopg cursor of this process sends while it is installed."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        self._lock = threading.Lock()
        original = psycopg.Cursor.execute

        def counted(cursor, *args, **kwargs):  # noqa: ANN001, ANN202
            with self._lock:
                self.count += 1
            return original(cursor, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)

    def during(self, call):  # noqa: ANN001, ANN201
        before = self.count
        result = call()
        return result, self.count - before


def test_a_page_of_statements_costs_the_same_queries_whatever_its_length(api, monkeypatch):
    partners = []
    for n in range(6):
        partner, contract = retailer(api)
        partners.append(partner)
        sale(api, contract, "M", f"{1000 * (n + 1)}.00", "2026-03-10")  # 5 % of n × 1 000
        sale(api, contract, "A", "2000.00", "2026-04-10")
        give_back(api, contract, "A", "500.00", "2026-04-12")
        prepare(api, partner, "2026-03", f"{50 * (n + 1)}.00")
    close(api, "2026-03")
    line = statement(api, partners[0], "2026-03")["lines"][0]["position"]
    post(api, f"/v1/commissions/statements/{partners[0]}/2026-03/disputes", {"line_position": line, "reason": "r"},
         SPECIALIST, 201)
    api.catch_up()

    def page(limit: int):  # noqa: ANN202
        response = api.get("/v1/commissions/statements", actor=MANAGER[0], roles=MANAGER[1], limit=limit)
        assert response.status_code == 200, response.text
        return response.json()

    queries = CountedQueries(monkeypatch)
    one, one_cost = queries.during(lambda: page(1))
    everything, full_cost = queries.during(lambda: page(1000))
    assert len(one["items"]) == 1 and one["next_cursor"] is not None
    assert len(everything["items"]) == 12 and everything["next_cursor"] is None
    assert full_cost == one_cost, (one_cost, full_cost)  # 12 statements for the price of 1

    for item in everything["items"]:
        single = statement(api, item["partner_id"], item["period"])
        assert item == {key: value for key, value in single.items() if key != "lines"}
    first_march = next(i for i in everything["items"] if (i["partner_id"], i["period"]) == (partners[0], "2026-03"))
    assert (first_march["period_status"], first_march["payout_status"], len(first_march["disputes"])) == (
        "closed", "prepared", 1)
    # April: 2 000 − 500 at 5 % = 75, for everyone.
    assert {i["total_due"] for i in everything["items"] if i["period"] == "2026-04"} == {"75.00"}
    problem(api.get("/v1/commissions/statements", limit=1001), 422, "validation_error")
