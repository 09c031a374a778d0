"""Disputes of commission statement lines (api.md, "Commission periods and disputes"): raised by
the channel department or finance against a line of a statement, resolved by finance — never by
whoever raised it — and, when upheld, booked as one adjustment line in the first open month."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from channel_domain.aggregate import ChannelAggregate
from channel_domain.commission_dispute import CommissionDispute
from channel_domain.company_time import recorded_month
from tests.api.flows import FINANCE, FINANCE_2, MANAGER, REPORTING, SPECIALIST, approved_partner, post, problem
from tests.api.test_commissions import sale, statement
from tests.api.test_period_close import FLAT_5, close, lines, prepare, retailer
from tests.channel_domain.helpers import as_

X = "00000000-0000-0000-0000-00000000000a"


def raise_dispute(api, partner: str, period: str, body: dict, who=SPECIALIST, expect: int | None = 201):
    return post(api, f"/v1/commissions/statements/{partner}/{period}/disputes", body, who, expect)


def resolve(api, partner: str, period: str, dispute: str, body: dict, who=FINANCE, expect: int | None = 200):
    return post(api, f"/v1/commissions/statements/{partner}/{period}/disputes/{dispute}/resolve", body, who, expect)


def disputed_march(api) -> tuple[str, str, dict]:
    """A retailer at 5 %: March's sale A of 10 000 earns 500, prepared for payout, March closed."""
    partner, contract = retailer(api, FLAT_5)
    sale(api, contract, "A", "10000.00", "2026-03-10")
    prepare(api, partner, "2026-03", "500.00")
    close(api, "2026-03")
    return partner, contract, statement(api, partner, "2026-03")


def test_an_upheld_dispute_books_its_amount_in_the_first_open_month_and_the_trail_is_followed(api):
    partner, _, march = disputed_march(api)
    line = march["lines"][0]
    raised = raise_dispute(api, partner, "2026-03", {"line_position": line["position"],
                                                     "reason": "A was a promotional order: 4.5 % agreed"})
    dispute = raised.json()["dispute_id"]
    assert raised.headers["location"] == f"/v1/commissions/disputes/{dispute}"
    assert (raised.json()["status"], raised.json()["line_event_id"]) == ("open", line["event_id"])
    listed = statement(api, partner, "2026-03")["disputes"]
    assert [(d["dispute_id"], d["line_position"], d["raised_by"], d["status"], d["adjustment"]) for d in listed] == [
        (dispute, line["position"], "spec-1", "open", None)]
    before_resolution = datetime.now(UTC).isoformat()

    # 10 000 × (4.5 % − 5 %) = −50: the partner was paid 50 too much.
    resolved = resolve(api, partner, "2026-03", dispute, {"outcome": "upheld", "note": "promotion confirmed",
                                                          "amount": "-50.00"})
    assert (resolved.json()["status"], resolved.json()["amount"], resolved.json()["resolved_by"]) == (
        "upheld", "-50.00", "fin-1")
    history = api.get(f"/v1/commissions/disputes/{dispute}/history").json()["items"]
    assert [(h["type"], h["actor"]) for h in history] == [("CommissionDispute.Raised", "spec-1"),
                                                            ("CommissionDispute.Resolved", "fin-1")]
    booked_in = recorded_month(datetime.fromisoformat(history[1]["recorded_at"]))
    booked = statement(api, partner, booked_in)
    assert [(line_["kind"], line_["corrects_period"], line_["commission"], line_["dispute_id"], line_["position"])
            for line_ in booked["lines"]] == [("adjustment", "2026-03", "-50.00", dispute, history[1]["position"])]
    assert (booked["adjustments"], booked["total_due"], booked["carried_out"]) == ("-50.00", "0.00", "-50.00")

    after = statement(api, partner, "2026-03")
    assert [(d["status"], d["amount"], d["resolved_by"], d["note"], d["adjustment"]) for d in after["disputes"]] == [
        ("upheld", "-50.00", "fin-1", "promotion confirmed",
         {"period": booked_in, "position": history[1]["position"], "line_no": 1})]
    # The closed statement lists its disputes; its lines and figures are as closed.
    assert {**after, "disputes": []} == {**march, "disputes": []}
    then = statement(api, partner, "2026-03", as_known_at=before_resolution)["disputes"]
    assert [(d["status"], d["amount"], d["adjustment"]) for d in then] == [("open", None, None)]

    problem(resolve(api, partner, "2026-03", dispute, {"outcome": "rejected", "note": "again"}, FINANCE_2, None),
            422, "invalid_transition")
    record = api.get(f"/v1/commissions/disputes/{dispute}", actor=REPORTING[0], roles=REPORTING[1]).json()
    assert (record["status"], record["version"], record["partner_id"], record["period"]) == (
        "upheld", 2, partner, "2026-03")


def test_who_may_resolve_and_what_a_resolution_carries(api):
    partner, _, march = disputed_march(api)
    position = march["lines"][0]["position"]
    dispute = raise_dispute(api, partner, "2026-03", {"line_position": position, "reason": "rate"},
                            FINANCE).json()["dispute_id"]
    path_body = {"outcome": "rejected", "note": "the contract's rate"}
    problem(resolve(api, partner, "2026-03", dispute, path_body, FINANCE, None), 403, "segregation_of_duties")
    problem(resolve(api, partner, "2026-03", dispute, path_body, MANAGER, None), 403, "forbidden")
    problem(resolve(api, partner, "2026-03", dispute, {"outcome": "upheld", "note": "n"}, FINANCE_2, None),
            422, "validation_error")  # upheld names the amount
    problem(resolve(api, partner, "2026-03", dispute, {"outcome": "upheld", "note": "n", "amount": "0.00"},
                    FINANCE_2, None), 422, "validation_error")
    problem(resolve(api, partner, "2026-03", dispute, {"outcome": "upheld", "note": "n", "amount": 50},
                    FINANCE_2, None), 422, "validation_error")  # money is a string
    problem(resolve(api, partner, "2026-03", dispute, {**path_body, "amount": "10.00"}, FINANCE_2, None),
            422, "validation_error")  # a rejection books nothing
    problem(resolve(api, partner, "2026-04", dispute, path_body, FINANCE_2, None), 404, "not_found")
    problem(resolve(api, partner, "2026-03", X, path_body, FINANCE_2, None), 404, "not_found")
    assert api.get(f"/v1/commissions/disputes/{dispute}").json()["version"] == 1  # none of it wrote anything

    resolve(api, partner, "2026-03", dispute, path_body, FINANCE_2)
    assert [(d["status"], d["amount"], d["adjustment"]) for d in statement(api, partner, "2026-03")["disputes"]] == [
        ("rejected", None, None)]
    api.catch_up()
    assert api.get("/v1/audit/findings", kind="approved_by_requester").json()["items"] == []


def test_a_dispute_names_a_line_of_that_statement(api):
    partner, contract, march = disputed_march(api)
    sale(api, contract, "B", "2000.00", "2026-04-02")
    april_line = statement(api, partner, "2026-04")["lines"][0]["position"]
    problem(raise_dispute(api, partner, "2026-03", {"line_position": april_line, "reason": "r"}, expect=None),
            422, "unknown_line")
    problem(raise_dispute(api, partner, "2026-03", {"line_position": march["lines"][0]["position"], "line_no": 2,
                                                    "reason": "r"}, expect=None), 422, "unknown_line")
    problem(raise_dispute(api, X, "2026-03", {"line_position": 1, "reason": "r"}, expect=None), 404, "not_found")
    problem(raise_dispute(api, partner, "2026-Q1", {"line_position": 1, "reason": "r"}, expect=None),
            422, "validation_error")
    problem(raise_dispute(api, partner, "2026-03", {"line_position": 1, "reason": "r"}, REPORTING, None),
            403, "forbidden")
    assert raise_dispute(api, partner, "2026-04", {"line_position": april_line, "line_no": 1, "reason": "r"},
                         MANAGER).json()["line_no"] == 1


def test_raising_and_resolving_replay_with_their_idempotency_key(api):
    partner, _, march = disputed_march(api)
    body = {"line_position": march["lines"][0]["position"], "reason": "rate"}
    first = post(api, f"/v1/commissions/statements/{partner}/2026-03/disputes", body, SPECIALIST, 201,
                 **{"Idempotency-Key": "d-1"})
    again = post(api, f"/v1/commissions/statements/{partner}/2026-03/disputes", body, SPECIALIST, 201,
                 **{"Idempotency-Key": "d-1"})
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    problem(post(api, f"/v1/commissions/statements/{partner}/2026-03/disputes", {**body, "reason": "other"},
                 SPECIALIST, None, **{"Idempotency-Key": "d-1"}), 422, "idempotency_key_reused")
    dispute = first.json()["dispute_id"]
    resolution = {"outcome": "upheld", "note": "ok", "amount": "12.34"}
    path = f"/v1/commissions/statements/{partner}/2026-03/disputes/{dispute}/resolve"
    done = post(api, path, resolution, FINANCE, 200, **{"Idempotency-Key": "r-1"})
    replayed = post(api, path, resolution, FINANCE, 200, **{"Idempotency-Key": "r-1"})
    assert replayed.headers["idempotent-replayed"] == "true" and replayed.json() == done.json()
    assert len(statement(api, partner, "2026-03")["disputes"]) == 1
    booked = [line for month in {recorded_month(datetime.now(UTC))}
              for line in lines(statement(api, partner, month)) if line[0] == "adjustment"]
    assert booked == [("adjustment", None, "2026-03", None, "0.00", None, "12.34")]  # booked once


def test_a_resolution_recorded_in_a_closed_month_books_in_the_next_open_one(api, monkeypatch):
    """The log can hold a resolution recorded on a month's last day after that month's close (the
    close's event came first): the adjustment goes to the first open month, by log order."""
    partner, _, march = disputed_march(api)
    app = api.department
    dispute = raise_dispute(api, partner, "2026-03", {"line_position": march["lines"][0]["position"],
                                                      "reason": "rate"}).json()["dispute_id"]
    late_on_31_march = datetime(2026, 3, 31, 10, 0, tzinfo=UTC)  # 18:00 in Beijing, still March
    with monkeypatch.context() as clock, as_("fin-2", "finance"):
        clock.setattr(ChannelAggregate.Event, "create_timestamp", staticmethod(lambda: late_on_31_march))
        record = app.get(CommissionDispute, UUID(dispute))
        record.resolve("upheld", "agreed", "20.00")
        app.save(record)
    april = statement(api, partner, "2026-04")
    assert [(line["kind"], line["corrects_period"], line["commission"], line["dispute_id"]) for line in april["lines"]] == [
        ("adjustment", "2026-03", "20.00", dispute)]
    assert statement(api, partner, "2026-03")["disputes"][0]["adjustment"]["period"] == "2026-04"


def test_disputes_on_a_partner_of_another_kind(api):
    broker = approved_partner(api, "broker", commission_rate="0.01")
    post(api, f"/v1/partners/{broker}/deals", {"deal_id": "D-1", "amount": "50000.00", "closed_on": "2026-03-10"},
         ("erp", ("integration",)))
    deal = statement(api, broker, "2026-03")["lines"][0]
    dispute = raise_dispute(api, broker, "2026-03", {"line_position": deal["position"], "reason": "1.5 % agreed"},
                            MANAGER).json()
    assert (dispute["line_kind"], dispute["line_commission"], dispute["contract_id"]) == ("deal", "500.00", None)
    resolve(api, broker, "2026-03", dispute["dispute_id"], {"outcome": "upheld", "note": "yes", "amount": "250.00"})
    booked_in = recorded_month(datetime.now(UTC))
    assert statement(api, broker, booked_in)["total_due"] == "250.00"  # 50 000 × 0.5 %


def test_a_dispute_resolved_by_whoever_raised_it_is_a_finding(api):
    """Impossible through the domain (403 above); written behind its back, the audit finds it."""
    partner, _, march = disputed_march(api)
    app = api.department
    dispute = raise_dispute(api, partner, "2026-03", {"line_position": march["lines"][0]["position"],
                                                      "reason": "rate"}, FINANCE).json()["dispute_id"]
    with as_("fin-1", "finance"):
        record = app.get(CommissionDispute, UUID(dispute))
        record._resolved(outcome="rejected", note="mine", amount=None, resolved_by="fin-1", resolved_by_employee=None)
        app.save(record)
    history = api.get(f"/v1/commissions/disputes/{dispute}/history").json()["items"]
    api.catch_up()
    found = api.get("/v1/audit/findings", kind="approved_by_requester").json()["items"]
    assert [(f["subject_id"], f["positions"]) for f in found] == [
        (dispute, [history[0]["position"], history[1]["position"]])]
    assert "CommissionDispute.Resolved by fin-1" in found[0]["detail"]
