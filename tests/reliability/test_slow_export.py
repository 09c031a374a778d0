"""An export read by a slow client is complete, or visibly cut off — never a clean end
without its checkpoint.

A real `channel-domain serve` with PostgreSQL's `idle_in_transaction_session_timeout` at 1 s,
and a client with a small receive window that stops reading for longer than that, several
times: the server is blocked on the socket meanwhile, as behind a slow network.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg
import pytest

from channel_domain.application import SalesLine
from channel_domain.store.projecting import ProjectionRunner
from projections.seals import AuditSeals
from tests.api.test_audit_integrity import offline_check
from tests.channel_domain.helpers import as_
from tests.channel_domain.test_application import partner, signed_contract
from tests.reliability.conftest import serving

EVENTS = 15_000  # about 12 MB of export: more than the kernel buffers a blocked server's writes
PAUSE_S = 2.5


def _seed(app, count: int, first: int = 0) -> None:
    contract = signed_contract(app, partner(app, "retailer"))
    with as_("erp", "integration"):
        for start in range(first, first + count, 2000):
            app.import_sales([SalesLine(contract, "sale", {"order_id": f"O-{n}", "amount": "10.00",
                                                           "sold_on": "2026-02-01"})
                              for n in range(start, min(start + 2000, first + count))])


def _seal(app) -> None:
    runner = ProjectionRunner(app, [AuditSeals()])
    runner.catch_up(runner.projections[0])


def _slow_export(base: str, token: str, pauses: int, during_first_pause: Callable[[], None]) -> bytes:
    """Reads the export, stopping `pauses` times for PAUSE_S; raises http.client.IncompleteRead
    (or a connection error) when the answer is cut off."""
    address = urlsplit(base)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connecting: a small window
    sock.settimeout(60)
    sock.connect((address.hostname, address.port))
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    conn.sock = sock
    try:
        conn.request("GET", "/v1/audit/export", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        assert response.status == 200
        body = bytearray()
        for pause in range(pauses):
            body += response.read(256 * 1024)
            if pause == 0:
                during_first_pause()
            time.sleep(PAUSE_S)
        return bytes(body + response.read())
    finally:
        conn.close()


@pytest.fixture
def slow_server(app, database_url, monkeypatch):
    _seed(app, EVENTS)
    _seal(app)
    monkeypatch.setenv("CHANNEL_DOMAIN_IDLE_IN_TRANSACTION_TIMEOUT_S", "1")
    with serving(database_url, workers=1) as server:
        yield server


def test_a_slow_reader_gets_the_whole_log_and_its_checkpoint(app, slow_server, tmp_path, figure):
    def meanwhile() -> None:
        # The log grows and the seals move on while the export runs: it still ends where it
        # started, with the seals it started with.
        _seed(app, 500, first=EVENTS)
        _seal(app)

    started = time.monotonic()
    body = _slow_export(slow_server.base, slow_server.token("auditor-1", "auditor"), 3, meanwhile)
    lines = body.decode().splitlines()
    checkpoint = json.loads(lines[-1])["checkpoint"]
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["position"] for e in events] == sorted({e["position"] for e in events})
    assert len(events) > EVENTS and checkpoint["through_position"] == events[-1]["position"]
    checked = offline_check(tmp_path, body.decode())
    assert checked.returncode == 0, checked.stdout + checked.stderr + slow_server.log_tail()
    figure("R7 export read with 3 pauses of 2.5 s under a 1 s idle-in-transaction timeout: "
           f"{len(events)} events, {len(body) / 1e6:.1f} MB, complete and verified, "
           f"{time.monotonic() - started:.1f} s")


def test_an_export_that_fails_mid_way_is_cut_off_not_ended(slow_server):
    def break_the_log() -> None:
        # Takes an exclusive lock on the table: it would wait for a reader holding a transaction.
        with psycopg.connect(slow_server.database_url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '5s'")
            conn.execute("ALTER TABLE events RENAME TO events_away")

    try:
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            _slow_export(slow_server.base, slow_server.token("auditor-1", "auditor"), 1, break_the_log)
    finally:
        with psycopg.connect(slow_server.database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE IF EXISTS events_away RENAME TO events")
