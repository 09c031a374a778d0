"""PostgreSQL roles for BI tools: they read the views of the `reporting` schema and nothing else.

Roles are cluster-wide, and one cluster holds several databases (the tests make hundreds), so
access goes through a NOLOGIN group of the database's own, `<database>_reporting`
(`reporting_group_name()`, migration 0029), which holds CONNECT on the database, USAGE on the
schema and SELECT on every view in it. A reporting role is a LOGIN role that is a member of it:
in another database of the cluster it is nobody's member and reads no reporting view.

`reporting_grant_access()` (in SQL, so that `migrate` and this module share it) grants the group
whatever is missing — a view added by a later migration — and takes another database's group off
this database's views (the database was copied from that one). Everything here runs in one
transaction that ends with a check of what the role may do in this database; if it could do
anything more than read the reporting views, the transaction is rolled back and nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from channel_domain.store.migrations import MIGRATION_LOCK

SCHEMA = "reporting"
# Typed unquoted into BI tools' connection forms and psql: plain names only.
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: a longer name is cut, silently
RESERVED_NAMES = frozenset({"public", "none", "all", "current_user", "session_user", "current_role"})
ATTRIBUTES = {"rolsuper": "SUPERUSER", "rolcreatedb": "CREATEDB", "rolcreaterole": "CREATEROLE",
              "rolreplication": "REPLICATION", "rolbypassrls": "BYPASSRLS"}


class ReportingRoleRefused(Exception):
    """The role cannot be made or updated as asked; nothing was changed."""


@dataclass(frozen=True)
class ReportingRole:
    name: str
    created: bool
    password: str  # "set", "unchanged" (an existing role, none given) or "none" (a new role, none given)
    group: str
    database: str
    views: list[str]  # every view of the schema, all of them readable by the role
    granted_now: int  # views the group was granted SELECT on by this run
    host: str
    port: str


def check_name(name: str) -> None:
    """Refuse a name that is not a plain lower-case identifier, or one PostgreSQL keeps for itself."""
    if not NAME_PATTERN.fullmatch(name):
        raise ReportingRoleRefused(
            f"role name {name!r}: use lower-case letters, digits and _, starting with a letter or _")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ReportingRoleRefused(f"role name {name!r}: at most {MAX_NAME_BYTES} characters")
    if name.startswith("pg_") or name in RESERVED_NAMES:
        raise ReportingRoleRefused(f"role name {name!r} is reserved by PostgreSQL")


def make_reporting_role(conn: psycopg.Connection, name: str, password: str | None = None) -> ReportingRole:
    """Create or update the LOGIN role `name` so that it reads every view of `reporting` in this
    database and nothing else. `password` (if given) is set as a SCRAM verifier computed here:
    the password itself never reaches the server. Raises `ReportingRoleRefused`, changing nothing."""
    check_name(name)
    if password is not None and not password:
        raise ReportingRoleRefused("the password is empty")
    if conn.execute("SELECT to_regprocedure('public.reporting_grant_access()')").fetchone()[0] is None:
        raise ReportingRoleRefused("this database has no reporting schema yet: run channel-domain migrate first")
    try:
        return _make(conn, name, password)
    except psycopg.errors.InsufficientPrivilege as denied:
        raise ReportingRoleRefused(
            f"the database user {conn.info.user} may not do this ({denied.diag.message_primary}): run it as a role"
            " with CREATEROLE that owns the reporting schema, or a superuser; nothing was changed") from None


def _make(conn: psycopg.Connection, name: str, password: str | None) -> ReportingRole:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as curs:
        # Serialised with `migrate` (which grants too): concurrent GRANTs on one object fail.
        curs.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))
        curs.execute("SELECT current_user AS me, session_user AS session, current_database() AS database,"
                     " public.reporting_group_name() AS grp, public.reporting_group_marker() AS marker,"
                     " (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) AS may")
        here = curs.fetchone()
        group, marker, database = here["grp"], here["marker"], here["database"]
        if not here["may"]:
            raise ReportingRoleRefused(
                f"the database user {here['me']} cannot create roles: run this command with a database URL"
                " of a role that has CREATEROLE (or of a superuser)")
        if name == group:
            raise ReportingRoleRefused(
                f"{name} is this database's reporting group, not a login role: choose another name")
        _ensure_group(curs, group, marker, database)
        created = _ensure_login(curs, name, marker, {here["me"], here["session"]})
        _grant_membership(curs, group, name)
        if password is not None:
            verifier = conn.pgconn.encrypt_password(password.encode(), name.encode())
            curs.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier.decode())))
        for setting, value in (("search_path", "reporting, public"), ("default_transaction_read_only", "on")):
            curs.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(name), sql.Identifier(database), sql.Identifier(setting), sql.SQL(value)))
        curs.execute("SELECT public.reporting_grant_access() AS granted")
        granted = curs.fetchone()["granted"] or 0
        more = what_else_it_may_do(curs, name)
        if more:
            raise ReportingRoleRefused(
                f"{name} could do more than read the reporting views: {'; '.join(more)}. Revoke that (or"
                " choose another name) and run this again; nothing was changed")
        curs.execute("SELECT c.relname AS view, has_table_privilege(%s, c.oid, 'SELECT') AS readable"
                     " FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'v'"
                     " ORDER BY c.relname", (name, SCHEMA))
        views = curs.fetchall()
        unreadable = [row["view"] for row in views if not row["readable"]]
        if unreadable:  # granted by a role that may not grant them (it neither owns them nor is a superuser)
            raise ReportingRoleRefused(
                f"{name} could not be given {', '.join(unreadable)}: the database user {here['me']} may not grant"
                " them; run this as the role that owns the schema (the one that runs migrate) or a superuser;"
                " nothing was changed")
    info = conn.info
    return ReportingRole(
        name=name, created=created, password="set" if password is not None else ("none" if created else "unchanged"),
        group=group, database=database, views=[row["view"] for row in views], granted_now=granted,
        host=info.host, port=str(info.port))


def _role(curs: Any, name: str) -> dict[str, Any] | None:
    """The role `name`, with `powers`: the ATTRIBUTES it has; None when there is none."""
    curs.execute("SELECT oid, rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
                 " rolbypassrls, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = %s",
                 (name,))
    found = curs.fetchone()
    if found is not None:
        found["powers"] = [flag for column, flag in ATTRIBUTES.items() if found[column]]
    return found


def _ensure_group(curs: Any, group: str, marker: str, database: str) -> None:
    found = _role(curs, group)
    if found is None:
        curs.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        curs.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(group), sql.Literal(
            f"{marker}{database}: SELECT on its reporting schema; its members are reporting roles"
            " (channel-domain reporting-role)")))
        return
    powers = found["powers"]
    if found["rolcanlogin"] or powers or not (found["comment"] or "").startswith(marker):
        raise ReportingRoleRefused(
            f"a role named {group} exists and is not this database's reporting group (its comment does not"
            f" begin {marker!r}{', it can log in' if found['rolcanlogin'] else ''}"
            f"{', it has ' + ', '.join(powers) if powers else ''}): rename or drop it; nothing was changed")


def _ensure_login(curs: Any, name: str, marker: str, connected_as: set[str]) -> bool:
    """Create the login role, or check an existing one is fit to be a reporting role; True when created."""
    if name in connected_as:
        raise ReportingRoleRefused(f"{name} is the role this command is connected as: choose another name")
    found = _role(curs, name)
    if found is None:
        curs.execute(sql.SQL("CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                             " NOBYPASSRLS").format(sql.Identifier(name)))
        curs.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(
            "channel-domain reporting role: reads the reporting views (channel-domain reporting-role)")))
        return True
    if (found["comment"] or "").startswith(marker):
        raise ReportingRoleRefused(f"{name} is a reporting group, not a login role: choose another name")
    if found["powers"]:
        raise ReportingRoleRefused(
            f"the existing role {name} has {', '.join(found['powers'])}: it would read far more than the reporting"
            " views; choose another name")
    curs.execute("SELECT g.rolname AS name, shobj_description(g.oid, 'pg_authid') AS comment"
                 " FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = %s ORDER BY 1",
                 (found["oid"],))
    others = [row["name"] for row in curs.fetchall() if not (row["comment"] or "").startswith(marker)]
    if others:
        raise ReportingRoleRefused(
            f"the existing role {name} is a member of {', '.join(others)}: it would read what they read;"
            " revoke that membership or choose another name")
    if not found["rolcanlogin"] or not found["rolinherit"]:
        curs.execute(sql.SQL("ALTER ROLE {} LOGIN INHERIT").format(sql.Identifier(name)))
    return False


def _grant_membership(curs: Any, group: str, name: str) -> None:
    curs.execute("SELECT pg_has_role(%s, %s, 'MEMBER') AS member", (name, group))
    if not curs.fetchone()["member"]:
        curs.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))


# What a role may do in this database beyond reading the reporting views: each kind of object a
# privilege could open, as PostgreSQL itself answers for the role (its memberships, PUBLIC and
# ownership included).
_MORE = """
SELECT format('%%s on %%s', p.privilege, c.oid::regclass) AS what
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND (n.nspname <> %(schema)s OR p.privilege <> 'SELECT')
  AND has_table_privilege(%(role)s, c.oid, p.privilege)
UNION ALL
SELECT format('%%s on columns of %%s', p.privilege, c.oid::regclass)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) AS p(privilege)
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(schema)s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT has_table_privilege(%(role)s, c.oid, p.privilege)
  AND has_any_column_privilege(%(role)s, c.oid, p.privilege)
UNION ALL
SELECT format('USAGE, SELECT or UPDATE on sequence %%s', c.oid::regclass)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%(role)s, c.oid, 'USAGE, SELECT, UPDATE') END
UNION ALL
SELECT format('CREATE in schema %%I', n.nspname)
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND n.nspname NOT LIKE 'pg\\_temp%%' AND has_schema_privilege(%(role)s, n.oid, 'CREATE')
UNION ALL
SELECT format('CREATE in database %%I', current_database())
WHERE has_database_privilege(%(role)s, current_database(), 'CREATE')
UNION ALL
SELECT format('EXECUTE on %%s, which runs as its owner (SECURITY DEFINER)', p.oid::regprocedure)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND has_function_privilege(%(role)s, p.oid, 'EXECUTE')
ORDER BY 1
"""


def what_else_it_may_do(curs: Any, role: str) -> list[str]:
    """Everything `role` may do in this database beyond SELECT on the reporting schema's
    relations: tables, columns, sequences, CREATE in schemas or the database, definer functions.
    `curs` gives rows as dicts (`dict_row`), as every cursor of this module does."""
    curs.execute(_MORE, {"schema": SCHEMA, "role": role})
    return [row["what"] for row in curs.fetchall()]
