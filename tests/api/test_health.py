"""GET /health reports the database: 200 when it answers, 503 when it does not."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app


def test_health_reports_a_reachable_database(database_url):
    with TestClient(create_app(database_url)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_health_reports_an_unreachable_database_as_unavailable():
    with TestClient(create_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
