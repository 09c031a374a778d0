"""Webhooks (api.md, "Events for integration clients"): subscriptions over HTTP, and delivery
by a real `WebhookWorker` to a real receiver on 127.0.0.1, checked as a receiver checks it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from integration.webhook_subscriptions import UrlPolicy
from integration.webhooks import WebhookWorker
from tests.api.flows import ERP, HR, SPECIALIST, post
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

    def start(delays: tuple[float, ...] = (0.05,) * 8, policy: UrlPolicy | None = None) -> WebhookWorker:
        worker = WebhookWorker(api.department, delays=delays, timeout_s=5, poll_s=0.01,
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


def test_refusals_name_why(api, receiver, monkeypatch):
    for url, reason in (("ftp://127.0.0.1/hook", "scheme"), ("file:///etc/passwd", "scheme"),
                        ("http://10.1.2.3/hook", "host"), ("http://user:pw@127.0.0.1/hook", "credentials"),
                        ("http://127.0.0.1:notaport/", "malformed")):
        refused = subscribe(api, url, expect=422).json()
        assert (refused["code"], refused["reason"]) == ("webhook_url_not_allowed", reason), url
    monkeypatch.delenv("CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS")  # the default: public addresses only
    for url in (receiver.url, "http://localhost/", "http://169.254.169.254/latest/meta-data", "http://[::1]/",
                "http://192.168.1.1/"):
        refused = subscribe(api, url, expect=422).json()
        assert (refused["code"], refused["reason"]) == ("webhook_url_not_allowed", "address"), url
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
    other = ("crm", ("integration",))
    post(api, f"/v1/webhooks/{webhook}/pause", None, other)
    post(api, f"/v1/webhooks/{webhook}/pause", None, other)  # already paused: no change, nothing recorded
    post(api, f"/v1/webhooks/{webhook}/resume", None, ERP)
    assert delete(api, webhook, other) == 204
    assert api.get(f"/v1/webhooks/{webhook}", actor=ERP[0], roles=ERP[1]).status_code == 404
    changes = api.get(f"/v1/webhooks/{webhook}/changes", actor=AUDITOR[0], roles=AUDITOR[1]).json()["items"]
    assert [(c["action"], c["actor"]) for c in changes] == [
        ("created", "erp"), ("paused", "crm"), ("resumed", "erp"), ("deleted", "crm")]
    assert changes[0]["correlation_id"] == "ops-1" and changes[0]["roles"] == ["integration"]
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
    state = read(api, webhook)
    assert (state["lag"], state["attempts"], state["waiting"]["events"]) == (0, 0, 0)
    assert state["last_error"] == "HTTP 503" and state["last_delivered_at"]


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
    state = read(api, webhook)
    (parked,) = state["parked"]["records"]
    assert parked["stream_id"] == broken and parked["events"] == 3 and parked["attempts"] == 8
    assert parked["last_error"] == "HTTP 500" and parked["parked_at"] and state["lag"] == 0
    assert len(first_version_tries()) == 8  # parked: tried no more

    receiver.answer = lambda item: 200
    replayed = post(api, f"/v1/webhooks/{webhook}/parked/replay", None, ERP).json()
    assert replayed["parked"]["events"] == 0
    receiver.wait_for(lambda: len([i for i in receiver.items() if i["stream_id"] == broken]) == 3,
                      what="the parked events delivered")
    assert [i["version"] for i in receiver.items() if i["stream_id"] == broken] == [1, 2, 3]
    final = read(api, webhook)
    assert final["waiting"]["events"] == final["parked"]["events"] == 0
    changes = api.get(f"/v1/webhooks/{webhook}/changes", actor=ERP[0], roles=ERP[1]).json()["items"]
    assert changes[-1]["action"] == "replayed" and changes[-1]["details"] == {"records": [broken], "events": 3}


def test_the_status_shows_position_lag_attempts_and_the_last_error(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    down, _ = partner(api, "Down")
    receiver.answer = lambda item: 502 if item["stream_id"] == down else 204
    complaint(api, down, "later")
    delivering(delays=(60.0,))  # one failure, then a long wait: the state holds still to be read
    receiver.wait_for(lambda: read(api, webhook)["attempts"] == 1, what="one failure counted")
    state = read(api, webhook)
    assert state["position"] == state["head"] and state["lag"] == 0  # set aside, not holding the others up
    assert state["last_error"] == "HTTP 502" and state["last_error_at"]
    (line,) = state["waiting"]["records"]
    assert (line["stream_id"], line["events"], line["attempts"], line["last_error"]) == (down, 2, 1, "HTTP 502")
    assert len(line["positions"]) == 2 and line["next_attempt_at"]
    post(api, f"/v1/webhooks/{webhook}/pause", None, ERP)
    partner(api, "While paused")
    head = read(api, webhook)["head"]
    assert read(api, webhook)["lag"] == head - state["position"] > 0


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
    assert read(api, webhook)["last_error"].startswith("url not allowed")


def test_a_redirect_is_not_followed(api, receiver, delivering):
    webhook = subscribe(api, receiver.url).json()["id"]
    receiver.answer = lambda item: 307
    partner(api, "Redirected")
    delivering(delays=(60.0,))
    receiver.wait_for(lambda: read(api, webhook)["attempts"] == 1, what="the 307 counted as a failure")
    assert len(receiver.requests) == 1 and read(api, webhook)["last_error"] == "HTTP 307"
