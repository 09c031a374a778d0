"""A contract term that ends before it starts is refused (422), whichever way it is asked for:
a draft for each partner kind, an amendment, a renewal."""

from __future__ import annotations

import psycopg

from tests.api.flows import CONTENTS, MANAGER, approved_partner, post, problem, signed_contract


def _events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_a_draft_that_ends_before_it_starts_is_a_validation_error_and_writes_nothing(api):
    for kind, partner_fields, extra in (
            ("retailer", {}, {}), ("sales_agent", {}, {}), ("enterprise_agent", {}, {"territory": "Zhejiang"}),
            ("consignee", {}, {"fee_rate": "0.01"}), ("distributor", {}, {}),
            ("direct_store", {"grade": "A"}, {})):  # brokers work without a contract
        partner = approved_partner(api, kind, **partner_fields)
        written = _events(api.database_url)
        for starts_on, ends_on in (("2026-06-01", "2026-05-31"), ("2999-12-31", "1900-01-01")):
            body = {"partner_id": partner, "starts_on": starts_on, "ends_on": ends_on,
                    "commission": {"type": "flat", "rate": "0.03"}, **CONTENTS, **extra}
            refused = problem(post(api, "/v1/contracts", body, MANAGER, None), 422, "validation_error")
            assert refused["field"] == "ends_on", refused
        assert _events(api.database_url) == written


def test_amendments_and_renewals_cannot_move_the_term_before_its_start(api):
    contract = signed_contract(api, approved_partner(api, "sales_agent"), starts_on="2026-03-01", ends_on="2026-12-31")
    written = _events(api.database_url)
    for effective_on in ("2026-02-28", "2027-01-01", "2999-12-31", "1900-01-01"):
        body = {"effective_on": effective_on, "commission": {"type": "flat", "rate": "0.02"}, "reason": "x"}
        problem(post(api, f"/v1/contracts/{contract}/amendments", body, MANAGER, None), 422, "outside_contract_term")
    for ends_on in ("2026-02-01", "2026-12-31", "1900-01-01"):
        problem(post(api, f"/v1/contracts/{contract}/renew", {"ends_on": ends_on}, MANAGER, None), 422,
                "validation_error")
    assert _events(api.database_url) == written
