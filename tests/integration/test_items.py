"""The feed item: what every integration channel (feed, SSE, webhooks, NATS) carries."""

from __future__ import annotations

import uuid

from eventsourcing.persistence import Notification

from channel_domain.store.log import read_settled
from integration import nats_relay
from integration.items import EventFilter, feed_items
from tests.api.flows import HR, SPECIALIST, post


def _items(api, **filters):
    department = api.department
    notifications = read_settled(department.event_recorder, after=0, limit=1000)
    return feed_items(department, [n for n in notifications if EventFilter.of(**filters)(n)])


def test_an_employees_personal_fields_leave_as_markers_never_as_values(api):
    body = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06", "national_id": "330101199001011234"}
    employee = post(api, "/v1/employees", body, HR, 201).json()["id"]
    (hired,) = _items(api, stream_types=["Employee"])
    assert hired["data"]["name"] == "redacted" and hired["data"]["national_id"] == "redacted"
    assert hired["data"]["bank_card"] is None  # nothing to hide
    assert "330101199001011234" not in str(hired) and "Wang Fang" not in str(hired) and "pii:" not in str(hired)

    post(api, f"/v1/employees/{employee}/separation", {"on": "2020-12-31", "reason": "resignation"}, HR)
    post(api, f"/v1/employees/{employee}/personal-data/erase", None, HR)
    hired_again = _items(api, stream_types=["Employee"])[0]
    assert hired_again["data"]["name"] == "erased" and hired_again["data"]["national_id"] == "erased"


def test_an_item_carries_the_contract_fields_with_a_stable_event_id(api):
    partner = post(api, "/v1/partners", {"kind": "retailer", "name": "联华超市"}, SPECIALIST, 201,
                   **{"X-Correlation-Id": "crm-42"}).json()
    (registered,) = _items(api, stream_id=uuid.UUID(partner["id"]))
    assert registered["position"] == partner["position"]
    assert registered["event_id"] == str(uuid.uuid5(uuid.UUID(partner["id"]), "1"))
    assert (registered["stream_type"], registered["version"], registered["actor"]) == ("Partner", 1, "spec-1")
    assert registered["type"].startswith("Partner.")
    assert registered["correlation_id"] == "crm-42"
    assert registered["data"]["name"] == "联华超市"  # a company's name is not personal data
    assert registered["recorded_at"].endswith("Z")


def test_filters_by_type_and_stream_type(api):
    post(api, "/v1/partners", {"kind": "retailer", "name": "A"}, SPECIALIST, 201)
    post(api, "/v1/employees", {"name": "Li", "role": "sales_rep", "hired_on": "2020-01-06"}, HR, 201)
    everything = _items(api)
    types = {item["type"] for item in everything}
    (one_type,) = [t for t in types if t.startswith("Employee.")]
    assert {item["type"] for item in _items(api, types=[one_type])} == {one_type}
    assert {item["stream_type"] for item in _items(api, stream_types=["Partner"])} == {"Partner"}
    assert _items(api, types=["No.Such"]) == []


def test_the_services_own_operations_reach_no_integration_client():
    # An operator's skip or retry names their machine and quotes error texts: auditors read
    # it at /v1/audit/*; no feed, stream, webhook or relay carries it, whatever the filter.
    topics = ["channel_domain.operations:ProjectionSkip.Decided", "channel_domain.operations:ProjectionRetry.Ordered",
              "channel_domain.partner:Partner.Applied"]
    kept = [EventFilter.of(**filters)(Notification(id=n, originator_id=uuid.uuid4(), originator_version=1,
                                                   topic=topic, state=b""))
            for filters in ({}, {"stream_types": ["ProjectionSkip", "Partner"]}, {"types": ["ProjectionRetry.Ordered"]})
            for n, topic in enumerate(topics)]
    assert kept == [False, False, True, False, False, True, False, False, False]


def test_the_nats_relay_leaves_the_services_own_operations_out_too():
    skip = Notification(id=7, originator_id=uuid.uuid4(), originator_version=1,
                        topic="channel_domain.operations:ProjectionSkip.Decided", state=b"")
    assert nats_relay.outgoing(None, "channel-domain", [skip]) == []
