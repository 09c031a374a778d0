"""The `reporting` schema for BI tools and `channel-domain reporting-role NAME` (api.md, "For BI
tools that read PostgreSQL directly"): every view documented by COMMENTs; a role made by the
command, connected to as a BI tool would, reads every view — with data recorded over HTTP, figures
worked by hand — and nothing else: not the events, tokens, keys or webhooks, no write, no CREATE,
and not another database's views on the same cluster. Views added later, a database copied from
another, and rebuilds keep it so.

Every test iterates over whatever views exist in `reporting`, so a view added later is held to
the same rules without touching this file. Roles are cluster-wide: each test names its own and
drops them, with the groups of its databases, at the end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from typer.testing import CliRunner

from api.cli import app as cli
from channel_domain.company_time import local_date, recorded_month, today as company_today
from channel_domain.store.database import scratch_database, with_database_name
from channel_domain.store.migrations import MIGRATIONS_DIR, migrate
from tests.api.flows import (
    ERP, FINANCE, FINANCE_2, GM, HR, MANAGER, SPECIALIST, approved_partner, post, signed_contract,
)
from tests.api.test_commissions import with_account
from tests.channel_domain.store.test_rebuild_keeps_settings import record_and_project

PASSWORD = "Reads-only-1"
# Never to be read by a reporting role (docs/read-models.md: what the schema leaves out, and why).
SECRET_TABLES = ("events", "audit_events", "api_tokens", "personal_data_keys", "webhook_subscriptions",
                 "webhook_lines", "webhook_changes", "command_outcomes", "keyed_import_lines", "snapshots",
                 "nats_relay_checkpoints", "event_seals", "projection_failures", "selling_gates", "audit_sessions")
# Views that read one of those anyway, and the one thing they take from it.
READS_A_SECRET_TABLE = {
    ("read_model_freshness", "events"): "the log's head: max(position)",
    ("read_model_freshness", "projection_failures"): "whether a read model is stopped, since when and where",
    ("partner_inactive_spans", "audit_events"): "partners' suspension and termination days",
}


# --- helpers ------------------------------------------------------------------------------------

class Cleanup:
    """Roles made by a test and the databases they hold privileges in, undone at its end."""

    def __init__(self) -> None:
        self.roles: list[str] = []
        self.databases: list[str] = []

    def role(self, prefix: str = "bi") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.roles.append(name)
        return name

    def database(self, url: str) -> str:
        """Note a database whose reporting group the test may make; returns the group's name."""
        self.databases.append(url)
        with psycopg.connect(url) as conn:
            group = conn.execute("SELECT reporting_group_name()").fetchone()[0]
        self.roles.append(group)
        return group


@pytest.fixture
def cleanup(server_url: str) -> Iterator[Cleanup]:
    made = Cleanup()
    yield made
    admin = with_database_name(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        existing = [row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY (%s)",
                                                   (made.roles,))]
    if not existing:
        return
    everyone = sql.SQL(", ").join(map(sql.Identifier, existing))
    for url in made.databases:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(everyone))
        except psycopg.OperationalError:
            pass  # dropped already, and its grants with it
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(everyone))


def as_role(url: str, role: str, password: str = PASSWORD) -> psycopg.Connection:
    """Connected as a BI tool would be: the role's name and password, nothing else."""
    return psycopg.connect(make_conninfo(url, user=role, password=password), autocommit=True)


def reporting_role(url: str, monkeypatch, name: str, *extra: str, password: str | None = PASSWORD, expect: int = 0):
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", url)
    monkeypatch.setenv("BI_PASSWORD", password or "")
    args = ["reporting-role", name, *extra, *(("--password-env", "BI_PASSWORD") if password else ())]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == expect, result.output
    return result.output


def reporting_views(url: str) -> list[str]:
    """Every view of the schema, as the database's owner sees it."""
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'reporting' ORDER BY 1")]


def read_all(conn: psycopg.Connection, view: str) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as curs:
        return curs.execute(sql.SQL("SELECT * FROM reporting.{}").format(sql.Identifier(view))).fetchall()


def refused(conn: psycopg.Connection, statement: str, error: type = psycopg.errors.InsufficientPrivilege) -> None:
    with pytest.raises(error):
        conn.execute(statement)


def scram_matches(verifier: str, password: str) -> bool:
    """RFC 5802 / 7677: the stored key of a SCRAM-SHA-256 verifier is H(HMAC(salted, "Client Key"))."""
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return method == "SCRAM-SHA-256" and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def role_state(url: str, name: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT r.rolcanlogin, r.rolsuper, a.rolpassword,"
            " ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            "       WHERE m.member = r.oid ORDER BY 1)"
            " FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = %s", (name,)).fetchone()


# --- the schema ---------------------------------------------------------------------------------

def test_every_view_and_every_column_of_the_reporting_schema_has_a_comment(database_url):
    with psycopg.connect(database_url) as conn:
        kinds = conn.execute("SELECT c.relname, c.relkind FROM pg_class c"
                             " WHERE c.relnamespace = 'reporting'::regnamespace ORDER BY 1").fetchall()
        missing = [row[0] for row in conn.execute(
            "SELECT format('%s.%s', c.relname, a.attname) FROM pg_class c"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " WHERE c.relnamespace = 'reporting'::regnamespace"
            "   AND coalesce(trim(col_description(c.oid, a.attnum)), '') = ''"
            " UNION ALL SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'reporting'::regnamespace"
            "   AND coalesce(trim(obj_description(c.oid, 'pg_class')), '') = '' ORDER BY 1")]
        functions = conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'reporting'::regnamespace"
                                 ).fetchone()[0]
    assert len(kinds) >= 20  # today's read models (docs/read-models.md); others are added later
    assert {kind for _, kind in kinds} == {"v"}, "the reporting schema holds views only"
    assert functions == 0
    assert missing == [], f"views and columns without a COMMENT: {missing}"



def test_an_account_too_short_to_mask_is_not_shown_as_its_own_last_4(database_url):
    """The API shows `****` for such an account; the views would have shown all of it."""
    partner, event = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000e1"
    with psycopg.connect(database_url) as conn:  # rows as the read models would hold them
        for position, account in ((1, "6222 0001"), (2, "4 21"), (3, None)):
            conn.execute("INSERT INTO commission_housing_subsidies (position, event_id, partner_id, period, step,"
                         " amount, account, recorded_at) VALUES (%s, gen_random_uuid(), %s, '2026-03', 'prepared',"
                         " 800, %s, now())", (position, partner, account))
            conn.execute("INSERT INTO report_payouts (partner_id, period, kind, amount, account, status, position,"
                         " event_id) VALUES (%s, %s, 'commission', 100, %s, 'prepared', %s, %s)",
                         (partner, f"2026-0{position}", account, position, event))
        subsidies = conn.execute("SELECT account_last4 FROM reporting.commission_housing_subsidies"
                                 " ORDER BY event_position").fetchall()
        register = conn.execute("SELECT account_last4 FROM reporting.payout_register ORDER BY period").fetchall()
        conn.rollback()
    assert subsidies == register == [("0001",), (None,), (None,)]

def test_no_reporting_view_reads_tokens_keys_webhooks_or_the_log_beyond_what_it_must(database_url):
    """Through views over views, down to the tables: the secrets stay out, except the named few."""
    with psycopg.connect(database_url) as conn:
        reads = conn.execute(
            "WITH RECURSIVE reads (view, relation) AS ("
            "  SELECT v.oid, d.refobjid FROM pg_class v JOIN pg_rewrite r ON r.ev_class = v.oid"
            "  JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass"
            "   AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid"
            "  WHERE v.relnamespace = 'reporting'::regnamespace AND v.relkind = 'v'"
            "  UNION"
            "  SELECT reads.view, d.refobjid FROM reads JOIN pg_rewrite r ON r.ev_class = reads.relation"
            "  JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass"
            "   AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> reads.relation)"
            " SELECT DISTINCT v.relname, t.relname FROM reads JOIN pg_class v ON v.oid = reads.view"
            " JOIN pg_class t ON t.oid = reads.relation AND t.relkind IN ('r', 'p')").fetchall()
    assert ("commission_statements", "commission_lines") in reads  # the walk goes through public's view
    assert {pair for pair in reads if pair[1] in SECRET_TABLES} == set(READS_A_SECRET_TABLE)


# --- the role, as a BI tool uses it -------------------------------------------------------------

def record_a_month(api) -> dict[str, str]:
    """One of everything the views show, March 2026."""
    rep = post(api, "/v1/employees", {"name": "Li Na", "role": "sales_rep", "hired_on": "2026-01-05",
                                      "login": "li.na"}, HR, 201).json()["id"]
    retailer = post(api, "/v1/partners", {"kind": "retailer", "name": "Corner Shop", "recruited_by": rep},
                    SPECIALIST, 201).json()["id"]
    post(api, f"/v1/partners/{retailer}/review", {"decision": "approve"}, MANAGER)
    contract = signed_contract(api, retailer)  # flat 3 %, 2026-01-01 to 2026-12-31
    post(api, f"/v1/contracts/{contract}/sales", {"order_id": "R-1", "amount": "10000.00", "sold_on": "2026-03-05",
                                                  "employee_id": rep, "product": "router", "region": "East"}, ERP)
    post(api, f"/v1/contracts/{contract}/returns", {"order_id": "R-1", "amount": "2000.00",
                                                    "returned_on": "2026-03-20"}, ERP)
    with_account(api, retailer)  # "6222 0001"
    post(api, f"/v1/partners/{retailer}/payouts", {"period": "2026-03", "amount": "240.00"}, SPECIALIST)
    post(api, f"/v1/partners/{retailer}/payouts/2026-03/verify", None, FINANCE)
    post(api, f"/v1/partners/{retailer}/payouts/2026-03/approve", None, GM)
    post(api, f"/v1/partners/{retailer}/payouts/2026-03/pay", {"paid_on": "2026-04-10"}, FINANCE_2)
    post(api, f"/v1/partners/{retailer}/housing-subsidies", {"period": "2026-03", "amount": "800.00"}, SPECIALIST)
    post(api, f"/v1/partners/{retailer}/visits", {"visited_on": "2026-03-03", "employee_id": rep}, SPECIALIST)
    post(api, f"/v1/partners/{retailer}/trainings", {"held_on": "2026-03-10", "topic": "Pricing", "trainer_id": rep,
                                                     "attendees": 10, "passed": 8}, SPECIALIST)
    target = post(api, "/v1/targets", {"assignee_type": "employee", "assignee_id": rep, "period": "2026-03",
                                       "amount": "10000.00", "kpis": {"sales_revenue": "0.6", "new_partners": {
                                           "weight": "0.4", "goal": "2"}}}, MANAGER, 201).json()["id"]
    consignee = approved_partner(api, "consignee")
    consigned = signed_contract(api, consignee, commission={"type": "flat", "rate": "0.10"}, fee_rate="0.02")
    post(api, f"/v1/contracts/{consigned}/sales", {"order_id": "C-1", "amount": "10000.00", "sold_on": "2026-03-05"},
         ERP)
    post(api, f"/v1/partners/{consignee}/remittances", {"period": "2026-03", "amount": "5000.00",
                                                        "received_on": "2026-04-08"}, FINANCE)
    post(api, f"/v1/partners/{consignee}/inventory-reports", {"as_of": "2026-03-31", "lines": [
        {"product": "P1", "opening": 0, "received": 100, "sold": 40, "closing": 60}]}, SPECIALIST)
    post(api, f"/v1/partners/{consignee}/suspend", {"reason": "late remittance", "on": "2026-04-16"}, MANAGER)
    post(api, f"/v1/partners/{retailer}/evaluations", {"period": "2026-Q1", "scores": {"sales": "40", "service": "70"}},
         MANAGER)
    plan = post(api, f"/v1/partners/{retailer}/corrective-plans", {"actions": ["weekly visits", "stock review"],
                                                                   "due_on": "2026-06-30"}, MANAGER).json()["plan_id"]
    # March closes; then a dispute of its sale line, upheld, books its correction in an open month.
    api.catch_up()
    post(api, "/v1/commissions/periods/2026-03/close", None, FINANCE, 201)
    sale_line = next(line for line in api.get(f"/v1/commissions/statements/{retailer}/2026-03").json()["lines"]
                     if line["kind"] == "sale")
    dispute = post(api, f"/v1/commissions/statements/{retailer}/2026-03/disputes",
                   {"line_position": sale_line["position"], "line_no": 1, "reason": "rate should be 3.5 %"},
                   SPECIALIST, 201).json()["dispute_id"]
    post(api, f"/v1/commissions/statements/{retailer}/2026-03/disputes/{dispute}/resolve",
         {"outcome": "upheld", "note": "agreed", "amount": "50.00"}, FINANCE)
    api.catch_up()
    return {"rep": rep, "retailer": retailer, "contract": contract, "target": target, "consignee": consignee,
            "plan": plan, "dispute": dispute, "sale_position": str(sale_line["position"])}


def by_position(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: row["event_position"])


def assert_issue_16_views(read: dict[str, list[dict]], ids: dict[str, str]) -> None:
    """Migration 0030's views (issue 16's read models), figures worked by hand from `record_a_month`."""
    retailer, consignee, rep = uuid.UUID(ids["retailer"]), uuid.UUID(ids["consignee"]), uuid.UUID(ids["rep"])
    (dispute,) = read["commission_disputes"]
    booked_in = recorded_month(dispute["resolved_at"])  # an upheld dispute books in the month it is resolved in

    # March closed by fin-1; the statements say so, and the retailer's correction of +50 is due where booked.
    (closed,) = read["commission_periods"]
    assert (closed["period"], closed["period_month"], closed["closes_after"], closed["closed_by"],
            closed["closed_on"]) == ("2026-03", date(2026, 3, 1), None, "fin-1", local_date(closed["closed_at"]))
    statements = {(row["partner_id"], row["period"]): row for row in read["commission_statements"]}
    assert [(row["period_status"], row["closed_at"], row["adjusted_sales"]) for row in (
        statements[retailer, "2026-03"], statements[consignee, "2026-03"])] == [
        ("closed", closed["closed_at"], Decimal("0.00"))] * 2
    later = statements[retailer, booked_in]
    assert (later["period_status"], later["closed_at"], later["commission"], later["adjustments"],
            later["total_due"]) == ("open", None, Decimal("0.00"), Decimal("50.00"), Decimal("50.00"))

    # The dispute, followed from the line (10 000 at 3 % = 300) to the adjustment line the ledger booked.
    adjustment = next(row for row in read["commission_lines"] if row["kind"] == "adjustment")
    assert (dispute["dispute_id"], dispute["partner_id"], dispute["period"], dispute["line_event_position"],
            dispute["line_no"], dispute["line_kind"], dispute["line_order_id"], dispute["line_amount"],
            dispute["line_commission"], dispute["raised_by"], dispute["status"], dispute["resolved_by"],
            dispute["note"], dispute["amount"], dispute["adjustment_period"], dispute["adjustment_line_no"],
            dispute["adjustment_commission"], dispute["adjustment_corrects_period"]) == (
        uuid.UUID(ids["dispute"]), retailer, "2026-03", int(ids["sale_position"]), 1, "sale", "R-1",
        Decimal("10000.00"), Decimal("300.00"), "spec-1", "upheld", "fin-1", "agreed", Decimal("50.00"), booked_in,
        1, Decimal("50.00"), "2026-03")
    assert (dispute["resolution_event_position"], dispute["adjustment_period"]) == (
        adjustment["event_position"], adjustment["period"])
    assert (adjustment["dispute_id"], adjustment["moved_kind"]) == (uuid.UUID(ids["dispute"]), None)

    # Sales lines: 10 000 sold and 2 000 returned by the retailer (credited to li.na, product and region
    # carried to the return), 10 000 by the consignee: 18 000 net in March.
    lines = by_position(read["sales_lines"])
    assert [(row["kind"], row["partner_id"], row["partner_name"], row["partner_kind"], row["product"], row["region"],
             row["employee_login"], row["period"], row["amount"], row["net_amount"]) for row in lines] == [
        ("sale", retailer, "Corner Shop", "retailer", "router", "East", "li.na", "2026-03", Decimal("10000.00"),
         Decimal("10000.00")),
        ("return", retailer, "Corner Shop", "retailer", "router", "East", "li.na", "2026-03", Decimal("2000.00"),
         Decimal("-2000.00")),
        ("sale", consignee, lines[2]["partner_name"], "consignee", None, None, None, "2026-03", Decimal("10000.00"),
         Decimal("10000.00"))]
    assert sum(row["net_amount"] for row in lines) == Decimal("18000.00")
    months = {(row["dimension"], row["key"]): row for row in read["sales_months"]}
    assert {(row["period"], row["period_month"]) for row in read["sales_months"]} == {("2026-03", date(2026, 3, 1))}
    assert [(row["gross_sales"], row["returns"], row["net_sales"], row["orders"], row["partner_id"]) for row in (
        months["partner", str(retailer)], months["partner", str(consignee)])] == [
        (Decimal("10000.00"), Decimal("2000.00"), Decimal("8000.00"), 1, retailer),
        (Decimal("10000.00"), Decimal("0.00"), Decimal("10000.00"), 1, consignee)]
    assert [(row["employee_id"], row["net_sales"]) for row in (months["employee", str(rep)],
                                                             months["employee", None])] == [
        (rep, Decimal("8000.00")), (None, Decimal("10000.00"))]
    assert sum(row["net_sales"] for row in read["sales_months"] if row["dimension"] == "region") == Decimal("18000.00")

    # The payout register: 240 prepared, verified, approved and paid by four people; the account masked.
    register = {(row["partner_id"], row["kind"]): row for row in read["payout_register"]}
    paid = register[retailer, "commission"]
    assert (paid["partner_name"], paid["period"], paid["period_month"], paid["amount"], paid["account_last4"],
            paid["status"], paid["prepared_by"], paid["verified_by"], paid["approved_by"], paid["paid_by"],
            paid["paid_on"]) == ("Corner Shop", "2026-03", date(2026, 3, 1), Decimal("240.00"), "0001", "paid",
                                 "spec-1", "fin-1", "gm-1", "fin-2", date(2026, 4, 10))
    subsidy = register[retailer, "housing_subsidy"]
    assert (subsidy["amount"], subsidy["account_last4"], subsidy["status"], subsidy["verified_by"]) == (
        Decimal("800.00"), "0001", "prepared", None)
    assert not any("6222" in str(value) for row in read["payout_register"] for value in row.values())

    # The consignee's life: applied and approved today, activated by its contract signed on 1 January,
    # suspended from 16 April; a status never holds from before the one it follows (recorded today).
    life = [row for row in by_position(read["partner_transitions"]) if row["partner_id"] == consignee]
    approved_on = life[1]["recorded_on"]
    assert [(row["transition"], row["status"], row["partner_kind"], row["effective_on"]) for row in life] == [
        ("applied", "applied", "consignee", life[0]["recorded_on"]),
        ("approved", "approved", "consignee", approved_on),
        ("activated", "active", "consignee", max(date(2026, 1, 1), approved_on)),
        ("suspended", "suspended", "consignee", max(date(2026, 4, 16), approved_on))]
    assert [row["recruited_by"] for row in read["partner_transitions"] if row["partner_id"] == retailer][:1] == [rep]
    assert [(row["partner_id"], row["product"], row["report_date"], row["opening"], row["received"], row["sold"],
             row["closing"], row["correction"]) for row in read["inventory_lines"]] == [
        (consignee, "P1", date(2026, 3, 31), 0, 100, 40, 60, False)]

    # Q1 evaluation: (40 + 70) / 2 = 55, poor, addressed by the plan recorded just after it.
    (evaluation,) = read["partner_evaluations"]
    assert (evaluation["partner_id"], evaluation["partner_name"], evaluation["period"], evaluation["starts_on"],
            evaluation["ends_on"], evaluation["kpis"], evaluation["score_total"], evaluation["average"],
            evaluation["poor"], evaluation["addressed"], evaluation["respond_by"]) == (
        retailer, "Corner Shop", "2026-Q1", date(2026, 1, 1), date(2026, 3, 31), 2, Decimal("110"),
        Decimal("55.00"), True, True, local_date(evaluation["recorded_at"] + timedelta(days=30)))
    assert sorted((row["kpi"], row["score"]) for row in read["partner_evaluation_scores"]) == [
        ("sales", Decimal("40")), ("service", Decimal("70"))]
    assert [(row["plan_id"], row["partner_id"], row["actions"], row["action_count"], row["due_on"], row["status"],
             row["closed_at"]) for row in read["corrective_plans"]] == [
        (uuid.UUID(ids["plan"]), retailer, ["weekly visits", "stock review"], 2, date(2026, 6, 30), "open", None)]

    # Record lists: records as they stand, and no employee's name in any form.
    partners = {row["partner_id"]: row for row in read["partner_list"]}
    assert [(partners[p]["status"], partners[p]["kind"], partners[p]["recruited_by"])
            for p in (retailer, consignee)] == [("active", "retailer", rep), ("suspended", "consignee", None)]
    assert partners[retailer]["name"] == "Corner Shop"
    (contract,) = [row for row in read["contract_list"] if row["contract_id"] == uuid.UUID(ids["contract"])]
    expired = company_today() > date(2026, 12, 31)  # the API's rule: signed and past its end, read today
    assert (contract["status"], contract["partner_id"], contract["last_day_in_force"], contract["terms_type"],
            contract["fee_rate"]) == ("expired" if expired else "signed", retailer, date(2026, 12, 31), "flat", None)
    (employee,) = read["employee_list"]
    assert (employee["employee_id"], employee["role"], employee["hired_on"], employee["login"],
            employee["personal_data_erased"]) == (rep, "sales_rep", date(2026, 1, 5), "li.na", False)
    assert not [column for column in employee if "name" in column]
    assert not any("Li Na" in str(value) or str(value).startswith("pii:") for view in read.values() for row in view
                   for value in row.values())
    (target,) = read["target_list"]
    assert (target["target_id"], target["status"], target["period"], target["amount"], target["kpis"]) == (
        uuid.UUID(ids["target"]), "open", "2026-03", Decimal("10000.00"),
        {"sales_revenue": "0.6", "new_partners": "0.4"})


def test_a_reporting_role_reads_every_view_with_data_and_nothing_else(api, database_url, monkeypatch, cleanup):
    ids = record_a_month(api)
    name = cleanup.role()
    group = cleanup.database(database_url)

    output = reporting_role(database_url, monkeypatch, name)

    views = reporting_views(database_url)
    params = conninfo_to_dict(database_url)
    host = params.get("host") or "localhost"
    host = "localhost" if host.startswith("/") else host
    assert f"role {name}: created; LOGIN, member of {group}" in output
    assert f"SELECT on its {len(views)} views ({len(views)} granted now)" in output
    assert "password: set" in output
    assert f"postgresql://{name}@{host}:{params.get('port', '5432')}/{params['dbname']}" in output
    assert f"postgresql+psycopg2://{name}:PASSWORD@{host}" in output
    login, superuser, verifier, groups = role_state(database_url, name)
    assert (login, superuser, groups) == (True, False, [group])
    assert scram_matches(verifier, PASSWORD) and not scram_matches(verifier, "guess")

    with as_role(database_url, name) as bi:
        # The role sees the same list of views as the owner, and every one of them has rows.
        assert [row[0] for row in bi.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'reporting' ORDER BY 1")] == views
        read = {view: read_all(bi, view) for view in views}
        assert [view for view, rows in read.items() if not rows] == []

        # Figures worked by hand: 10 000 at 3 % = 300, less 2 000 returned at 3 % = 60 → 240 due.
        march = {row["partner_id"]: row for row in read["commission_statements"] if row["period"] == "2026-03"}
        retail = march[uuid.UUID(ids["retailer"])]
        assert (retail["period"], retail["period_month"], retail["gross_sales"], retail["returns"],
                retail["net_sales"], retail["commission"], retail["total_due"], retail["fees"],
                retail["remittance_due_on"]) == (
            "2026-03", date(2026, 3, 1), Decimal("10000.00"), Decimal("2000.00"), Decimal("8000.00"),
            Decimal("240.00"), Decimal("240.00"), None, None)
        # Consignee: 10 000 − 10 % commission 1 000 − 2 % fees 200 = 8 800 owed, 5 000 remitted by 15 April.
        consigned = march[uuid.UUID(ids["consignee"])]
        assert (consigned["fees"], consigned["remittance_due"], consigned["remitted"],
                consigned["remittance_outstanding"], consigned["total_due"], consigned["remittance_due_on"]) == (
            Decimal("200.00"), Decimal("8800.00"), Decimal("5000.00"), Decimal("3800.00"), Decimal("0.00"),
            date(2026, 4, 15))
        assert sorted((row["kind"], row["amount"], row["rate"], row["commission"]) for row in read["commission_lines"]
                      if row["partner_id"] == uuid.UUID(ids["retailer"])) == [
            ("adjustment", Decimal("0.00"), None, Decimal("50.00")),  # the dispute upheld
            ("return", Decimal("-2000.00"), Decimal("0.03"), Decimal("-60.00")),
            ("sale", Decimal("10000.00"), Decimal("0.03"), Decimal("300.00"))]
        assert [(row["step"], row["amount"], row["total_due"]) for row in by_position(read["commission_payouts"])] == [
            ("prepared", Decimal("240.00"), Decimal("240.00")), ("verified", None, None), ("approved", None, None),
            ("paid", None, None)]
        assert [(row["step"], row["amount"], row["account_last4"]) for row in read["commission_housing_subsidies"]
                ] == [("prepared", Decimal("800.00"), "0001")]
        assert [(row["amount"], row["received_on"], row["due_on"]) for row in read["commission_remittances"]] == [
            (Decimal("5000.00"), date(2026, 4, 8), date(2026, 4, 15))]
        assert {(row["contract_id"], row["starts_on"], row["ends_on"]) for row in read["contracts_in_force"]} >= {
            (uuid.UUID(ids["contract"]), date(2026, 1, 1), date(2026, 12, 31))}
        assert [(row["partner_id"], row["from_on"], row["until_on"]) for row in read["partner_inactive_spans"]] == [
            (uuid.UUID(ids["consignee"]), date(2026, 4, 16), None)]
        assert sorted((row["kpi"], row["weight"], row["computed"], row["goal"]) for row in read["target_kpis"]) == [
            ("new_partners", Decimal("0.4"), True, Decimal("2")), ("sales_revenue", Decimal("0.6"), True, None)]
        assert [(row["login"], row["employee_id"]) for row in read["employee_logins"]] == [
            ("li.na", uuid.UUID(ids["rep"]))]
        assert [(row["attendees"], row["passed"]) for row in read["target_trainings"]] == [(10, 8)]
        assert {row["lag_events"] for row in read["read_model_freshness"]} == {0}
        assert bi.execute("SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns"
                          " WHERE table_schema = 'reporting' AND table_name = 'commission_statements'"
                          " AND column_name = 'total_due'").fetchone() == ("numeric", 18, 2)

        assert_issue_16_views(read, ids)

        # Nothing else: not the tables under the views, nor the secrets.
        for table in (*SECRET_TABLES, "commission_lines", "partner_orders", "targets", "audit_findings"):
            refused(bi, f"SELECT 1 FROM public.{table} LIMIT 1")
        # Sessions are read-only by default (even a temporary table, which PUBLIC may make, is refused);
        # with that turned off, the privileges still refuse every write.
        refused(bi, "CREATE TEMPORARY TABLE bi_scratch (n int)", psycopg.errors.ReadOnlySqlTransaction)
        bi.execute("SET default_transaction_read_only = off")
        refused(bi, "INSERT INTO reporting.employee_logins VALUES ('x', gen_random_uuid())")
        refused(bi, "DELETE FROM reporting.partner_orders")
        refused(bi, "UPDATE reporting.targets SET status = 'closed'")
        refused(bi, "TRUNCATE public.commission_lines")
        refused(bi, "CREATE TABLE public.bi_scratch (n int)")
        refused(bi, "CREATE VIEW reporting.bi_scratch AS SELECT 1 AS n")
        refused(bi, "CREATE SCHEMA bi_scratch")
        bi.execute("SET search_path = public")  # else its bare table names find the reporting views first
        refused(bi, "SELECT rebuild_contract_terms_in_force()")  # runs as the caller: no write either
        refused(bi, "SELECT public.reporting_grant_access()")


def test_running_it_again_updates_the_role_and_keeps_its_password(database_url, monkeypatch, cleanup):
    name = cleanup.role()
    group = cleanup.database(database_url)
    reporting_role(database_url, monkeypatch, name)
    first = role_state(database_url, name)

    output = reporting_role(database_url, monkeypatch, name, password=None)

    assert f"role {name}: updated" in output and "(0 granted now)" in output and "password: unchanged" in output
    assert role_state(database_url, name) == first
    output = reporting_role(database_url, monkeypatch, name, password="Changed-2")
    assert "password: set" in output
    assert scram_matches(role_state(database_url, name)[2], "Changed-2")
    assert role_state(database_url, name)[3] == [group]


def test_without_a_password_the_role_is_made_and_the_output_says_how_to_set_one(database_url, monkeypatch, cleanup):
    name = cleanup.role()
    cleanup.database(database_url)

    output = reporting_role(database_url, monkeypatch, name, password=None)

    assert "password: none yet; set one with: channel-domain reporting-role" in output
    assert role_state(database_url, name)[2] is None
    with psycopg.connect(database_url) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(name)))  # what it may do, without logging in
        assert conn.execute("SELECT count(*) FROM reporting.partner_directory").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM public.api_tokens")


@pytest.mark.parametrize("name", [
    "Analyst", "bi-team", "bi team", "x'; DROP TABLE events; --", "1bi", "pg_bi", "public", "current_user", "",
    "b" * 64, "\u5206\u6790",
])
def test_a_bad_name_is_refused_before_anything_is_touched(database_url, monkeypatch, name):
    with psycopg.connect(database_url) as conn:
        roles_before = conn.execute("SELECT count(*) FROM pg_roles").fetchone()[0]

    output = reporting_role(database_url, monkeypatch, name, expect=2)

    assert "role name" in output
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles").fetchone()[0] == roles_before


def test_a_role_that_could_do_more_is_refused_and_nothing_changes(database_url, monkeypatch, cleanup):
    group = cleanup.database(database_url)
    powerful, member, reader = cleanup.role("dba"), cleanup.role("app"), cleanup.role("peek")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(powerful)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_read_all_data").format(sql.Identifier(member)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reader)))
        conn.execute(sql.SQL("GRANT SELECT ON events TO {}").format(sql.Identifier(reader)))

    assert "has CREATEDB" in reporting_role(database_url, monkeypatch, powerful, expect=2)
    assert "member of pg_read_all_data" in reporting_role(database_url, monkeypatch, member, expect=2)
    refusal = reporting_role(database_url, monkeypatch, reader, expect=2)
    assert "SELECT on events" in refusal and "nothing was changed" in refusal
    assert "reporting group, not a login role" in reporting_role(database_url, monkeypatch, group, expect=2)
    assert "connected as" in reporting_role(database_url, monkeypatch, conninfo_to_dict(database_url).get(
        "user", "postgres"), expect=2)

    with psycopg.connect(database_url) as conn:  # rolled back whole: no group, no membership, no password
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (group,)).fetchone()[0] == 0
        assert role_state(database_url, reader)[2:] == (None, [])


def test_a_database_user_that_may_not_create_roles_is_told_so(database_url, monkeypatch, cleanup):
    cleanup.database(database_url)
    operator, name = cleanup.role("ops"), cleanup.role()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(operator)))

    output = reporting_role(make_conninfo(database_url, user=operator, password=PASSWORD), monkeypatch, name, expect=2)

    assert f"the database user {operator} cannot create roles" in output
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)).fetchone()[0] == 0


def test_the_owner_of_the_database_with_createrole_makes_a_role_without_being_a_superuser(
        server_url, monkeypatch, cleanup):
    """As docs/deploy.md runs the service: one role owns the database (here also with CREATEROLE)."""
    owner, name = cleanup.role("owner"), cleanup.role()
    with psycopg.connect(with_database_name(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
            sql.Identifier(owner), sql.Literal(PASSWORD)))
    with scratch_database(server_url, prefix="cd_test") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(conninfo_to_dict(url)["dbname"]), sql.Identifier(owner)))
        as_owner = make_conninfo(url, user=owner, password=PASSWORD)
        assert "no reporting schema yet" in reporting_role(as_owner, monkeypatch, name, expect=2)
        migrate(as_owner)
        cleanup.database(url)

        output = reporting_role(as_owner, monkeypatch, name)

        assert f"role {name}: created" in output
        with as_role(url, name) as bi:
            for view in reporting_views(url):
                read_all(bi, view)  # raises InsufficientPrivilege if it cannot
            refused(bi, "SELECT 1 FROM public.events")


def test_the_password_is_given_one_way_and_never_empty(database_url, monkeypatch, cleanup):
    name = cleanup.role()
    cleanup.database(database_url)
    monkeypatch.setenv("CHANNEL_DOMAIN_DATABASE_URL", database_url)
    runner = CliRunner()
    both = runner.invoke(cli, ["reporting-role", name, "--password-stdin", "--password-env", "X"], input="a\n")
    unset = runner.invoke(cli, ["reporting-role", name, "--password-env", "NO_SUCH_VARIABLE_SET"])
    empty = runner.invoke(cli, ["reporting-role", name, "--password-stdin"], input="\n")
    assert [both.exit_code, unset.exit_code, empty.exit_code] == [2, 2, 2], both.output + unset.output + empty.output
    assert "password is empty" in empty.output

    made = runner.invoke(cli, ["reporting-role", name, "--password-stdin"], input=f"{PASSWORD}\n")

    assert made.exit_code == 0, made.output
    assert scram_matches(role_state(database_url, name)[2], PASSWORD)


# --- other databases on the cluster ---------------------------------------------------------------

def test_a_reporting_role_reads_no_other_database(database_url, server_url, template_database, monkeypatch,
                                                  cleanup):
    ours, theirs = cleanup.role(), cleanup.role()
    cleanup.database(database_url)
    reporting_role(database_url, monkeypatch, ours)
    with scratch_database(server_url, prefix="cd_test", template=template_database) as other:
        other_group = cleanup.database(other)
        with as_role(other, ours) as bi:  # PUBLIC may connect; the views are another group's
            refused(bi, "SELECT 1 FROM reporting.partner_directory")
        reporting_role(other, monkeypatch, theirs)
        with as_role(other, ours) as bi:
            refused(bi, "SELECT 1 FROM reporting.partner_directory")
        with as_role(other, theirs) as bi:
            assert bi.execute("SELECT count(*) FROM reporting.partner_directory").fetchone()[0] == 0
        with as_role(database_url, theirs) as bi:
            refused(bi, "SELECT 1 FROM reporting.partner_directory")
        assert role_state(database_url, theirs)[3] == [other_group]


def test_a_database_copied_from_another_drops_the_other_ones_group_at_its_next_migrate(
        database_url, server_url, monkeypatch, cleanup):
    name = cleanup.role()
    cleanup.database(database_url)
    reporting_role(database_url, monkeypatch, name)
    source = conninfo_to_dict(database_url)["dbname"]
    with scratch_database(server_url, prefix="cd_test", template=source) as copy:
        with as_role(copy, name) as bi:  # CREATE DATABASE … TEMPLATE copies the views' grants
            assert bi.execute("SELECT count(*) FROM reporting.partner_directory").fetchone()[0] == 0

        assert migrate(copy) == []  # nothing to apply; the grants are put right all the same

        with as_role(copy, name) as bi:
            refused(bi, "SELECT 1 FROM reporting.partner_directory")
            refused(bi, "SELECT 1 FROM reporting.read_model_freshness")
    with as_role(database_url, name) as bi:  # the source keeps its own
        assert bi.execute("SELECT count(*) FROM reporting.partner_directory").fetchone()[0] == 0


# --- views added later, and rebuilds -------------------------------------------------------------

def test_a_view_a_later_migration_adds_is_readable_without_running_the_command_again(
        database_url, monkeypatch, cleanup, tmp_path):
    name = cleanup.role()
    cleanup.database(database_url)
    reporting_role(database_url, monkeypatch, name)
    later = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, later)
    last = sorted(path.name for path in Path(MIGRATIONS_DIR).iterdir() if path.name[:4].isdigit())[-1]
    (later / "9999.later-view.sql").write_text(
        f"-- depends: {last.rsplit('.', 1)[0]}\n"
        "CREATE VIEW reporting.partner_kinds AS SELECT kind, count(*) AS partners FROM public.partner_directory"
        " GROUP BY kind;\n"
        "COMMENT ON VIEW reporting.partner_kinds IS 'Partners per kind.';\n"
        "COMMENT ON COLUMN reporting.partner_kinds.kind IS 'The kind.';\n"
        "COMMENT ON COLUMN reporting.partner_kinds.partners IS 'How many.';\n")

    assert migrate(database_url, directory=later) == ["9999.later-view"]

    with as_role(database_url, name) as bi:
        assert bi.execute("SELECT count(*) FROM reporting.partner_kinds").fetchone()[0] == 0
        refused(bi, "SELECT 1 FROM public.partner_directory")


def catalog_of_the_schema(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        return {
            "views": conn.execute("SELECT c.oid, c.relname, c.relacl::text, pg_get_userbyid(c.relowner) FROM pg_class c"
                                  " WHERE c.relnamespace = 'reporting'::regnamespace ORDER BY 2").fetchall(),
            "comments": conn.execute("SELECT c.relname, d.objsubid, d.description FROM pg_description d"
                                     " JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass"
                                     " WHERE c.relnamespace = 'reporting'::regnamespace ORDER BY 1, 2").fetchall(),
            "public views": conn.execute("SELECT relname FROM pg_class WHERE relkind = 'v'"
                                         " AND relnamespace = 'public'::regnamespace ORDER BY 1").fetchall(),
        }


def what_the_role_reads(url: str, name: str) -> dict[str, list[str]]:
    with as_role(url, name) as bi:
        return {view: sorted(map(repr, read_all(bi, view))) for view in reporting_views(url)
                if view != "read_model_freshness"}  # its updated_at moves with every switch


def test_rebuilds_keep_the_views_their_comments_and_the_roles_grants(app, database_url, monkeypatch, cleanup):
    record_and_project(app)
    name = cleanup.role()
    cleanup.database(database_url)
    reporting_role(database_url, monkeypatch, name)
    catalog, read = catalog_of_the_schema(database_url), what_the_role_reads(database_url, name)
    assert read["partner_orders"] and read["commission_statements"] and read["commission_lines"]
    # Views joining the tables of several read models (sales_reports, record_lists) and a registry.
    assert read["sales_lines"] and read["sales_months"] and read["partner_list"] and read["partner_transitions"]

    for models in (["all"], ["commissions"]):
        rebuilt = CliRunner().invoke(cli, ["rebuild", *models, "--processes", "1"])
        assert rebuilt.exit_code == 0, rebuilt.output

        assert catalog_of_the_schema(database_url) == catalog
        assert what_the_role_reads(database_url, name) == read
