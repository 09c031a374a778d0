"""GET /v1/events over HTTP: pages of feed items in position order, filters, the long-poll, and
never passing a position that a running transaction may still fill."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import psycopg
import pytest

from api.tokens import revoke_token

from tests.api.flows import AUDITOR, ERP, HR, REPORTING, SPECIALIST, post
from tests.integration.holding import HELD_NAME, HOLD_LOCK, install_hold, wait_until_held


def feed(api, who=ERP, expect=200, **params):
    response = api.get("/v1/events", actor=who[0], roles=who[1], **params)
    assert response.status_code == expect, response.text
    return response.json()


def partner(api, name="Corner Shop") -> dict:
    return post(api, "/v1/partners", {"kind": "retailer", "name": name}, SPECIALIST, 201).json()


def log_positions(database_url) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM events ORDER BY position")]


def test_every_event_in_position_order_once_across_pages(api):
    for n in range(5):
        partner(api, f"shop {n}")
    post(api, "/v1/employees", {"name": "Li", "role": "sales_rep", "hired_on": "2020-01-06"}, HR, 201)
    everything = feed(api, limit=1000)
    positions = [item["position"] for item in everything["items"]]
    assert positions == log_positions(api.database_url) and len(positions) == 6
    assert everything["next_after"] == positions[-1]

    paged, after = [], 0
    while page := feed(api, after=after, limit=2)["items"]:
        assert len(page) <= 2
        paged += page
        after = page[-1]["position"]
    assert paged == everything["items"]
    # `after` is exclusive.
    assert feed(api, after=positions[2])["items"] == everything["items"][3:]
    assert feed(api, after=positions[-1]) == {"items": [], "next_after": positions[-1]}


def test_filters_and_next_after_moves_past_what_they_leave_out(api):
    first = partner(api, "A")
    second = partner(api, "B")
    post(api, "/v1/employees", {"name": "Li", "role": "sales_rep", "hired_on": "2020-01-06"}, HR, 201)
    third = partner(api, "C")
    head = third["position"]

    employees = feed(api, stream_types="Employee")
    assert [item["stream_type"] for item in employees["items"]] == ["Employee"]
    # The last position examined, not the last returned: a narrow filter never scans them again.
    assert employees["next_after"] == head
    assert feed(api, after=head, stream_types="Employee") == {"items": [], "next_after": head}

    registered = feed(api, types="Partner.Applied,Employee.Hired")
    assert {item["type"] for item in registered["items"]} == {"Partner.Applied", "Employee.Hired"}
    assert len(feed(api, types="Partner.Applied", stream_types="Partner")["items"]) == 3
    only_second = feed(api, stream_id=second["id"])["items"]
    assert [item["stream_id"] for item in only_second] == [second["id"]]
    assert [item["position"] for item in feed(api, types=" Partner.Applied , ,")["items"]] == [
        first["position"], second["position"], head]
    # A name that is no type matches nothing (a client may subscribe before a type ships).
    assert feed(api, types="No.Such") == {"items": [], "next_after": head}


def test_a_narrow_filter_far_behind_answers_in_bounded_time_and_moves_on(api, monkeypatch):
    from integration import feed as feed_module

    for n in range(5):
        partner(api, f"shop {n}")
    monkeypatch.setattr(feed_module, "SCAN_BUDGET", 2)
    monkeypatch.setattr(feed_module, "READ_BATCH", 2)
    page = feed(api, types="No.Such")
    assert page["items"] == [] and page["next_after"] == 2  # examined 2 of 5, said so, answered
    assert feed(api, types="No.Such", after=2)["next_after"] == 4


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 1001}, {"wait_s": 31}, {"wait_s": -1}, {"after": -1}, {"after": "x"},
    {"stream_id": "not-a-uuid"}, {"types": ",".join(f"T.{n}" for n in range(101))},
])
def test_parameters_out_of_bounds_are_validation_errors(api, params):
    body = feed(api, expect=422, **params)
    assert body["code"] == "validation_error"


def test_limit_and_wait_at_their_bounds_are_accepted(api):
    partner(api)
    assert len(feed(api, limit=1000)["items"]) == 1
    assert len(feed(api, limit=1)["items"]) == 1
    assert feed(api, wait_s=30, after=0)["items"]  # something is there: no wait at all


def test_integration_and_auditor_read_the_feed_others_may_not(api):
    partner(api)
    assert feed(api, ERP)["items"] and feed(api, AUDITOR)["items"]
    assert feed(api, REPORTING, expect=403)["code"] == "forbidden"
    assert feed(api, HR, expect=403)["code"] == "forbidden"
    anonymous = api.client.get("/v1/events")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"


def test_personal_data_leaves_as_markers(api):
    body = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06", "national_id": "330101199001011234"}
    employee = post(api, "/v1/employees", body, HR, 201).json()["id"]
    response = api.get("/v1/events", actor=ERP[0], roles=ERP[1], stream_types="Employee")
    assert "Wang Fang" not in response.text and "330101199001011234" not in response.text
    (hired,) = response.json()["items"]
    assert hired["data"]["name"] == "redacted" and hired["data"]["national_id"] == "redacted"
    post(api, f"/v1/employees/{employee}/separation", {"on": "2020-12-31", "reason": "resignation"}, HR)
    post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR)
    assert feed(api, stream_types="Employee")["items"][0]["data"]["name"] == "erased"


def test_a_long_poll_answers_as_soon_as_an_event_commits(api):
    head = partner(api)["position"]
    with ThreadPoolExecutor(1) as pool:
        asked = time.monotonic()
        waiting = pool.submit(feed, api, after=head, wait_s=20)
        time.sleep(0.3)  # lets the poll start waiting; not an assertion
        assert not waiting.done()
        new = partner(api, "new")
        answered = waiting.result(timeout=20)
        elapsed = time.monotonic() - asked
    assert [item["position"] for item in answered["items"]] == [new["position"]]
    assert answered["next_after"] == new["position"]
    assert elapsed < 10, "answered when the event came, not at the end of wait_s"


def test_a_filtered_long_poll_keeps_waiting_through_events_it_does_not_want(api):
    head = partner(api)["position"]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(feed, api, after=head, wait_s=20, stream_types="Employee")
        partner(api, "not wanted")
        time.sleep(0.3)
        assert not waiting.done()
        hired = post(api, "/v1/employees", {"name": "Li", "role": "sales_rep", "hired_on": "2020-01-06"}, HR, 201)
        answered = waiting.result(timeout=20)
    assert [item["position"] for item in answered["items"]] == [hired.json()["position"]]


def test_a_long_poll_with_nothing_new_answers_empty_after_wait_s_with_next_after_unchanged(api):
    head = partner(api)["position"]
    asked = time.monotonic()
    assert feed(api, after=head, wait_s=1) == {"items": [], "next_after": head}
    assert time.monotonic() - asked >= 0.9


@pytest.fixture
def holdable_database(database_url):
    """A database on which registering a partner named `HELD_NAME` stops, after drawing its
    position and before committing, until the test releases `HOLD_LOCK`."""
    install_hold(database_url)
    return database_url


def test_the_feed_never_passes_a_position_a_running_transaction_holds(api, holdable_database):
    before = partner(api, "before")["position"]
    lock = psycopg.connect(holdable_database, autocommit=True)
    lock.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
    released = threading.Event()
    with ThreadPoolExecutor(3) as pool:
        try:
            held = pool.submit(partner, api, HELD_NAME)  # draws before + 1, then waits on the lock
            wait_until_held(holdable_database)
            later = partner(api, "later")
            assert later["position"] == before + 2, "the held command drew the position in between"
            # The later event is committed and visible, but the feed stops before the gap:
            assert feed(api, after=before) == {"items": [], "next_after": before}
            assert feed(api, after=before, wait_s=1) == {"items": [], "next_after": before}
            assert feed(api, after=before, stream_types="Employee", wait_s=0.5)["next_after"] == before
            waiting = pool.submit(feed, api, after=before, wait_s=20)
            time.sleep(0.5)
            assert not waiting.done(), "a waiting long-poll passed the gap"
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))
            released.set()
            lock.close()
        held_position = held.result(timeout=20)["position"]
        answered = waiting.result(timeout=20)
    assert held_position == before + 1
    # Delivered once its writer committed, in position order, the later one after it.
    assert [item["position"] for item in answered["items"]] == [before + 1, before + 2]
    assert [item["position"] for item in feed(api, after=before)["items"]] == [before + 1, before + 2]


def test_the_openapi_document_describes_the_feed_with_examples(api):
    document = api.client.get("/openapi.json").json()
    page = document["paths"]["/v1/events"]["get"]
    assert page["description"] and page["responses"]["200"]
    assert {p["name"] for p in page["parameters"]} >= {"after", "types", "stream_types", "stream_id", "limit", "wait_s"}
    stream = document["paths"]["/v1/events/stream"]["get"]
    assert "example" in stream["responses"]["200"]["content"]["text/event-stream"]
    assert document["components"]["schemas"]["FeedPage"]["examples"]
    # The example item is a real one: it passes its type's published schema (causation_id a string).
    example = document["components"]["schemas"]["FeedItem"]["examples"][0]
    assert document["components"]["schemas"]["FeedItem"]["properties"]["causation_id"] == {
        "title": "Causation Id", "type": "string"}
    schemas = api.get("/v1/events/schemas", actor=ERP[0], roles=ERP[1]).json()["items"]
    (published,) = [entry["schema"] for entry in schemas if entry["type"] == example["type"]]
    jsonschema.validate(example, published, format_checker=jsonschema.FormatChecker())


def _stream(api, who=ERP, **headers):
    """A request for the stream that the server refuses (a stream it accepted would never end here)."""
    return api.client.get("/v1/events/stream", params=headers.pop("params", {}),
                          headers={"Authorization": f"Bearer {api.token(who[0], *who[1])}", **headers})


def test_a_start_beyond_the_head_is_refused_naming_the_head(api):
    head = partner(api)["position"]
    assert feed(api, after=head) == {"items": [], "next_after": head}
    for params in ({"after": head + 1}, {"after": head + 1, "wait_s": 20}, {"after": 2**62}):
        asked = time.monotonic()
        refused = feed(api, expect=422, **params)
        # At once, not after wait_s: a client with a position from elsewhere hears of it.
        assert time.monotonic() - asked < 5
        assert refused["code"] == "after_beyond_head" and f"beyond the head of the log, {head}" in refused["detail"]
    streamed = _stream(api, params={"after": head + 1})
    assert streamed.status_code == 422 and streamed.json()["code"] == "after_beyond_head"
    resumed = _stream(api, **{"Last-Event-ID": str(head + 5)})
    assert resumed.status_code == 422 and resumed.json()["code"] == "after_beyond_head"
    assert f"Last-Event-ID {head + 5} is beyond the head of the log, {head}" in resumed.json()["detail"]


@pytest.mark.parametrize("last_event_id", ["12a", "-1", "+1", "1 2", "1" * 20])
def test_a_last_event_id_that_is_no_position_is_a_validation_error(api, last_event_id):
    # Latin-1 digits ("²") are tested against a real server (test_feed_stream.py): the test
    # client re-encodes a header's bytes as UTF-8, so it cannot send them.
    refused = _stream(api, **{"Last-Event-ID": last_event_id})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation_error"


def test_a_long_poll_whose_token_is_revoked_while_it_waits_is_refused(api):
    head = partner(api)["position"]
    token = api.token("erp-2", "integration")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(api.client.get, "/v1/events", params={"after": head, "wait_s": 30},
                              headers={"Authorization": f"Bearer {token}"})
        time.sleep(0.5)  # lets the long-poll start waiting; not an assertion
        with psycopg.connect(api.database_url, autocommit=True) as conn:
            (token_id,) = conn.execute("SELECT token_id FROM api_tokens WHERE actor = 'erp-2'").fetchone()
            assert revoke_token(conn, token_id)
        revoked_at = time.monotonic()
        answered = waiting.result(timeout=30)
    assert time.monotonic() - revoked_at < 5, "the long-poll held on for its wait_s"
    assert answered.status_code == 401 and answered.json()["code"] == "invalid_token"
