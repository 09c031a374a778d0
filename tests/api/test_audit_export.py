"""`GET /v1/audit/export` fixes its end before it answers: an idle transaction elsewhere on
the server does not hold it up, and an end that cannot be fixed is a 503 to retry, not a 200
cut off after the wait."""

from __future__ import annotations

import json

from api.routes import audit
from tests.api.flows import SPECIALIST, post, problem
from tests.channel_domain.store.test_export_bounds import another_database, idle_transaction, leave_a_gap


def test_an_export_while_another_database_holds_an_idle_transaction_is_whole(api, database_url):
    post(api, "/v1/partners", {"kind": "retailer", "name": "Shop"}, SPECIALIST, 201)
    with idle_transaction(another_database(database_url)):
        response = api.get("/v1/audit/export")
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert json.loads(lines[-1]).keys() == {"checkpoint"}
    assert [json.loads(line)["position"] for line in lines[:-1]] == list(
        range(1, api.department.event_recorder.max_notification_id() + 1))


def test_an_export_whose_end_cannot_be_fixed_is_a_503_to_retry(api, database_url, monkeypatch):
    monkeypatch.setattr(audit, "EXPORT_SETTLE_S", 0.2)
    post(api, "/v1/partners", {"kind": "retailer", "name": "Shop"}, SPECIALIST, 201)
    leave_a_gap(database_url)
    post(api, "/v1/partners", {"kind": "retailer", "name": "Kiosk"}, SPECIALIST, 201)
    # Not sealed yet, so the gap could be this transaction's: the export may not pass it.
    with idle_transaction(database_url) as xid:
        response = api.get("/v1/audit/export")
    body = problem(response, 503, "export_unsettled")
    assert response.headers["Retry-After"] == "5"
    assert str(xid) in body["detail"]
    assert api.get("/v1/audit/export").status_code == 200  # once it has ended
