"""Which PostgreSQL to use: `CHANNEL_DOMAIN_DATABASE_URL`, or an embedded server under ./var/.

The embedded server (the `pgserver` package ships the binaries) needs nothing installed and
keeps its data in `var/pgdata`, so `make run` works on a fresh machine.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from channel_domain.store.group_commit import MAX_COMMANDS

DATABASE_URL_VARIABLE = "CHANNEL_DOMAIN_DATABASE_URL"
POOL_WAIT_S = 5
EMBEDDED_DATA_DIR = Path(os.environ.get("CHANNEL_DOMAIN_VAR_DIR", "var")) / "pgdata"


def embedded_server_url(data_dir: Path = EMBEDDED_DATA_DIR) -> str:
    """Start (or reuse) the embedded PostgreSQL server and return its URL."""
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir it does not use; headless machines
        # without XDG_RUNTIME_DIR get a warning that would only confuse a newcomer.
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: only needed when no server is configured

    data_dir = data_dir.resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so the CLI, the service and
    # the tests share one server instead of each paying its start-up.
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    return str(server.get_uri())


def database_url() -> str:
    return os.environ.get(DATABASE_URL_VARIABLE) or embedded_server_url()


def with_database_name(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


POOL_SIZE_VARIABLE = "CHANNEL_DOMAIN_POOL_SIZE"  # connections each process keeps open (default 5)
POOL_OVERFLOW_VARIABLE = "CHANNEL_DOMAIN_POOL_MAX_OVERFLOW"  # and may open beyond them under load (default 10)
# The most commands whose appends one transaction may carry (store/group_commit.py); 1: none share.
GROUP_COMMIT_VARIABLE = "CHANNEL_DOMAIN_GROUP_COMMIT_MAX_COMMANDS"


def _setting(variable: str, default: int, least: int) -> int:
    given = os.environ.get(variable, "").strip()
    return whole_number(variable, given, least) if given else default


def whole_number(name: str, given: str, least: int) -> int:
    """A setting's value as a whole number of at least `least`; anything else stops start-up."""
    if not given.isdigit() or int(given) < least:
        raise ValueError(f"{name} must be a whole number, at least {least}: {given!r}")
    return int(given)


def library_environment(url: str, *, pool_size: int | None = None, max_overflow: int | None = None) -> dict[str, str]:
    """The `eventsourcing` library's settings for a connection URL. The URL goes whole, as
    `POSTGRES_CONNINFO` (read by `recorder.Factory`): rebuilt from host, user and password,
    it would lose `sslmode`, `application_name` and every other libpq parameter."""
    pool_size = _setting(POOL_SIZE_VARIABLE, 5, 1) if pool_size is None else pool_size
    max_overflow = _setting(POOL_OVERFLOW_VARIABLE, 10, 0) if max_overflow is None else max_overflow
    group_commit = _setting(GROUP_COMMIT_VARIABLE, MAX_COMMANDS, 1)
    return {
        "PERSISTENCE_MODULE": "channel_domain.store.recorder:Factory",
        "CREATE_TABLE": "no",  # the schema belongs to migrations/, not to the library
        "POSTGRES_CONNINFO": url,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        # The library uses this as the longest wait for a pooled connection: long enough for a
        # burst to queue (the reliability suite's retry test waits over 2 s on the embedded
        # server), short enough that a request caught waiting when the database goes away is
        # refused within seconds. Requests after it are refused at once (api/breaker.py).
        "POSTGRES_CONNECT_TIMEOUT": str(POOL_WAIT_S),
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": os.environ.get("CHANNEL_DOMAIN_IDLE_IN_TRANSACTION_TIMEOUT_S", "30"),
        "GROUP_COMMIT_MAX_COMMANDS": str(group_commit),
    }


@contextmanager
def scratch_database(server_url: str, *, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server (optionally cloned from a template), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = with_database_name(server_url, "postgres")
    clone = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{clone}')
    try:
        yield with_database_name(server_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
