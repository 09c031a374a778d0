"""Amendments and renewals on a real database: requested, previewed, approved by someone else;
the registry of contracts in force behind the exclusivity and rate rules."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest

from channel_domain.contract import Contract
from channel_domain.errors import DomainError
from tests.channel_domain.helpers import as_, refused
from tests.channel_domain.test_application import CONTENTS, partner, signed_contract

SIX = {"type": "flat", "rate": "0.06"}


def request_amendment(app, contract, effective_on="2026-02-01", commission=SIX, **fields) -> UUID:
    with as_("mgr-1", "channel_manager"):
        return UUID(app.request_amendment(contract, effective_on, commission, **fields).extra["amendment_id"])


def approve_amendment(app, contract, amendment_id) -> None:
    digest = app.preview_amendment(contract, amendment_id).digest
    with as_("gm-1", "general_manager"):
        app.approve_amendment(contract, amendment_id, digest)


# Amendments ---------------------------------------------------------------------------


def test_an_amendment_request_is_an_event_that_changes_no_terms(app):
    contract = signed_contract(app, partner(app))
    before = app.get(Contract, contract).version
    amendment_id = request_amendment(app, contract)
    record = app.get(Contract, contract)
    assert (record.version, record.amendments) == (before + 1, [])
    assert app.history(contract)[-1].type == "Contract.AmendmentRequested"
    approve_amendment(app, contract, amendment_id)
    assert app.get(Contract, contract).terms_on(date(2026, 2, 1)).highest_rate == Decimal("0.06")


def test_the_preview_is_priced_on_the_stored_ledger_and_goes_stale_when_it_moves(app):
    contract = signed_contract(app, partner(app))  # flat 3 %
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "20000.00", "2026-02-10")
        app.record_sale(contract, "O-2", "10000.00", "2026-03-05")
        app.record_return(contract, "O-1", "5000.00", "2026-03-20")
    amendment_id = request_amendment(app, contract, "2026-02-15")
    preview = app.preview_amendment(contract, amendment_id)
    # From 15 February: O-1 (10 Feb) keeps 3 %, its return in March claws back at 3 % as well;
    # O-2 (5 March) goes from 300.00 to 600.00. March booked 300.00 − 150.00 = 150.00.
    assert [(l.corrects_period, l.booked, l.would_book, l.adjustment) for l in preview.lines] == [
        ("2026-03", Decimal("150.00"), Decimal("450.00"), Decimal("300.00"))]
    with as_("erp", "integration"):
        app.record_sale(contract, "O-3", "1000.00", "2026-04-01")
    with as_("gm-1", "general_manager"), pytest.raises(DomainError) as stale:
        app.approve_amendment(contract, amendment_id, preview.digest)
    fresh = app.preview_amendment(contract, amendment_id)
    assert stale.value.code == "preview_stale" and fresh.digest not in str(stale.value.details)
    assert app.get(Contract, contract).amendments == [], "the refused approval wrote nothing"
    assert [(l.corrects_period, l.adjustment) for l in fresh.lines] == [
        ("2026-03", Decimal("300.00")), ("2026-04", Decimal("30.00"))]
    with as_("gm-1", "general_manager"):
        app.approve_amendment(contract, amendment_id, fresh.digest)
    amended = app.history(contract)[-1]
    assert (amended.type, amended.data["approved_by"], amended.data["preview_digest"]) == (
        "Contract.Amended", "gm-1", fresh.digest)
    with refused("invalid_transition"):
        app.preview_amendment(contract, amendment_id)


def test_an_earlier_approved_amendment_is_part_of_the_ledger_a_later_preview_starts_from(app):
    contract = signed_contract(app, partner(app))
    with as_("erp", "integration"):
        app.record_sale(contract, "O-1", "10000.00", "2026-03-05")
    approve_amendment(app, contract, request_amendment(app, contract, "2026-03-01", {"type": "flat", "rate": "0.04"}))
    second = request_amendment(app, contract, "2026-03-01", {"type": "flat", "rate": "0.05"})
    # March: 300.00 booked with the sale, +100.00 by the first amendment; the second adds 100.00.
    assert [(l.booked, l.would_book) for l in app.preview_amendment(contract, second).lines] == [
        (Decimal("400.00"), Decimal("500.00"))]


# Old events and snapshots ----------------------------------------------------------------


def _as_stored_before_requests(app, event, *dropped: str):
    stored = app.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    for name in dropped:
        state.pop(name)
    return stored.__class__(stored.originator_id, stored.originator_version, stored.topic,
                            json.dumps(state).encode())


def test_amended_and_renewed_events_recorded_before_requests_still_load(app):
    contract = signed_contract(app, partner(app))
    approve_amendment(app, contract, request_amendment(app, contract))
    with as_("mgr-1", "channel_manager"):
        renewal_id = app.request_renewal(contract, "2027-12-31").extra["renewal_id"]
    with as_("gm-1", "general_manager"):
        app.approve_renewal(contract, renewal_id)
    events = list(app.events.get(contract))
    amended = next(e for e in events if isinstance(e, Contract.Amended))
    renewed = next(e for e in events if isinstance(e, Contract.Renewed))

    old_amended = app.mapper.to_domain_event(
        _as_stored_before_requests(app, amended, "amendment_id", "approved_by", "preview_digest"))
    old_renewed = app.mapper.to_domain_event(_as_stored_before_requests(app, renewed, "renewal_id", "approved_by"))
    assert (old_amended.amendment_id, old_amended.approved_by, old_amended.preview_digest) == (None, None, None)
    assert (old_renewed.renewal_id, old_renewed.approved_by) == (None, None)

    # A history holding them replays to the same terms and end.
    replayed = None
    for event in events:
        replayed = {id(amended): old_amended, id(renewed): old_renewed}.get(id(event), event).mutate(replayed)
    assert replayed.amendments == [[date(2026, 2, 1), SIX]]
    assert replayed.ends_on == date(2027, 12, 31)


def test_a_snapshot_from_before_requests_is_upcast(app):
    contract = signed_contract(app, partner(app))
    record = app.get(Contract, contract)
    old = Contract.Snapshot.take(record)
    old.state["class_version"] = 2
    del old.state["amendment_requests"], old.state["renewal_requests"]
    app.snapshots.put([old])
    app.records.forget(contract)
    loaded = app.get(Contract, contract)
    assert (loaded.amendment_requests, loaded.renewal_requests) == ({}, {})


# The sales-agent rate, over the days in force ------------------------------------------


def test_a_sales_agent_rate_is_held_against_every_enterprise_agent_rate_in_force_on_its_days(app):
    enterprise = signed_contract(app, partner(app, "enterprise_agent"), territory="Zhejiang",
                                 commission={"type": "flat", "rate": "0.03"})
    # The enterprise agent earns 3 % until June, then 5 %: its terms on its last day are 5 %.
    approve_amendment(app, enterprise,
                      request_amendment(app, enterprise, "2026-07-01", {"type": "flat", "rate": "0.05"}))
    agent = partner(app)
    with as_("mgr-1", "channel_manager"):
        with refused("rate_justification_required"):  # 4 % is not below the 3 % in force until June
            app.draft_contract(partner_id=agent, starts_on="2026-03-01", ends_on="2026-12-31",
                               commission={"type": "flat", "rate": "0.04"}, **CONTENTS)
        # Over July to December only the 5 % is in force: 4 % is below it.
        later = app.draft_contract(partner_id=agent, starts_on="2026-07-01", ends_on="2026-12-31",
                                   commission={"type": "flat", "rate": "0.04"}, **CONTENTS)
    assert app.get(Contract, later.id).status == "draft"
    # A cut to 2 % still waiting for approval is not in force: 2.5 % stays below the 3 %.
    request_amendment(app, enterprise, "2026-01-01", {"type": "flat", "rate": "0.02"})
    with as_("mgr-1", "channel_manager"):
        app.draft_contract(partner_id=agent, starts_on="2026-03-01", ends_on="2026-12-31",
                           commission={"type": "flat", "rate": "0.025"}, **CONTENTS)


def test_an_amended_sales_agent_rate_is_held_against_the_days_it_applies_to(app):
    enterprise = signed_contract(app, partner(app, "enterprise_agent"), territory="Zhejiang",
                                 commission={"type": "flat", "rate": "0.03"})
    with as_("mgr-1", "channel_manager"):
        app.terminate_contract(enterprise, "2026-07-01", "region reorganised")
    agent = signed_contract(app, partner(app), commission={"type": "flat", "rate": "0.02"})
    with as_("mgr-1", "channel_manager"), refused("rate_justification_required"):
        app.request_amendment(agent, "2026-06-01", {"type": "flat", "rate": "0.035"})
    amendment_id = request_amendment(app, agent, "2026-07-01", {"type": "flat", "rate": "0.035"})
    approve_amendment(app, agent, amendment_id)  # the 3 % ended on 30 June
    assert app.get(Contract, agent).terms_on(date(2026, 7, 1)).highest_rate == Decimal("0.035")


def test_the_registry_holds_every_version_of_the_terms_as_the_events_say(app, database_url):
    enterprise = signed_contract(app, partner(app, "enterprise_agent"), territory="Zhejiang",
                                 commission={"type": "tiered", "tiers": [{"up_to": "1000.00", "rate": "0.02"},
                                                                        {"rate": "0.04"}]})
    approve_amendment(app, enterprise, request_amendment(app, enterprise, "2026-05-01"))
    approve_amendment(app, enterprise, request_amendment(app, enterprise, "2026-09-01",
                                                         {"type": "flat", "rate": "0.07"}))
    approve_amendment(app, enterprise, request_amendment(app, enterprise, "2026-09-01",
                                                         {"type": "flat", "rate": "0.08"}))
    with as_("mgr-1", "channel_manager"):
        app.terminate_contract(enterprise, "2026-11-01", "moved")
    expected = [
        ("[2026-01-01,2026-05-01)", Decimal("0.02"), Decimal("0.04")),
        ("[2026-05-01,2026-09-01)", Decimal("0.06"), Decimal("0.06")),
        ("[2026-09-01,2026-11-01)", Decimal("0.08"), Decimal("0.08")),  # the later of two on one day
    ]
    query = ("SELECT during::text, lowest_rate, highest_rate FROM contract_terms_in_force"
             " WHERE contract_id = %s ORDER BY during")
    with psycopg.connect(database_url) as conn:
        assert conn.execute(query, (enterprise,)).fetchall() == expected
        # The migration's backfill, from the events alone, reaches the same rows.
        conn.execute("UPDATE contracts_in_force SET territory = NULL")
        conn.execute("DELETE FROM contract_terms_in_force")
        conn.execute("SELECT rebuild_contract_terms_in_force()")
        assert conn.execute(query, (enterprise,)).fetchall() == expected
        assert conn.execute("SELECT territory FROM contracts_in_force").fetchall() == [("Zhejiang",)]


# One enterprise agent per region a day ----------------------------------------------------


def _approved(app, partner_id, starts_on, ends_on, territory):
    with as_("mgr-1", "channel_manager"):
        draft = app.draft_contract(partner_id=partner_id, starts_on=starts_on, ends_on=ends_on, territory=territory,
                                   commission={"type": "flat", "rate": "0.03"}, **CONTENTS)
        app.submit_contract(draft.id)
    with as_("gm-1", "general_manager"):
        app.approve_contract(draft.id)
    return draft.id


def test_two_enterprise_agents_are_never_in_force_for_one_region_on_one_day(app):
    first = signed_contract(app, partner(app, "enterprise_agent"), "2026-01-01", "2026-06-30", territory="Zhejiang")
    signed_contract(app, partner(app, "enterprise_agent"), "2026-01-01", "2026-12-31", territory="Jiangsu")
    second_agent = partner(app, "enterprise_agent")
    overlapping = _approved(app, second_agent, "2026-06-01", "2026-12-31", "Zhejiang")
    with as_("mgr-1", "channel_manager"), refused("region_taken"):
        app.sign_contract(overlapping, "2026-05-20")
    assert app.get(Contract, overlapping).status == "approved", "the refused signature wrote nothing"

    # Terminating the first from 1 June frees those days.
    with as_("mgr-1", "channel_manager"):
        app.terminate_contract(first, "2026-06-01", "agent retired")
        app.sign_contract(overlapping, "2026-05-20")

    # A renewal into the other's days is refused when approved, not when requested.
    with as_("mgr-1", "channel_manager"):
        renewal_id = app.request_renewal(overlapping, "2027-06-30").extra["renewal_id"]
    third = signed_contract(app, partner(app, "enterprise_agent"), "2027-01-01", "2027-12-31", territory="Zhejiang")
    with as_("gm-1", "general_manager"), refused("region_taken"):
        app.approve_renewal(overlapping, renewal_id)
    assert app.get(Contract, overlapping).ends_on == date(2026, 12, 31)
    assert app.get(Contract, third).status == "signed"


def test_a_snapshot_holds_the_requests_still_pending(app):
    contract = signed_contract(app, partner(app))
    amendment_id = request_amendment(app, contract, "2026-04-01")
    app.snapshots.put([Contract.Snapshot.take(app.get(Contract, contract))])
    app.records.forget(contract)
    approve_amendment(app, contract, amendment_id)  # from the snapshot
    assert app.get(Contract, contract).terms_on(date(2026, 4, 1)).highest_rate == Decimal("0.06")
