"""Every event a test writes must match its published schema (GET /v1/events/schemas).

`tests/conftest.py`'s `database_url` fixture calls `recorded_event_violations` when a test
is over, on the test's own database: each event is made into its feed item, as every channel
sends it, and validated against the closed form of its type's schema — undeclared fields
fail too, so the published field list is complete. A test writing something that is not an
event of the service on purpose (a corrupt row, a foreign topic) says so with
`@pytest.mark.foreign_events("why")`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import Notification
from jsonschema import Draft202012Validator, FormatChecker

from channel_domain.application import ChannelDepartment
from integration.items import feed_items
from integration.schemas import event_schema, event_types

BATCH = 500
# What a session's tests wrote, for its end to report (tests/conftest.py): the published
# types none wrote, and how many events of how many databases were checked.
written_types: set[str] = set()
checked = {"databases": 0, "events": 0, "seconds": 0.0}


@functools.cache
def validators() -> dict[str, Draft202012Validator]:
    """One compiled validator per type, for the whole session. Formats (uuid, date) are
    asserted, not just annotated as the 2020-12 default would have it."""
    checker = FormatChecker()
    return {t.type: Draft202012Validator(event_schema(t, closed=True), format_checker=checker) for t in event_types()}


def violations_of(items: Sequence[dict[str, Any]]) -> list[str]:
    """What is wrong with each feed item, named by position, type and JSON path."""
    found = []
    for item in items:
        validator = validators().get(item.get("type"))
        if validator is None:
            found.append(f"position {item.get('position')}: {item.get('type')!r} has no published schema")
            continue
        for error in sorted(validator.iter_errors(item), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(part) for part in error.absolute_path) or "(the item)"
            found.append(f"position {item['position']}: {item['type']} at {where}: {error.message}")
    return found


def recorded_event_violations(database_url: str) -> list[str]:
    """Every event of the database, as feed items, checked against its schema."""
    started = time.perf_counter()
    try:
        return _violations(database_url)
    finally:
        checked["seconds"] += time.perf_counter() - started


def _violations(database_url: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not conn.execute("SELECT EXISTS (SELECT FROM events)").fetchone()[0]:
            return []  # most tests write nothing: no application to open
    found = []
    with ChannelDepartment(database_url) as app:
        for batch in _all_events(database_url):
            items, undecodable = _feed_items(app, batch)
            written_types.update(item["type"] for item in items)
            checked["events"] += len(batch)
            found.extend(undecodable + violations_of(items))
    checked["databases"] += 1
    return found


def _feed_items(app: ChannelDepartment, batch: list[Notification]) -> tuple[list[dict[str, Any]], list[str]]:
    """The batch's feed items, and the events that could make none, named (one at a time
    only when the batch fails: feed_items decodes a batch at once)."""
    try:
        return feed_items(app, batch), []
    except Exception:  # noqa: BLE001 - which event, and why, is what the report needs
        items, undecodable = [], []
        for notification in batch:
            try:
                items.extend(feed_items(app, [notification]))
            except Exception as error:  # noqa: BLE001
                undecodable.append(f"position {notification.id}: {notification.topic} makes no feed item: "
                                   f"{type(error).__name__}: {error}")
        return items, undecodable


def _all_events(database_url: str) -> Iterator[list[Notification]]:
    # The test is over: no transaction can still fill a gap, so a plain ordered read sees
    # everything. The feed's fence would instead wait on every transaction of the server,
    # other tests' included.
    after = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT position, originator_id, originator_version, topic, state FROM events"
                " WHERE position > %s ORDER BY position LIMIT %s", (after, BATCH)).fetchall()
            if not rows:
                return
            yield [Notification(id=position, originator_id=originator_id, originator_version=version,
                                topic=topic, state=bytes(state))
                   for position, originator_id, version, topic, state in rows]
            after = rows[-1][0]
