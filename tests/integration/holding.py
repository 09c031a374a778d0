"""A command that stops after drawing its position and before committing, for as long as a
test holds advisory lock 4242: the "slow writer" that gap-free readers must wait for."""

from __future__ import annotations

import time

import psycopg

HELD_NAME = "held back"
HOLD_LOCK = 4242


def install_hold(database_url: str) -> None:
    """Registering a partner named `HELD_NAME` on this database now waits for `HOLD_LOCK`."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE FUNCTION hold_back() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF position('{HELD_NAME}' in convert_from(NEW.state, 'UTF8')) > 0 THEN
                    PERFORM pg_advisory_xact_lock({HOLD_LOCK});
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER hold_back AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION hold_back();
        """)


def wait_until_held(database_url: str) -> None:
    deadline = time.monotonic() + 20
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                               ).fetchone()[0]:
            assert time.monotonic() < deadline, "the held command never reached its lock"
            time.sleep(0.02)
