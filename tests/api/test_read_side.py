"""The read side over HTTP: the audit trail, projection progress, metrics, reading your writes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import Api
from tests.api.flows import AUDITOR, HR, REPORTING, SPECIALIST, post, problem


def catch_up(api) -> None:
    api.catch_up()


def test_audit_events_are_filtered_and_paginated_for_auditors(api):
    first = post(api, "/v1/partners", {"kind": "retailer", "name": "A"}, SPECIALIST, 201).json()
    post(api, "/v1/partners", {"kind": "retailer", "name": "B"}, SPECIALIST, 201)
    post(api, "/v1/employees", {"name": "C", "role": "sales_rep", "hired_on": "2026-01-05"}, HR, 201)
    catch_up(api)
    everything = api.get("/v1/audit/events").json()
    assert [(e["position"], e["type"], e["actor"]) for e in everything["items"]] == [
        (1, "Partner.Applied", "spec-1"), (2, "Partner.Applied", "spec-1"), (3, "Employee.Hired", "hr-1")]
    assert everything["items"][0]["data"]["name"] == "A"
    assert [e["position"] for e in api.get("/v1/audit/events", stream_id=first["id"]).json()["items"]] == [1]
    by_actor = api.client.get("/v1/audit/events", params={"actor": "hr-1"}, headers=api.headers(*AUDITOR[:1], *AUDITOR[1]))
    assert [e["position"] for e in by_actor.json()["items"]] == [3]
    assert [e["position"] for e in api.get("/v1/audit/events", type="Partner.Applied", after=1).json()["items"]] == [2]
    page = api.get("/v1/audit/events", limit=2).json()
    assert [e["position"] for e in page["items"]] == [1, 2]
    assert [e["position"] for e in api.get("/v1/audit/events", cursor=page["next_cursor"]).json()["items"]] == [3]
    problem(api.get("/v1/audit/events", actor=REPORTING[0], roles=REPORTING[1]), 403, "forbidden")


def test_min_position_waits_for_the_projection_or_answers_503_and_refuses_a_position_past_the_head(database_url):
    with TestClient(create_app(database_url, run_projections=True)) as client:
        api = Api(client, database_url)
        created = post(api, "/v1/partners", {"kind": "retailer", "name": "A"}, SPECIALIST, 201).json()
        response = api.get("/v1/audit/events", min_position=created["position"], wait_s=10)
        assert response.status_code == 200
        assert int(response.headers["x-projection-position"]) >= created["position"]
        assert [e["stream_id"] for e in response.json()["items"]] == [created["id"]]
    with TestClient(create_app(database_url)) as client:  # nothing projects here
        api = Api(client, database_url)
        unprojected = post(api, "/v1/partners", {"kind": "retailer", "name": "B"}, SPECIALIST, 201).json()
        lagging = api.get("/v1/audit/events", min_position=unprojected["position"], wait_s=0.1)
        problem(lagging, 503, "projection_lagging")
        assert lagging.headers["retry-after"] == "1"
        never = api.get("/v1/audit/events", min_position=unprojected["position"] + 1, wait_s=10)
        problem(never, 422, "validation_error")  # at once: no event has that position yet


def test_projection_progress_and_metrics(api):
    post(api, "/v1/partners", {"kind": "retailer", "name": "A"}, SPECIALIST, 201)
    before = api.get("/v1/projections", actor=REPORTING[0], roles=REPORTING[1]).json()["items"]
    running = {"status": "running", "failing_position": None, "error": None, "since": None}
    assert {"name": "audit_events", "position": 0, "head": 1, "lag": 1, **running} in before
    catch_up(api)
    after = api.get("/v1/projections", actor=AUDITOR[0], roles=AUDITOR[1]).json()["items"]
    assert {"name": "audit_events", "position": 1, "head": 1, "lag": 0, **running} in after
    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'channel_domain_projection_lag{projection="audit_events"} 0.0' in metrics.text
