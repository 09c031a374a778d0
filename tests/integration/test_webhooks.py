"""Webhooks (api.md, "Events for integration clients"): subscriptions over HTTP, and delivery
by a real `WebhookWorker` to a real receiver on 127.0.0.1, checked as a receiver checks it."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner

from api import cli

from integration import webhook_subscriptions
from integration.webhook_subscriptions import (
    MAX_ATTEMPTS,
    Actor,
    Subscriptions,
    UrlPolicy,
    WebhookUrlNotAllowed,
    is_public_address,
)
from integration import webhooks
from integration.webhooks import (
    DEFAULT_RETRY_DELAYS,
    RETRY_DELAYS_VARIABLE,
    TIMEOUT_VARIABLE,
    BadSetting,
    CheckpointMoved,
    WebhookWorker,
    delay_after,
    retry_delays_from_environment,
)
from tests.api.flows import ERP, HR, SPECIALIST, post
from tests.channel_domain.store.test_export_bounds import HELD_MARKER, held_writer  # noqa: F401 - a fixture
from tests.integration.receiver import Receiver, receiving

AUDITOR = ("auditor-1", ("auditor",))
LOCAL = "127.0.0.1"


@pytest.fixture(autouse=True)
def local_receivers_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS", LOCAL)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture
def delivering(api) -> Iterator[Callable[..., WebhookWorker]]:
    """Starts a delivery worker on the API's database (fast retry delays unless told)."""
    started: list[tuple[WebhookWorker, threading.Event, threading.Thread]] = []

    def start(delays: tuple[float, ...] = (0.05,) * 8, policy: UrlPolicy | None = None,
              timeout_s: float = 5) -> WebhookWorker:
        worker = WebhookWorker(api.department, delays=delays, timeout_s=timeout_s, poll_s=0.01,
                               policy=policy or UrlPolicy((LOCAL,)))
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        started.append((worker, stop, thread))
        return worker

    yield start
    for worker, stop, thread in started:
        stop.set()
        thread.join(timeout=10)
        worker.close()


def subscribe(api, url: str, expect: int = 201, who=ERP, headers: dict[str, str] | None = None, **fields):
    return post(api, "/v1/webhooks", {"url": url, **fields}, who, expect, **(headers or {}))


def read(api, webhook_id: str, who=ERP) -> dict:
    response = api.get(f"/v1/webhooks/{webhook_id}", actor=who[0], roles=who[1])
    assert response.status_code == 200, response.text
    return response.json()


def delete(api, webhook_id: str, who=ERP) -> int:
    return api.client.delete(f"/v1/webhooks/{webhook_id}", headers=api.headers(who[0], *who[1])).status_code


def partner(api, name: str = "Partner") -> tuple[str, int]:
    answer = post(api, "/v1/partners", {"kind": "retailer", "name": name}, SPECIALIST, 201).json()
    return answer["id"], answer["position"]


def complaint(api, partner_id: str, subject: str) -> int:
    return post(api, f"/v1/partners/{partner_id}/complaints", {"subject": subject}, SPECIALIST).json()["position"]


# Subscriptions ---------------------------------------------------------------------------


def test_the_secret_is_answered_once_and_never_read_again(api, receiver):
    answer = subscribe(api, receiver.url, types=["Partner.Applied"])
    created = answer.json()
    assert answer.headers["location"] == f"/v1/webhooks/{created['id']}"
    assert created["secret"].startswith("whsec_")
    Webhook(created["secret"])  # a secret the Standard Webhooks libraries accept
    state = read(api, created["id"])
    assert "secret" not in state
    assert (state["url"], state["types"], state["stream_types"], state["status"]) == (
        receiver.url, ["Partner.Applied"], [], "active")
    listed = api.get("/v1/webhooks", actor=ERP[0], roles=ERP[1]).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]] and listed["next_cursor"] is None
    assert created["secret"] not in str(listed) + str(state)


def test_the_list_pages_with_its_cursor(api, receiver):
    ids = sorted(subscribe(api, receiver.url).json()["id"] for _ in range(3))
    first = api.get("/v1/webhooks", actor=ERP[0], roles=ERP[1], limit=2).json()
    second = api.get("/v1/webhooks", actor=ERP[0], roles=ERP[1], limit=2, cursor=first["next_cursor"]).json()
    assert [i["id"] for i in first["items"]] == ids[:2] and [i["id"] for i in second["items"]] == ids[2:]
    assert second["next_cursor"] is None
    assert api.get("/v1/webhooks", actor=ERP[0], roles=ERP[1], cursor="junk").status_code == 422


def test_only_integration_changes_subscriptions_and_auditors_read_them(api, receiver):
    assert api.client.post("/v1/webhooks", json={"url": receiver.url}).status_code == 401
    for who in (SPECIALIST, HR, AUDITOR, ("bi", ("reporting",))):
        refused = subscribe(api, receiver.url, expect=403, who=who).json()
        assert refused["code"] == "forbidden"
    webhook = subscribe(api, receiver.url).json()["id"]
    assert read(api, webhook, AUDITOR)["id"] == webhook
    assert api.get(f"/v1/webhooks/{webhook}", actor=SPECIALIST[0], roles=SPECIALIST[1]).status_code == 403
    post(api, f"/v1/webhooks/{webhook}/pause", None, AUDITOR, 403)
    assert delete(api, webhook, AUDITOR) == 403


def test_an_integration_actor_sees_and_manages_only_its_own_subscriptions(api, receiver):
    crm = ("crm", ("integration",))
    erps = subscribe(api, receiver.url + "?erp").json()["id"]
    crms = subscribe(api, receiver.url + "?crm", who=crm).json()["id"]
    listed = lambda who: [i["id"] for i in api.get("/v1/webhooks", actor=who[0], roles=who[1]).json()["items"]]  # noqa: E731
    assert listed(ERP) == [erps] and listed(crm) == [crms]
    assert sorted(listed(AUDITOR)) == sorted([erps, crms])  # auditors read every one
    # Another's subscription is not found, exactly as one that does not exist: its existence is not revealed.
    unknown = str(uuid.uuid4())
    for target in (erps, unknown):
        for path in (f"/v1/webhooks/{target}", f"/v1/webhooks/{target}/changes"):
            refused = api.get(path, actor=crm[0], roles=crm[1])
            assert (refused.status_code, refused.json()["code"]) == (404, "not_found"), path
        for action in ("pause", "resume", "parked/replay"):
            assert post(api, f"/v1/webhooks/{target}/{action}", None, crm, 404).json()["code"] == "not_found"
        assert delete(api, target, crm) == 404
    assert read(api, erps)["status"] == "active"  # untouched by the other actor
    assert [c["action"] for c in api.get(f"/v1/webhooks/{erps}/changes", actor=ERP[0], roles=ERP[1]).json()["items"]] == [
        "created"]
    assert read(api, erps, AUDITOR)["created_by"] == "erp" and read(api, crms, AUDITOR)["created_by"] == "crm"


def test_refusals_name_why(api, receiver, monkeypatch):
    for url, reason in (("ftp://127.0.0.1/hook", "scheme"), ("file:///etc/passwd", "scheme"),
                        ("http://10.1.2.3/hook", "host"), ("http://user:pw@127.0.0.1/hook", "credentials"),
                        ("http://127.0.0.1:notaport/", "malformed")):
        refused = subscribe(api, url, expect=422).json()
        assert (refused["code"], refused["reason"]) == ("webhook_url_not_allowed", reason), url
    monkeypatch.delenv("CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS")  # the default: public addresses only
    for url in (receiver.url, "http://localhost/", "http://169.254.169.254/latest/meta-data", "http://[::1]/",
                "http://192.168.1.1/", "http://[2002:7f00:1::]/", "http://[64:ff9b::7f00:1]/",
                "http://[64:ff9b::a9fe:a9fe]/", "http://[::ffff:127.0.0.1]/", "http://[::127.0.0.1]/"):
        refused = subscribe(api, url, expect=422).json()
        assert (refused["code"], refused["reason"]) == ("webhook_url_not_allowed", "address"), url
        assert "127.0.0.1" not in refused["detail"] or "127.0.0.1" in url, refused["detail"]
    monkeypatch.setenv("CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS", f"public,{LOCAL}")
    subscribe(api, receiver.url)
    assert subscribe(api, receiver.url, expect=422, from_position=10**9).json()["code"] == "from_position_beyond_head"
    assert subscribe(api, "not a url at all", expect=422).json()["code"] == "webhook_url_not_allowed"
    assert subscribe(api, receiver.url, expect=422, secret="mine").json()["code"] == "validation_error"
    unknown = uuid.uuid4()
    assert api.get(f"/v1/webhooks/{unknown}", actor=ERP[0], roles=ERP[1]).status_code == 404
    for action in ("pause", "resume", "parked/replay"):
        assert post(api, f"/v1/webhooks/{unknown}/{action}", None, ERP, 404).json()["code"] == "not_found"
    assert delete(api, str(unknown)) == 404


def test_a_repeated_creation_answers_the_same_subscription_without_its_secret(api, receiver):
    first = subscribe(api, receiver.url, headers={"Idempotency-Key": "hook-1"})
    again = subscribe(api, receiver.url, headers={"Idempotency-Key": "hook-1"})
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert first.json()["secret"] and again.json()["secret"] is None
    other = subscribe(api, receiver.url, expect=422, types=["Partner.Applied"], headers={"Idempotency-Key": "hook-1"})
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(api.get("/v1/webhooks", actor=ERP[0], roles=ERP[1]).json()["items"]) == 1


def test_every_change_is_attributed(api, receiver):
    webhook = post(api, "/v1/webhooks", {"url": receiver.url}, ERP, 201, **{"X-Correlation-Id": "ops-1"}).json()["id"]
    post(api, f"/v1/webhooks/{webhook}/pause", None, ERP, **{"X-Correlation-Id": "ops-2"})
    post(api, f"/v1/webhooks/{webhook}/pause", None, ERP)  # already paused: no change, nothing recorded
    post(api, f"/v1/webhooks/{webhook}/resume", None, ERP)
    assert delete(api, webhook, ERP) == 204
    assert api.get(f"/v1/webhooks/{webhook}", actor=ERP[0], roles=ERP[1]).status_code == 404
    changes = api.get(f"/v1/webhooks/{webhook}/changes", actor=AUDITOR[0], roles=AUDITOR[1]).json()["items"]
    assert [(c["action"], c["actor"]) for c in changes] == [
        ("created", "erp"), ("paused", "erp"), ("resumed", "erp"), ("deleted", "erp")]
    assert [c["correlation_id"] for c in changes[:2]] == ["ops-1", "ops-2"] and changes[0]["roles"] == ["integration"]
    assert changes[0]["details"]["url"] == receiver.url and all(c["at"] for c in changes)


# Delivery ---------------------------------------------------------------------------------


def test_deliveries_are_signed_feed_items_a_receiver_verifies(api, receiver, delivering):
    created = subscribe(api, receiver.url).json()
    partner_id, position = partner(api, "签名 Co.")
    delivering()
    receiver.wait_for(lambda: len(receiver.delivered) == 1, what="the event delivered")
    (request,) = receiver.delivered
    (item,) = receiver.verified(created["secret"])  # standardwebhooks, as the receiver would
    assert item["position"] == position and item["stream_id"] == partner_id and item["type"] == "Partner.Applied"
    assert item["data"]["name"] == "签名 Co."
    assert request.webhook_id == item["event_id"] == str(uuid.uuid5(uuid.UUID(partner_id), "1"))
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Webhook(subscribe(api, receiver.url).json()["secret"]).verify(request.body, request.headers)
    tampered = request.body.replace("签名".encode(), "tampered".encode())
    with pytest.raises(Exception, match="signature"):
        Webhook(created["secret"]).verify(tampered, request.headers)


def test_filters_and_the_starting_position(api, receiver, delivering):
    before, before_position = partner(api, "Before")
    complaint(api, before, "old")
    everything = subscribe(api, receiver.url, from_position=0).json()["id"]
    complaints_only = subscribe(api, receiver.url + "?only=complaints", types=["Partner.ComplaintOpened"]).json()["id"]
    from_first = subscribe(api, receiver.url + "?from=first", from_position=before_position).json()["id"]
    after, _ = partner(api, "After")
    complaint(api, after, "new")
    delivering()
    receiver.wait_for(lambda: all(read(api, w)["lag"] == 0 for w in (everything, complaints_only, from_first)),
                      what="every subscription caught up")
    def got(query: str) -> list[tuple[str, str]]:
        # Records are sent concurrently: only each record's own events arrive in order.
        items = sorted((r.item for r in receiver.delivered if r.path == "/hook" + query), key=lambda i: i["position"])
        return [(item["data"].get("subject") or item["data"]["name"], item["type"]) for item in items]

    assert got("") == [("Before", "Partner.Applied"), ("old", "Partner.ComplaintOpened"),
                       ("After", "Partner.Applied"), ("new", "Partner.ComplaintOpened")]
    assert got("?only=complaints") == [("new", "Partner.ComplaintOpened")]  # from the head, complaints only
    assert got("?from=first") == [("old", "Partner.ComplaintOpened"), ("After", "Partner.Applied"),
                                  ("new", "Partner.ComplaintOpened")]  # from_position is exclusive


def test_a_failing_record_waits_with_growing_delays_while_the_others_go_on(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    stuck, _ = partner(api, "Stuck")
    fails_left = {"n": 3}

    def answer(item: dict) -> int:
        if item["stream_id"] == stuck and fails_left["n"] > 0:
            fails_left["n"] -= 1
            return 503
        return 204

    receiver.answer = answer
    complaint(api, stuck, "second")
    complaint(api, stuck, "third")
    others = [partner(api, f"Other {n}")[0] for n in range(3)]
    delivering(delays=(0.3, 0.6, 1.2))
    receiver.wait_for(lambda: {i["stream_id"] for i in receiver.items()} >= set(others), what="the others delivered")
    assert stuck not in {i["stream_id"] for i in receiver.items()}  # they did not wait for the stuck record
    receiver.wait_for(lambda: len([i for i in receiver.items() if i["stream_id"] == stuck]) == 3, timeout=20,
                      what="the stuck record delivered once its receiver recovers")
    tries = [r.at for r in receiver.requests if r.item["stream_id"] == stuck and r.item["version"] == 1]
    gaps = [later - earlier for earlier, later in zip(tries, tries[1:], strict=False)]
    assert len(tries) == 4  # three failures, then delivered
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 1.2, gaps
    stuck_versions = [i["version"] for i in receiver.items() if i["stream_id"] == stuck]
    assert stuck_versions == [1, 2, 3]  # in order, the later ones having waited behind the first
    receiver.wait_for(lambda: read(api, webhook)["lag"] == 0, what="the stuck record's delivery committed")
    state = read(api, webhook)
    assert (state["lag"], state["attempts"], state["waiting"]["events"]) == (0, 0, 0)
    assert state["last_error"] is None and state["last_error_at"] is None  # nothing waits: nothing failing
    assert state["last_delivered_at"]


def test_a_record_is_parked_after_eight_failures_and_replayed_in_order(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    broken, _ = partner(api, "Broken")
    receiver.answer = lambda item: 500 if item["stream_id"] == broken else 200
    first_version_tries = lambda: [r for r in receiver.requests  # noqa: E731
                                   if r.item["stream_id"] == broken and r.item["version"] == 1]
    complaint(api, broken, "two")
    delivering(delays=(0.02,))
    receiver.wait_for(lambda: read(api, webhook)["parked"]["events"] == 2, what="the record parked")
    assert len(first_version_tries()) == 8
    complaint(api, broken, "three")  # joins the parked record: never delivered ahead of it
    healthy, _ = partner(api, "Healthy")
    receiver.wait_for(lambda: healthy in {i["stream_id"] for i in receiver.items()}, what="others still delivered")
    receiver.wait_for(lambda: read(api, webhook)["waiting"]["events"] == 0, what="the healthy record's commit")
    state = read(api, webhook)
    (parked,) = state["parked"]["records"]
    assert parked["stream_id"] == broken and parked["events"] == 3 and parked["attempts"] == 8
    assert parked["last_error"] == "HTTP 500" and parked["parked_at"]
    # api.md: a parked event is not delivered, so the position stays below it and the lag counts
    # every event from it on; attempts and last_error are its own.
    assert state["position"] == parked["positions"][0] - 1
    assert state["lag"] == state["head"] - state["position"] > 0
    assert (state["attempts"], state["last_error"]) == (8, "HTTP 500") and state["last_error_at"]
    assert len(first_version_tries()) == 8  # parked: tried no more

    receiver.answer = lambda item: 200
    replayed = post(api, f"/v1/webhooks/{webhook}/parked/replay", None, ERP).json()
    assert replayed["parked"]["events"] == 0
    receiver.wait_for(lambda: len([i for i in receiver.items() if i["stream_id"] == broken]) == 3,
                      what="the parked events delivered")
    assert [i["version"] for i in receiver.items() if i["stream_id"] == broken] == [1, 2, 3]
    receiver.wait_for(lambda: read(api, webhook)["lag"] == 0, what="the replayed record committed")
    final = read(api, webhook)
    assert final["waiting"]["events"] == final["parked"]["events"] == 0
    assert (final["attempts"], final["last_error"]) == (0, None)
    changes = api.get(f"/v1/webhooks/{webhook}/changes", actor=ERP[0], roles=ERP[1]).json()["items"]
    assert changes[-1]["action"] == "replayed" and changes[-1]["details"] == {"records": [broken], "events": 3}


def test_the_status_lists_the_oldest_waiting_records_and_counts_them_all(api, receiver, delivering, monkeypatch):
    # A receiver down for a day leaves tens of thousands of records waiting: the status a
    # client polls to diagnose it stays small (the oldest listed, all counted).
    monkeypatch.setattr(webhook_subscriptions, "SHOWN_RECORDS", 2)
    webhook = subscribe(api, receiver.url).json()["id"]
    receiver.answer = lambda item: 503
    down = [partner(api, f"Down {n}")[0] for n in range(3)]
    delivering(delays=(60.0,))
    receiver.wait_for(lambda: read(api, webhook)["waiting"]["records_total"] == 3, what="three records waiting")
    waiting = read(api, webhook)["waiting"]
    assert [line["stream_id"] for line in waiting["records"]] == down[:2] and waiting["events"] == 3


def test_the_status_shows_position_lag_attempts_and_the_last_error(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    down, _ = partner(api, "Down")
    receiver.answer = lambda item: 502 if item["stream_id"] == down else 204
    complaint(api, down, "later")
    delivering(delays=(60.0,))  # one failure, then a long wait: the state holds still to be read
    receiver.wait_for(lambda: read(api, webhook)["attempts"] == 1, what="one failure counted")
    up, _ = partner(api, "Up")  # delivered after the failing record's events
    receiver.wait_for(lambda: up in {i["stream_id"] for i in receiver.items()}, what="a later record delivered")
    receiver.wait_for(lambda: read(api, webhook)["waiting"]["events"] == 2, what="its commit")
    state = read(api, webhook)
    (line,) = state["waiting"]["records"]
    assert (line["stream_id"], line["events"], line["attempts"], line["last_error"]) == (down, 2, 1, "HTTP 502")
    assert len(line["positions"]) == 2 and line["next_attempt_at"]
    # api.md: position = the last event such that every event up to it was delivered (or filtered
    # out): just below the first waiting one, though a later record was delivered.
    assert state["position"] == line["positions"][0] - 1 and state["lag"] == state["head"] - state["position"] == 3
    assert (state["attempts"], state["last_error"]) == (1, "HTTP 502") and state["last_error_at"]
    post(api, f"/v1/webhooks/{webhook}/pause", None, ERP)
    partner(api, "While paused")
    paused = read(api, webhook)
    assert paused["lag"] == paused["head"] - state["position"] == 4


def test_a_paused_subscription_delivers_nothing_until_resumed(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    delivering()
    partner(api, "Before pause")
    receiver.wait_for(lambda: len(receiver.delivered) == 1, what="delivered while active")
    assert post(api, f"/v1/webhooks/{webhook}/pause", None, ERP).json()["status"] == "paused"
    partner(api, "During pause")
    # A paused worker's pass is a no-op; give it many passes to misbehave before checking.
    threading.Event().wait(0.5)
    assert len(receiver.requests) == 1 and read(api, webhook)["lag"] > 0
    assert post(api, f"/v1/webhooks/{webhook}/resume", None, ERP).json()["status"] == "active"
    receiver.wait_for(lambda: len(receiver.delivered) == 2, what="delivered after resume")
    assert receiver.items()[1]["data"]["name"] == "During pause"


def test_personal_data_leaves_as_markers(api, receiver, delivering):
    subscribe(api, receiver.url, stream_types=["Employee"])
    body = {"name": "Wang Fang", "role": "sales_rep", "hired_on": "2020-01-06", "national_id": "330101199001011234",
            "bank_card": "6222020200112233445"}
    post(api, "/v1/employees", body, HR, 201)
    delivering()
    receiver.wait_for(lambda: len(receiver.delivered) == 1, what="the hire delivered")
    (request,) = receiver.delivered
    data = request.item["data"]
    assert data["name"] == data["national_id"] == data["bank_card"] == "redacted"
    for secret in (b"Wang Fang", b"330101199001011234", b"6222020200112233445"):
        assert secret not in request.body


def test_the_host_is_checked_again_before_each_delivery(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    partner(api, "Not sent")
    delivering(delays=(60.0,), policy=UrlPolicy())  # the operator took 127.0.0.1 off the list since
    receiver.wait_for(lambda: read(api, webhook)["attempts"] == 1, what="the refusal counted as a failure")
    assert receiver.requests == []
    assert read(api, webhook)["last_error"] == "url not allowed: address"  # the reason, never the address


def test_a_redirect_is_not_followed(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    receiver.answer = lambda item: 307
    partner(api, "Redirected")
    delivering(delays=(60.0,))
    receiver.wait_for(lambda: read(api, webhook)["attempts"] == 1, what="the 307 counted as a failure")
    assert len(receiver.requests) == 1 and read(api, webhook)["last_error"] == "HTTP 307"


def test_a_hanging_receiver_holds_up_only_its_own_record(api, receiver, delivering):
    """A receiver that hangs on one record's events, longer than the timeout, at every try:
    other records' events still arrive promptly — neither its requests nor its retries wait
    in their way (before, each pass waited for every record's request: up to the timeout)."""
    subscribe(api, receiver.url)
    stuck, _ = partner(api, "Hangs")
    receiver.answer = lambda item: (time.sleep(5.0), 204)[1] if item["stream_id"] == stuck else 204
    delivering(delays=(0.05,), timeout_s=2.0)
    committed: dict[str, float] = {}
    until = time.monotonic() + 7.0
    while time.monotonic() < until:
        partner_id, _ = partner(api, "Prompt")
        committed[partner_id] = time.monotonic()  # the command's answer: its event is committed
        time.sleep(0.1)
    receiver.wait_for(lambda: set(committed) <= {i["stream_id"] for i in receiver.items()}, what="the others arrived")
    receiver.wait_for(lambda: len([r for r in receiver.requests if r.item["stream_id"] == stuck]) >= 3, timeout=20,
                      what="the hanging record tried again and again meanwhile")
    arrived = {r.item["stream_id"]: r.at for r in receiver.delivered}
    latencies = sorted(arrived[p] - committed[p] for p in committed)
    assert latencies[-1] < 0.75, f"slowest {latencies[-1]:.2f} s of {len(latencies)}; timeout 2 s"


def _resolver(table: dict[str, str], asked: list[str] | None = None) -> Callable[..., list]:
    """A DNS of the test's own: `table` maps names to one address (changeable between calls)."""

    def resolve(host: str, port: int, *_: object, **__: object) -> list:
        if asked is not None:
            asked.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return socket.getaddrinfo(table[host], port, type=socket.SOCK_STREAM)

    return resolve


def _loopback_counts_as_public(address) -> bool:  # noqa: ANN001 - so a test's receiver can stand in for a public host
    return address.is_loopback or is_public_address(address)


def test_embedded_ipv4_forms_are_judged_by_the_address_they_embed():
    for text, public in (("2002:7f00:1::", False), ("64:ff9b::7f00:1", False), ("::ffff:7f00:1", False),
                         ("64:ff9b::a9fe:a9fe", False), ("2002:c0a8:101::", False), ("2002:a00:1::", False),
                         ("64:ff9b:1::a00:1", False), ("::7f00:1", False), ("fe80::1", False), ("fd00::1", False),
                         ("2002:808:808::", True), ("64:ff9b::808:808", True), ("::ffff:808:808", True),
                         ("2606:4700:4700::1111", True), ("8.8.8.8", True), ("169.254.169.254", False)):
        assert is_public_address(ipaddress.ip_address(text)) is public, text


def test_a_refusal_names_its_reason_never_an_address(caplog):
    policy = UrlPolicy(resolve=_resolver({"internal.example": "10.0.3.7"}))
    with caplog.at_level(logging.WARNING, logger="integration.webhook_subscriptions"):
        for url in ("http://internal.example/hook", "http://nowhere.example/hook"):
            with pytest.raises(WebhookUrlNotAllowed) as refused:
                policy.check(url)
            # The same reason whether the name resolves inside or not at all: no map of internal DNS.
            assert refused.value.details == {"reason": "address"}, url
            assert "10.0.3.7" not in refused.value.message
    assert "10.0.3.7" in caplog.text  # the operator still learns why, from the log


def test_delivery_connects_to_the_address_it_vetted(api, receiver, delivering):
    # The system's DNS cannot resolve this name: only a connection to the address the policy
    # resolved and checked can reach the receiver.
    asked: list[str] = []
    policy = UrlPolicy(resolve=_resolver({"hooks.example.test": LOCAL}, asked), public=_loopback_counts_as_public)
    url = receiver.url.replace(LOCAL, "hooks.example.test")
    Subscriptions(api.department.event_recorder, policy).create(Actor("erp", ("integration",)), url)
    partner(api, "Vetted")
    delivering(policy=policy)
    receiver.wait_for(lambda: len(receiver.delivered) == 1, what="delivered to the vetted address")
    assert receiver.delivered[0].headers["host"] == url.split("/")[2]  # the name, not the address
    assert asked.count("hooks.example.test") == 2  # once at creation, once for the connection


def test_a_name_that_answers_otherwise_at_delivery_gets_nowhere(api, receiver, delivering, caplog):
    table = {"hooks.example.test": LOCAL}
    policy = UrlPolicy(resolve=_resolver(table), public=_loopback_counts_as_public)
    url = receiver.url.replace(LOCAL, "hooks.example.test")
    created = Subscriptions(api.department.event_recorder, policy).create(Actor("erp", ("integration",)), url)
    webhook = str(created.subscription["id"])
    table["hooks.example.test"] = "10.0.0.7"  # rebinding: a private address once the url was accepted
    partner(api, "Not sent")
    with caplog.at_level(logging.WARNING, logger="integration.webhook_subscriptions"):
        delivering(policy=policy, delays=(60.0,))
        receiver.wait_for(lambda: read(api, webhook)["attempts"] == 1, what="the refusal counted as a failure")
    state = read(api, webhook)
    assert receiver.requests == [] and state["last_error"] == "url not allowed: address"
    assert "10.0.0.7" not in str(state) and "10.0.0.7" in caplog.text


def test_a_replay_wins_over_a_failure_counted_from_before_it(api, receiver, delivering):
    """A worker that read a line before a replay (another worker that has lost its lock without
    noticing, or a pass racing the replay) cannot park it again with its stale count."""
    webhook = subscribe(api, receiver.url).json()["id"]
    broken, _ = partner(api, "Broken")
    receiver.answer = lambda item: 500
    worker = delivering(delays=(0.02,))
    receiver.wait_for(lambda: read(api, webhook)["parked"]["events"] == 1, what="the record parked")
    worker._active = frozenset()  # noqa: SLF001 - as a worker whose subscription is no longer its own
    (stale,) = [line for line in worker._lines(uuid.UUID(webhook))]  # noqa: SLF001 - read before the replay
    stale.attempts, stale.parked, stale.due = MAX_ATTEMPTS - 1, False, True
    post(api, f"/v1/webhooks/{webhook}/parked/replay", None, ERP)
    subscription = worker._load(uuid.UUID(webhook))  # noqa: SLF001
    worker._commit_line(subscription, stale, [], stale.positions[0], "HTTP 500")  # noqa: SLF001 - its 8th failure
    with psycopg.connect(api.database_url) as conn:
        attempts, parked_at = conn.execute("SELECT attempts, parked_at FROM webhook_lines WHERE subscription_id = %s",
                                           (webhook,)).fetchone()
    assert parked_at is None and attempts < MAX_ATTEMPTS  # the replay stands


def test_the_default_start_lets_a_writer_below_the_head_commit_first(api, receiver, held_writer):
    # Started at max(position) at once, the subscription would begin above the held writer's
    # position, and that event — committed after the answer — would never be delivered.
    release, _ = held_writer
    partner(api, "Above the held one")
    threading.Timer(0.5, release).start()
    created = subscribe(api, receiver.url).json()
    with psycopg.connect(api.database_url) as conn:
        held = conn.execute("SELECT position FROM events WHERE convert_from(state, 'UTF8') LIKE %s",
                            (f"%{HELD_MARKER}%",)).fetchone()
    assert held is not None, "answered before the writer below the head committed"
    assert held[0] < created["position"]  # committed before the answer: not a new event, rightly not sent


def test_a_writer_below_the_head_open_for_seconds_is_a_503_to_retry_and_nothing_is_created(api, receiver, held_writer):
    partner(api, "Above the held one")
    refused = subscribe(api, receiver.url, expect=503).json()
    assert refused["code"] == "head_not_settled"  # as the stream's start from the head says it
    assert api.get("/v1/webhooks", actor=ERP[0], roles=ERP[1]).json()["items"] == []


def test_the_retry_schedule_and_its_setting(monkeypatch):
    monkeypatch.delenv(RETRY_DELAYS_VARIABLE, raising=False)
    assert retry_delays_from_environment() == DEFAULT_RETRY_DELAYS == (1, 5, 30, 120, 600, 3600, 7200, 14400)
    # Parked at the 8th failure: the waits used are after failures 1..7.
    assert [delay_after(n, DEFAULT_RETRY_DELAYS) for n in range(1, MAX_ATTEMPTS)] == [1, 5, 30, 120, 600, 3600, 7200]
    assert [delay_after(n, (0.5, 2.0)) for n in (1, 2, 3, 7)] == [0.5, 2.0, 2.0, 2.0]  # the last one repeats
    monkeypatch.setenv(RETRY_DELAYS_VARIABLE, " 0.5, 2 ,10")
    assert retry_delays_from_environment() == (0.5, 2.0, 10.0)
    for bad in ("-1", "1,,2", "nan", "1,inf", "soon", "1;2", ","):
        monkeypatch.setenv(RETRY_DELAYS_VARIABLE, bad)
        with pytest.raises(BadSetting, match=RETRY_DELAYS_VARIABLE):
            retry_delays_from_environment()


def test_serve_and_project_refuse_to_start_with_an_unusable_webhook_setting(monkeypatch):
    for variable, value in ((RETRY_DELAYS_VARIABLE, "1,5,soon"), (TIMEOUT_VARIABLE, "0")):
        for command in (["serve"], ["project"]):
            result = CliRunner().invoke(cli.app, command, env={variable: value, "CHANNEL_DOMAIN_LOG_FORMAT": "text"})
            assert result.exit_code == 2, (command, result.output)
            assert "cannot deliver webhooks" in result.output and variable in result.output


def test_the_lock_session_keeps_tcp_alive_both_ways(api):
    worker = WebhookWorker(api.department, delays=(1.0,), timeout_s=1)
    try:
        with worker._lock_session() as session:  # noqa: SLF001 - the session whose death frees the locks
            server_side = {name: session.execute(f"SHOW {name}").fetchone()[name] for name in (
                "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")}
            over_tcp = session.execute("SELECT inet_server_addr() IS NOT NULL AS tcp").fetchone()["tcp"]
            client_side = session.info.get_parameters()
    finally:
        worker.close()
    # Over a Unix socket (the embedded server) there is no network to vanish: PostgreSQL shows 0.
    tcp = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}
    assert server_side == (tcp if over_tcp else dict.fromkeys(tcp, "0"))
    assert (client_side["keepalives"], client_side["keepalives_idle"], client_side["keepalives_count"]) == ("1", "5", "3")


@contextmanager
def dripping_receiver() -> Iterator[str]:
    """A receiver that answers `200 OK` and then one byte of a header a second, for ever:
    no read ever waits long enough for a per-read timeout, so only a total deadline ends it."""
    stop = threading.Event()
    server = socket.socket()
    server.bind((LOCAL, 0))
    server.listen(100)
    server.settimeout(0.2)

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.is_set():
                    conn.sendall(b"X")
                    stop.wait(1.0)
            except OSError:
                pass  # the worker gave up on it: what the test wants

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://{LOCAL}:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        server.close()


def test_a_dripping_receiver_is_cut_at_the_timeout_and_holds_up_no_other_subscription(api, receiver, delivering):
    """One subscription's receiver drips its answers, on more records than the worker sends at
    once: each request ends at the timeout in total (a failure of its record), and another
    subscription's events still arrive within about a second of their commit throughout."""
    with dripping_receiver() as dripping:
        slow = subscribe(api, dripping).json()["id"]
        prompt = subscribe(api, receiver.url).json()["id"]
        for n in range(40):
            partner(api, f"Dripped {n}")
        delivering(delays=(60.0,), timeout_s=2.0)
        committed: dict[str, float] = {}
        until = time.monotonic() + 6.0
        while time.monotonic() < until:
            partner_id, _ = partner(api, "Prompt")
            committed[partner_id] = time.monotonic()
            time.sleep(0.2)
        try:
            receiver.wait_for(lambda: set(committed) <= {i["stream_id"] for i in receiver.items()},
                              what="the other subscription's events")
        except AssertionError as late:
            raise AssertionError(f"{late}; the other subscription: {read(api, prompt)}") from None
        arrived = {r.item["stream_id"]: r.at for r in receiver.delivered}
        latencies = sorted(arrived[p] - committed[p] for p in committed)
        # Typically < 0.25 s; the bound leaves room for a loaded machine (before: none in 30 s).
        assert latencies[-1] < 1.5, f"slowest {latencies[-1]:.2f} s of {len(latencies)}"
        receiver.wait_for(lambda: read(api, slow)["attempts"] >= 1, timeout=5, what="a dripped request cut")
        assert read(api, slow)["last_error"] == "timeout"


def _connections_to(port: int) -> int:
    """Clients' established connections to 127.0.0.1:`port` (Linux's /proc/net/tcp), counted
    on the clients' side: one in the server's listen queue, not yet accepted, counts too."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[2] == f"0100007F:{port:04X}" and row[3] == "01")


def test_a_burst_of_connections_waits_in_a_slow_receivers_listen_queue_and_each_record_arrives_first_time(
        api, receiver, delivering):
    """The receiver accepts nothing until the worker has a connection open for each of
    LINES_AT_ONCE records — a receiver that gets to `accept` late, as the tests' own does in a
    busy process on a loaded machine: the connections wait in its listen queue and every record
    arrives at its first attempt. (Before, the tests' receiver listened with socketserver's queue
    of 5. Here Linux dropped the connections past it until their deadline; accepting late, it
    reset some, the worker got `httpx.ReadError`, and the dripping test's other subscription
    waited out its 60 s retry.)"""
    webhook = subscribe(api, receiver.url).json()["id"]
    records = {partner(api, f"Burst {n}")[0] for n in range(webhooks.LINES_AT_ONCE)}
    port = int(receiver.url.split(":")[2].split("/")[0])
    with receiver.holding_connections():
        # A deadline the hold cannot use up: only a connection the receiver never gets fails.
        delivering(delays=(60.0,), timeout_s=10)
        until = time.monotonic() + 8
        while _connections_to(port) < webhooks.LINES_AT_ONCE and time.monotonic() < until:
            time.sleep(0.02)
        # The burst is the deliverer's: a connection for each record at once, none answered yet.
        assert _connections_to(port) >= webhooks.LINES_AT_ONCE and not receiver.requests
        time.sleep(0.5)  # each request written into its connection, waiting to be accepted
    receiver.wait_for(lambda: {i["stream_id"] for i in receiver.items()} == records, timeout=15,
                      what="every record at its first attempt (a failed one waits 60 s)")
    assert len(receiver.requests) == len(records)
    receiver.wait_for(lambda: read(api, webhook)["lag"] == 0, what="the deliveries committed")
    state = read(api, webhook)
    assert (state["attempts"], state["last_error"], state["parked"]["events"]) == (0, None, 0), state


def _transactions(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                            " WHERE datname = current_database()").fetchone()[0]


def _transactions_per_second(database_url: str, seconds: float = 4.0) -> float:
    before = _transactions(database_url)
    time.sleep(seconds)
    return (_transactions(database_url) - before) / seconds


def test_idle_subscriptions_cost_one_look_per_poll_and_a_standby_asks_for_locks_once_a_second(
        api, receiver, delivering, database_url):
    """100 idle subscriptions, their holder polling every 10 ms and a standby worker: a few
    transactions per poll in all, not 3 per subscription per poll (before: about 4 600/s)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO webhook_subscriptions (id, url, secret, status, position, created_by)"
                     " SELECT gen_random_uuid(), %s, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'active',"
                     " (SELECT coalesce(max(position), 0) FROM events), 'erp' FROM generate_series(1, 100)",
                     (receiver.url,))
    delivering()
    time.sleep(2)
    delivering()  # the standby: every lock is held already
    time.sleep(2)
    rate = _transactions_per_second(database_url)
    print(f"{rate:.0f} transactions/s")
    assert rate < 400, f"{rate:.0f} transactions/s with 100 idle subscriptions, poll 10 ms, one standby"
    committed = time.monotonic()
    partner(api, "Woken")
    receiver.wait_for(lambda: len(receiver.delivered) == 100, what="the event at every subscription")
    assert time.monotonic() - committed < 5


def test_a_pass_reads_a_bounded_part_of_a_long_backlog_and_the_rest_follows_in_order(
        api, receiver, delivering, monkeypatch):
    """A backlog of 3 records × 4 events, with a pass allowed 2 records of 2 events: the pass
    reads and starts just that (before, it read every line whole), and the passes after it
    deliver the rest, in order per record."""
    monkeypatch.setattr(webhooks, "PER_TASK", 2)
    monkeypatch.setattr(webhooks, "LINES_AT_ONCE", 2)
    webhook = uuid.UUID(subscribe(api, receiver.url).json()["id"])
    positions = [partner(api, f"Backlog {n}")[1] for n in range(12)]
    records = [uuid.uuid4() for _ in range(3)]
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        # The lines as a long outage leaves them: every event set aside, the checkpoint past them.
        conn.execute("UPDATE webhook_subscriptions SET position = %s WHERE id = %s", (positions[-1], webhook))
        for n, position in enumerate(positions):
            conn.execute("INSERT INTO webhook_lines (subscription_id, position, stream_id) VALUES (%s, %s, %s)",
                         (webhook, position, records[n % 3]))
    worker = WebhookWorker(api.department, delays=(0.05,), timeout_s=5, poll_s=0.01, policy=UrlPolicy((LOCAL,)))
    started: list[list[int]] = []

    async def recorded(subscription, line, events) -> None:  # noqa: ANN001 - stands in for `_send_line`
        started.append(list(line.positions))

    try:
        monkeypatch.setattr(worker, "_send_line", recorded)
        worker.deliver(webhook)
    finally:
        worker.close()
    firsts = [positions[n::3][:2] for n in range(3)]
    assert len(started) == 2 and all(line in firsts for line in started) and started[0] != started[1], started
    delivering()
    receiver.wait_for(lambda: len(receiver.delivered) == 12, what="the whole backlog")
    sent = [r.item["position"] for r in receiver.delivered]
    for n in range(3):
        assert [p for p in sent if p in positions[n::3]] == positions[n::3]


def test_metrics_total_subscriptions_waiting_and_parked_events_and_the_furthest_lag(api, receiver):
    active = uuid.UUID(subscribe(api, receiver.url).json()["id"])
    paused = subscribe(api, receiver.url + "?paused").json()["id"]
    post(api, f"/v1/webhooks/{paused}/pause", None, ERP)
    positions = [partner(api, f"Undelivered {n}")[1] for n in range(5)]
    waiting, parked = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(api.database_url, autocommit=True) as conn:
        # As delivery leaves them: 3 events of a record waiting for its retry, 2 of one parked.
        conn.execute("UPDATE webhook_subscriptions SET position = %s WHERE id = %s", (positions[-1], active))
        for n, position in enumerate(positions):
            first = n in (0, 3)
            conn.execute("INSERT INTO webhook_lines (subscription_id, position, stream_id, attempts, next_attempt_at,"
                         " parked_at) VALUES (%s, %s, %s, %s, now() + interval '1 hour', %s)",
                         (active, position, waiting if n < 3 else parked, MAX_ATTEMPTS if first else 0,
                          datetime.now(UTC) if first and n == 3 else None))
    text = api.client.get("/metrics").text
    head = read(api, str(active))["head"]
    for line in ('channel_domain_webhook_subscriptions{status="active"} 1.0',
                 'channel_domain_webhook_subscriptions{status="paused"} 1.0',
                 "channel_domain_webhook_waiting_events 3.0", "channel_domain_webhook_parked_events 2.0",
                 f"channel_domain_webhook_max_lag {float(head - positions[0] + 1)}"):
        assert line in text.splitlines(), line
    assert read(api, str(active))["lag"] == head - positions[0] + 1  # the status's own figure


def test_a_pass_that_read_the_checkpoint_before_another_worker_moved_it_rolls_back(api, receiver):
    """Two workers on one subscription (one has lost its lock without noticing): the pass that
    read the checkpoint before the other moved it sets nothing aside, so the events the other
    delivered are not queued again (without the compare-and-set they would be sent twice)."""
    webhook = uuid.UUID(subscribe(api, receiver.url).json()["id"])
    workers = [WebhookWorker(api.department, delays=(0.05,), timeout_s=5, poll_s=0.01, policy=UrlPolicy((LOCAL,)))
               for _ in range(2)]
    owner, stale = workers
    try:
        read_before = stale._load(webhook)  # noqa: SLF001 - the stale worker's read of the checkpoint
        positions = [partner(api, f"Once {n}")[1] for n in range(2)]
        owner._active = frozenset({webhook})  # noqa: SLF001 - as its loop would, holding the lock
        owner.deliver(webhook)
        receiver.wait_for(lambda: len(receiver.delivered) == 2 and owner.idle(), what="the owner's delivery")
        with pytest.raises(CheckpointMoved):
            stale.deliver(webhook, read_before)
        with psycopg.connect(api.database_url) as conn:
            assert conn.execute("SELECT count(*) FROM webhook_lines").fetchone()[0] == 0
            assert conn.execute("SELECT position FROM webhook_subscriptions WHERE id = %s",
                                (webhook,)).fetchone()[0] == positions[-1]
    finally:
        for worker in workers:
            worker.close()
    assert sorted(r.item["position"] for r in receiver.delivered) == positions  # each once


def test_a_host_whose_resolver_hangs_holds_up_no_other_subscription(api, receiver, delivering):
    # Second review: lookups shared the sending loop's thread pool with the commits; sixteen
    # records of a host whose resolver hangs took every thread, and another subscription got
    # nothing for a minute.
    hanging = threading.Event()

    def resolve(host, port, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if host == "slow.example.test" and hanging.is_set():
            time.sleep(8)
        return socket.getaddrinfo(LOCAL, port, type=socket.SOCK_STREAM)

    policy = UrlPolicy((LOCAL, "public"), resolve=resolve, public=_loopback_counts_as_public)
    Subscriptions(api.department.event_recorder, policy).create(Actor("erp", ("integration",)),
                                                                "http://slow.example.test:9/hook")
    subscribe(api, receiver.url)
    for n in range(16):
        partner(api, f"Behind a slow resolver {n}")
    hanging.set()
    delivering(policy=policy, timeout_s=2.0, delays=(60.0,))
    time.sleep(1.0)  # the slow subscription's sixteen records are resolving
    committed = {}
    for n in range(8):
        partner_id, _ = partner(api, f"Prompt {n}")
        committed[partner_id] = time.monotonic()
        time.sleep(0.25)
    receiver.wait_for(lambda: set(committed) <= {item["stream_id"] for item in receiver.items()}, timeout=60,
                      what="the other subscription's events")
    arrived = {r.item["stream_id"]: r.at for r in receiver.delivered}
    late = {p: round(arrived[p] - at, 2) for p, at in committed.items() if arrived[p] - at > 1.5}
    assert not late, f"held up behind another subscription's resolver: {late}"


def test_a_worker_that_takes_a_subscription_back_sends_what_another_left_half_sent(api, receiver, delivering,
                                                                                   database_url):
    # Second review: a worker that lost its lock and took it back kept what it had seen of the
    # subscription, looked only at lines with news, and never sent a line another worker had
    # left half sent (attempts 0: nothing failed) — until a pause and resume.
    webhook = subscribe(api, receiver.url).json()["id"]
    delivering(timeout_s=5.0)
    partner(api, "First")
    receiver.wait_for(lambda: len(receiver.delivered) == 1, what="the first event")

    def lock_holders() -> list[int]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return [row[0] for row in conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")]

    (first_session,) = lock_holders()
    second = WebhookWorker(api.department, delays=(0.05,) * 8, timeout_s=5.0, poll_s=0.01, policy=UrlPolicy((LOCAL,)))
    stop_second = threading.Event()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first_session,))
    second_thread = threading.Thread(target=second.run, args=(stop_second,), daemon=True)
    second_thread.start()
    deadline = time.monotonic() + 10
    # The second worker holds it (the first waits half a second before it asks again).
    while uuid.UUID(webhook) not in second._active:  # noqa: SLF001 - which worker delivers is the point here
        assert time.monotonic() < deadline, f"the second worker never took the subscription ({lock_holders()})"
        time.sleep(0.01)

    record, _ = partner(api, "Two events")
    in_flight = threading.Event()

    def slow_first_event(item):  # noqa: ANN001, ANN202
        if item["stream_id"] == record and item["version"] == 1:
            in_flight.set()
            time.sleep(1.0)
        return 204

    receiver.answer = slow_first_event
    complaint(api, record, "the second event")
    assert in_flight.wait(10), "the second worker never sent the record's first event"
    stop_second.set()  # stopped while the first event is in flight: the second stays in the line
    second_thread.join(timeout=15)
    second.close()
    receiver.wait_for(lambda: {item["version"] for item in receiver.items() if item["stream_id"] == record} == {1, 2},
                      timeout=15, what="the record's second event, sent by the worker that took the subscription back")
    assert read(api, webhook)["lag"] == 0



def test_a_deleted_or_quiet_subscription_keeps_no_client(api, receiver, delivering, monkeypatch):
    """Each subscription has its own connection pool (an httpx client); the worker lets it go when
    the subscription is no longer its own (deleted here) and when it has sent nothing for
    `IDLE_CLIENT_S`, so a worker's clients do not grow with every subscription it ever held."""
    monkeypatch.setattr(webhooks, "IDLE_CLIENT_S", 2.0)
    gone = uuid.UUID(subscribe(api, receiver.url).json()["id"])
    quiet = uuid.UUID(subscribe(api, receiver.url).json()["id"])
    worker = delivering()
    partner(api, "Both hear it")
    receiver.wait_for(lambda: len(receiver.delivered) == 2, what="one event at each subscription")
    assert set(worker._clients) == {gone, quiet}
    assert delete(api, str(gone)) == 204
    receiver.wait_for(lambda: gone not in worker._clients, timeout=5, what="the deleted subscription's client closed")
    receiver.wait_for(lambda: quiet not in worker._clients, timeout=10, what="the quiet subscription's client closed")
    partner(api, "Heard again")
    receiver.wait_for(lambda: len(receiver.delivered) == 3, what="the quiet subscription's next event, on a new client")
