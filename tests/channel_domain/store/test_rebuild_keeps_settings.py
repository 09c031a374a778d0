"""`rebuild` switches in new tables; what a DBA set on the old ones must come along: a BI role
granted SELECT still reads, owners, comments, index names and the rest are as before — through
the Rebuilder and through `channel-domain rebuild` run as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import api.cli
from channel_domain.application import SalesLine
from channel_domain.store.projecting import ProjectionRunner
from channel_domain.store.rebuilding import Rebuilder, SettingsNotCarried
from projections import all_projections
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract

BIN = Path(sys.executable).parent
SOURCE = Path(api.cli.__file__).resolve().parents[1]  # the src/ under test, for the subprocess
REBUILDABLE = [p for p in all_projections() if getattr(p, "rebuildable", True)]
TABLES = [table for p in REBUILDABLE for table in p.tables]
VIEWS = ["audit_findings", "audit_findings_0008", "audit_findings_0009", "commission_statements",
         "partner_inactive_spans"]


@pytest.fixture
def roles(database_url: str) -> Iterator[dict[str, str]]:
    """Roles are cluster-wide: named afresh for each test, and dropped after it."""
    tag = uuid.uuid4().hex[:8]
    made = {"bi": f"bi_{tag}", "columns": f"bi_columns_{tag}", "owner": f"dba_owner_{tag}"}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for role in made.values():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reads'").format(sql.Identifier(role)))
    try:
        yield made
    finally:
        everyone = sql.SQL(", ").join(map(sql.Identifier, made.values()))
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(everyone))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(everyone))
            conn.execute(sql.SQL("DROP ROLE {}").format(everyone))


def as_role(database_url: str, role: str) -> psycopg.Connection:
    params = conninfo_to_dict(database_url)
    params.update(user=role, password="reads")
    return psycopg.connect(make_conninfo(**params))


def record_and_project(app) -> None:
    contract = signed_contract(app, partner(app, "retailer"))
    with as_("erp", "integration"):
        assert not any(app.import_sales([
            SalesLine(contract, "sale", {"order_id": f"S-{n}", "amount": "1000.00", "sold_on": "2026-03-02"})
            for n in range(10)]))
    with as_("spec-1", "channel_specialist"):
        for n in range(5):
            app.register_partner(kind="retailer", name=f"Shop {n}")
    ProjectionRunner(app, REBUILDABLE).catch_up_all()


def set_up_as_a_dba_would(database_url: str, roles: dict[str, str]) -> None:
    bi, columns, owner = (sql.Identifier(roles[k]) for k in ("bi", "columns", "owner"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        for relation in TABLES + VIEWS:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(relation), bi))
        for relation in TABLES:  # a view reads with its owner's privileges
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(relation), owner))
        conn.execute(sql.SQL("GRANT SELECT (partner_id, kind) ON partner_directory TO {}").format(columns))
        conn.execute(sql.SQL("ALTER TABLE commission_lines OWNER TO {}").format(owner))
        conn.execute(sql.SQL("ALTER VIEW commission_statements OWNER TO {}").format(owner))
        # A grant given through a grant option, by someone other than the owner.
        conn.execute(sql.SQL("GRANT SELECT ON contract_directory TO {} WITH GRANT OPTION").format(owner))
        conn.execute(sql.SQL("SET ROLE {}").format(owner))
        conn.execute(sql.SQL("GRANT SELECT ON contract_directory TO {}").format(columns))
        conn.execute("RESET ROLE")
        conn.execute("COMMENT ON TABLE partner_directory IS 'Who each partner is: for BI, read-only'")
        conn.execute("COMMENT ON VIEW commission_statements IS 'What the finance dashboards read'")
        conn.execute("COMMENT ON INDEX partner_directory_parent_idx IS 'For the second-tier report'")
        conn.execute("ALTER INDEX partner_visits_partner_idx RENAME TO dba_visits_by_partner")
        conn.execute("CREATE INDEX dba_lines_by_month ON commission_lines (business_date) WITH (fillfactor = 80)")
        conn.execute("ALTER TABLE commission_lines SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05)")
        conn.execute("ALTER TABLE commission_lines ALTER COLUMN amount SET STATISTICS 500")
        conn.execute("ALTER TABLE partner_directory ENABLE ROW LEVEL SECURITY")
        conn.execute(sql.SQL("CREATE POLICY bi_sees_retailers ON partner_directory FOR SELECT TO {}"
                             " USING (kind = 'retailer')").format(bi))
        conn.execute("ALTER TABLE contract_directory REPLICA IDENTITY FULL")
        conn.execute("CREATE PUBLICATION dba_partners FOR TABLE partner_orders")
        conn.execute("CREATE FUNCTION dba_noted() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'")
        conn.execute("CREATE TRIGGER dba_noted AFTER INSERT ON audit_events FOR EACH STATEMENT"
                     " EXECUTE FUNCTION dba_noted()")
        conn.execute("ALTER TABLE partner_visits ADD CONSTRAINT dba_visits_partner"
                     " FOREIGN KEY (partner_id) REFERENCES partner_directory (partner_id)")


def what_a_dba_set(database_url: str) -> dict[str, list[tuple]]:
    """Read straight from the catalog, by name: what the switch must leave as it found it."""
    queries = {
        "relations": "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner),"
                     " ARRAY(SELECT item::text FROM unnest(c.relacl) item ORDER BY 1),"
                     " obj_description(c.oid, 'pg_class'), c.reloptions::text, c.relrowsecurity,"
                     " c.relforcerowsecurity, c.relreplident"
                     " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s)",
        "indexes": "SELECT tablename, indexname, indexdef, obj_description(indexname::regclass, 'pg_class')"
                   " FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY (%s)",
        "columns": "SELECT c.relname, a.attname, ARRAY(SELECT item::text FROM unnest(a.attacl) item ORDER BY 1), a.attstattarget, col_description(c.oid, a.attnum)"
                   " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                   " WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY (%s) AND a.attnum > 0",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                       " WHERE conrelid::regclass::text = ANY (%s)",
        "policies": "SELECT tablename, policyname, roles::text, cmd, qual FROM pg_policies WHERE tablename = ANY (%s)",
        "triggers": "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger"
                    " WHERE tgrelid::regclass::text = ANY (%s) AND NOT tgisinternal",
        "publications": "SELECT pubname, tablename FROM pg_publication_tables WHERE tablename = ANY (%s)",
        "schemas": "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rebuild%%' AND %s::text[] IS NOT NULL",
    }
    with psycopg.connect(database_url) as conn:
        return {name: sorted(conn.execute(query, (TABLES + VIEWS,)).fetchall(), key=repr)
                for name, query in queries.items()}


def changed(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> dict[str, set[str]]:
    """Rows of the catalog found on one side only, per query: empty when nothing changed."""
    found = {}
    for name in before:
        was, now = set(map(repr, before[name])), set(map(repr, after[name]))
        if was != now:
            found[name] = {f"- {row}" for row in was - now} | {f"+ {row}" for row in now - was}
    return found


def what_the_roles_read(database_url: str, roles: dict[str, str]) -> dict[str, object]:
    read: dict[str, object] = {}
    with as_role(database_url, roles["bi"]) as conn:
        for relation in TABLES + VIEWS:
            read[relation] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(relation))
                                          ).fetchone()[0]
    with as_role(database_url, roles["columns"]) as conn:
        read["partner kinds"] = conn.execute("SELECT kind, count(*) FROM partner_directory GROUP BY kind").fetchall()
        read["contracts"] = conn.execute("SELECT count(*) FROM contract_directory").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT grade FROM partner_directory")
    return read


def test_a_rebuild_keeps_grants_owners_comments_and_index_names(app, database_url, roles):
    record_and_project(app)
    set_up_as_a_dba_would(database_url, roles)
    before, read_before = what_a_dba_set(database_url), what_the_roles_read(database_url, roles)
    assert read_before["partner_directory"] == 6  # the policy lets BI see retailers only: a sanity check
    assert ("commission_lines", "dba_lines_by_month") in {row[:2] for row in before["indexes"]}

    Rebuilder(app, *[type(p)() for p in REBUILDABLE]).rebuild()

    assert not (lost := changed(before, what_a_dba_set(database_url))), "\n".join(sorted(map(str, lost.values())))
    assert what_the_roles_read(database_url, roles) == read_before


def test_the_rebuild_command_keeps_them_too(app, database_url, roles):
    record_and_project(app)
    set_up_as_a_dba_would(database_url, roles)
    before, read_before = what_a_dba_set(database_url), what_the_roles_read(database_url, roles)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM partner_directory WHERE kind = 'retailer'")  # gone wrong: the rebuild mends it

    done = subprocess.run(
        [str(BIN / "channel-domain"), "rebuild", "all", "--processes", "2"],
        env={**os.environ, "CHANNEL_DOMAIN_DATABASE_URL": database_url,
             "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])},
        capture_output=True, text=True, timeout=300, check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "switched" in done.stdout
    assert not (lost := changed(before, what_a_dba_set(database_url))), "\n".join(sorted(map(str, lost.values())))
    assert what_the_roles_read(database_url, roles) == read_before


def test_a_switch_that_would_lose_something_does_not_happen(app, database_url, roles):
    record_and_project(app)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW dba_partner_count AS SELECT count(*) AS partners FROM partner_directory")
        conn.execute("DELETE FROM partner_directory")
        live = conn.execute("SELECT 'partner_directory'::regclass::oid").fetchone()[0]

    with pytest.raises(SettingsNotCarried, match="dba_partner_count"):
        Rebuilder(app, *[type(p)() for p in REBUILDABLE if p.name == "partner_activity"]).rebuild()

    with psycopg.connect(database_url) as conn:  # the live read model is the one it was, shadow gone
        assert conn.execute("SELECT 'partner_directory'::regclass::oid").fetchone()[0] == live
        assert conn.execute("SELECT count(*) FROM partner_directory").fetchone()[0] == 0
        assert conn.execute("SELECT partners FROM dba_partner_count").fetchone()[0] == 6
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild%'").fetchone()[0] == 0
