"""The published event contracts: generated from the event classes, served to every role, and
checked against every event the suite writes (tests/event_contracts.py)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from channel_domain.partner import Partner
from channel_domain.store.log import read_settled
from channel_domain.store.recorder import EventFacts
from integration.items import feed_items
from integration.schemas import DECIMAL_PATTERN, event_schema, event_types, published, type_schema
from tests.api.flows import HR, SPECIALIST, post
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract
from tests.event_contracts import recorded_event_violations, violations_of


def _type(name):
    (found,) = [t for t in event_types() if t.type == name]
    return found


def _data(name):
    return event_schema(_type(name))["properties"]["data"]


def test_event_types_are_named_as_the_feed_names_them_with_their_class_version():
    types = {t.type: t.version for t in event_types()}
    # __init__ decorated @event("Applied"): the library records Applied, never its generic Created.
    assert "Partner.Applied" in types and "Partner.Created" not in types and "Employee.Created" not in types
    assert types["Contract.Amended"] == 2 and types["Partner.Suspended"] == 2 and types["Partner.Visited"] == 1
    # A legacy class still in old logs, with no method of its own.
    assert "Partner.HousingSubsidyGranted" in types
    assert {"ProjectionSkip.Decided", "ProjectionRetry.Ordered"} <= types.keys()  # checked, not published
    for event_type in event_types():
        schema = event_schema(event_type)
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"urn:channel-domain:events:{event_type.type}:{event_type.version}"
        assert schema["properties"]["type"]["const"] == event_type.type


def test_data_is_described_field_by_field_from_the_annotations():
    sale = _data("Contract.SaleRecorded")
    assert sale["properties"]["amount"] == {"type": "string", "pattern": DECIMAL_PATTERN,
                                            "description": "A decimal number as a string"}
    assert sale["properties"]["sold_on"]["format"] == "date"
    assert sale["properties"]["employee_id"] == {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]}
    assert sale["required"] == ["order_id", "amount", "sold_on", "product", "region", "employee_id"]
    assert _data("SalesTarget.Set")["properties"]["kpis"]["additionalProperties"]["pattern"] == DECIMAL_PATTERN
    assert _data("Partner.CorrectivePlanRecorded")["properties"]["actions"] == {"type": "array", "items": {"type": "string"}}
    assert _data("ProjectionRetry.Ordered")["properties"]["since"]["format"] == "date-time"
    assert _data("Contract.Drafted")["properties"]["exclusive"] == {"type": "boolean"}


def test_a_field_with_a_default_may_be_absent_as_events_recorded_before_it_existed_are():
    hired = _data("Employee.Hired")
    assert "login" in hired["properties"] and "login" not in hired["required"]
    assert "return_id" not in _data("Contract.ReturnRecorded")["required"]
    assert "confirmed_by" not in _data("SalesTarget.Closed")["required"]


def test_an_employees_personal_fields_are_markers_and_a_partners_name_is_text():
    hired = _data("Employee.Hired")["properties"]
    assert hired["name"]["enum"] == ["redacted", "erased"]
    assert hired["national_id"]["anyOf"][0]["enum"] == ["redacted", "erased"] and hired["national_id"]["anyOf"][1] == {
        "type": "null"}
    assert _data("Partner.Applied")["properties"]["name"] == {"type": "string"}


def test_effective_on_follows_the_events_date_fields():
    def effective(name):
        return {k: v for k, v in event_schema(_type(name))["properties"]["effective_on"].items() if k != "description"}
    assert effective("Contract.SaleRecorded")["format"] == "date"  # sold_on, always there
    assert effective("Partner.Applied") == {"type": "null"}  # no date of its own
    assert effective("Contract.Drafted") == {"type": "null"}  # starts_on is no effective date


def test_a_tiny_rate_leaves_in_exponent_notation_which_the_schema_admits(app):
    """`plain_json` writes a Decimal as its `str`: 0.0000001 (a Rate the API accepts) is "1E-7".
    The schema describes what is sent; a decimal parser reads either form."""
    consignee = partner(app, "consignee")
    signed_contract(app, consignee, fee_rate="0.0000001")
    (drafted,) = [item for item in _written(app) if item["type"] == "Contract.Drafted"]
    assert drafted["data"]["fee_rate"] == "1E-7" and Decimal(drafted["data"]["fee_rate"]) == Decimal("0.0000001")
    assert violations_of([drafted]) == []


def test_a_creation_is_always_the_streams_first_version():
    assert event_schema(_type("Partner.Applied"))["properties"]["version"]["const"] == 1
    assert event_schema(_type("Partner.Visited"))["properties"]["version"]["minimum"] == 2


def test_an_annotation_without_a_json_form_is_refused_not_guessed():
    with pytest.raises(TypeError, match="no JSON Schema"):
        type_schema(complex)


# The check run on every test's database --------------------------------------------------


def _written(app):
    return feed_items(app, read_settled(app.event_recorder, after=0, limit=1000))


def test_the_check_names_an_item_that_does_not_match_its_schema(app):
    retailer = partner(app, "retailer")
    (applied, *_) = _written(app)
    assert violations_of([applied]) == []

    wrong = {**applied, "data": {**applied["data"], "commission_rate": 0.05, "discount": "1.00"}}
    del wrong["data"]["applied_by"]
    found = violations_of([wrong])
    assert any("Partner.Applied at data/commission_rate" in v and "0.05" in v for v in found), found
    assert any("Partner.Applied at data" in v and "'discount'" in v for v in found), found  # undeclared: closed
    assert any("'applied_by' is a required property" in v for v in found), found
    assert violations_of([{**applied, "type": "Partner.Merged"}]) == [
        f"position {applied['position']}: 'Partner.Merged' has no published schema"]
    assert retailer


@pytest.mark.foreign_events("writes an event that does not match its schema, for the check to find")
def test_the_check_reads_every_event_of_a_tests_database_and_names_the_mismatch(app, database_url):
    retailer = partner(app, "retailer")
    record = app.get(Partner, retailer)
    with as_("fin-1", "finance"):
        record.trigger_event(Partner.DepositPaid, amount=Decimal("100.00"), on=date(2026, 3, 1))
    paid = record.collect_events()[-1]
    stored = app.mapper.to_stored_event(paid)
    state = json.loads(stored.state)
    state["amount"] = 100.5  # a float where a decimal string belongs
    app.event_recorder.insert_events(
        [type(stored)(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())],
        facts=[EventFacts(paid.timestamp, paid.on)])
    violations = recorded_event_violations(database_url)
    assert len(violations) == 1 and "Partner.DepositPaid at data/amount: 100.5 is not of type 'string'" in violations[0]


@pytest.mark.foreign_events("writes an event of a type that does not exist, for the check to name")
def test_the_check_names_an_event_that_makes_no_feed_item(app, database_url):
    retailer = partner(app, "retailer")
    record = app.get(Partner, retailer)
    with as_("fin-1", "finance"):
        record.trigger_event(Partner.DepositPaid, amount=Decimal("100.00"), on=date(2026, 3, 1))
    paid = record.collect_events()[-1]
    stored = app.mapper.to_stored_event(paid)
    app.event_recorder.insert_events(
        [type(stored)(stored.originator_id, stored.originator_version, "channel_domain.partner:Partner.Gone",
                      stored.state)], facts=[EventFacts(paid.timestamp, paid.on)])
    (violation,) = recorded_event_violations(database_url)
    assert "channel_domain.partner:Partner.Gone makes no feed item: TopicError" in violation


def test_an_event_stored_at_an_old_version_is_fed_upcast_to_the_current_one(app):
    """What docs/integration.md promises: only the current version of a type ever leaves."""
    retailer = partner(app, "retailer")
    record = app.get(Partner, retailer)
    with as_("mgr-1", "channel_manager"):
        record.trigger_event(Partner.Suspended, reason="late reports", on=date(2025, 4, 1))
    suspended = record.collect_events()[-1]
    object.__setattr__(suspended, "timestamp", datetime(2025, 4, 9, 20, 30, tzinfo=UTC))
    stored = app.mapper.to_stored_event(suspended)
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["on"]  # as version 1 wrote it
    app.event_recorder.insert_events(
        [type(stored)(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())],
        facts=[EventFacts(suspended.timestamp, None)])
    fed = _written(app)[-1]
    assert (fed["type"], fed["data"]) == ("Partner.Suspended", {"reason": "late reports", "on": "2025-04-10"})
    assert violations_of([fed]) == []  # the version 2 schema, closed


# GET /v1/events/schemas -------------------------------------------------------------------


def test_every_role_reads_the_schemas_and_no_token_reads_none(api):
    answer = api.get("/v1/events/schemas", actor="reporter", roles=("reporting",))
    assert answer.status_code == 200
    body = answer.json()
    assert body["next_cursor"] is None
    assert [(i["type"], i["version"]) for i in body["items"]] == [
        (t.type, t.version) for t in event_types() if not t.type.startswith(("ProjectionSkip.", "ProjectionRetry."))]
    assert body["items"] == published()
    # The service's own operations reach no integration client: nothing to publish for them.
    assert api.get("/v1/events/schemas/ProjectionSkip.Decided").status_code == 404
    assert api.client.get("/v1/events/schemas").status_code == 401
    assert api.client.get("/v1/events/schemas/Partner.Applied").status_code == 401


def test_the_schemas_revalidate_with_their_etag(api):
    first = api.get("/v1/events/schemas", actor="hr-1", roles=("hr",))
    etag = first.headers["etag"]
    assert etag.startswith('"') and "no-cache" in first.headers["cache-control"]
    again = api.client.get("/v1/events/schemas", headers=api.headers("hr-1", "hr", **{"If-None-Match": etag}))
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""
    stale = api.client.get("/v1/events/schemas", headers=api.headers("hr-1", "hr", **{"If-None-Match": '"old"'}))
    assert stale.status_code == 200
    # Compared weakly, as RFC 9110 says: a compressing proxy hands the tag back as W/"…".
    weak = api.client.get("/v1/events/schemas", headers=api.headers("hr-1", "hr", **{"If-None-Match": f"W/{etag}"}))
    assert weak.status_code == 304


def test_one_types_schema_is_served_as_a_schema_document(api):
    answer = api.get("/v1/events/schemas/Contract.Amended", actor="fin-1", roles=("finance",))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/schema+json")
    assert answer.json() == event_schema(_type("Contract.Amended"))
    assert answer.headers["etag"] != api.get("/v1/events/schemas").headers["etag"]
    unknown = api.get("/v1/events/schemas/Contract.Vanished")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_event_type"
    assert unknown.headers["content-type"].startswith("application/problem+json")


def test_a_fed_item_validates_against_the_schema_a_client_fetched(api):
    post(api, "/v1/employees", {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06"}, HR, 201)
    post(api, "/v1/partners", {"kind": "retailer", "name": "联华超市"}, SPECIALIST, 201)
    schemas = {i["type"]: i["schema"] for i in api.get("/v1/events/schemas").json()["items"]}
    items = _written(api.department)
    assert {i["type"] for i in items} == {"Employee.Hired", "Partner.Applied"}
    for item in items:
        Draft202012Validator(schemas[item["type"]]).validate(item)
