"""The read side over a large log: a raw scan (the ceiling), P4 catch-up of every read model,
P5 a rebuild of every read model in a worker process, and the auditor's verify."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import TIERS, signed_contract_of

from channel_domain import acting_as
from channel_domain.application import ChannelDepartment, SalesLine
from channel_domain.store.integrity import verify
from channel_domain.store.projecting import ProjectionRunner, run_in_processes
from projections import all_projections

LINES_PER_CALL = 5000
RETURN_EVERY = 40  # one line in 40 partly returns its contract's latest sale


PRODUCTS = [f"product-{n}" for n in range(5)]
REGIONS = [f"region-{n}" for n in range(8)]
EMPLOYEES = 20


def fill_log(url: str, events: int, contracts: int = 200, details: bool = False) -> int:
    """A log of about `events` events written through the application: partners and their
    signed contracts (every fifth tiered), then sales with some returns, months in order.
    With `details`, each sale also names a product (of 5), a region (of 8) and the employee
    credited (of 20 hired for it), as the sales reports group them. Returns the head position."""
    app = ChannelDepartment(url)
    try:
        signed = [signed_contract_of(app, "distributor" if n % 2 else "retailer", f"Partner {n}",
                                     TIERS if n % 5 == 0 else None, PRODUCTS if details else None)[1]
                  for n in range(contracts)]
        employees = []
        if details:
            with acting_as("hr", ["hr"]):
                employees = [str(app.hire_employee(name=f"Seller {n}", role="sales_rep", hired_on="2025-01-01",
                                                   login=f"seller.{n}", contract_months=36).id)
                             for n in range(EMPLOYEES)]
        head = app.event_recorder.max_notification_id() or 0
        number = 0
        latest_sale: dict[int, int] = {}  # contract index → the number of its latest sale not yet returned
        with acting_as("erp", ["integration"]):
            while head < events:
                lines = []
                for _ in range(min(LINES_PER_CALL, events - head)):
                    index = number % len(signed)
                    month = 1 + min(11, number * 12 // events)
                    # Each contract's turn to return comes once in RETURN_EVERY of its lines, and the return
                    # names its latest sale. (The slot was once `number % RETURN_EVERY`, which with the
                    # contracts a multiple of 40 fell on the same contracts every time, so no log held
                    # a return.)
                    its_turn = (number // len(signed) + index) % RETURN_EVERY == 0
                    returned = latest_sale.pop(index, None) if its_turn else None
                    if returned is not None:
                        lines.append(SalesLine(signed[index], "return", {
                            "order_id": f"L-{returned}", "amount": "10.00",
                            "returned_on": f"2026-{month:02d}-28"}))
                    else:
                        sale = {"order_id": f"L-{number}", "amount": f"{100 + number % 5000}.00",
                                "sold_on": f"2026-{month:02d}-{1 + number % 27:02d}"}
                        if details:
                            sale.update(product=PRODUCTS[number % 5 if number % 3 else number % 4],
                                        region=REGIONS[number // 7 % 8], employee_id=employees[number // 3 % 20])
                        lines.append(SalesLine(signed[index], "sale", sale))
                        latest_sale[index] = number
                    number += 1
                refused = [r for r in app.import_sales(lines) if r is not None]
                if refused:
                    raise RuntimeError(f"the synthetic log was refused: {refused[0]}")
                head = app.event_recorder.max_notification_id() or 0
        return head
    finally:
        app.close()


def analyze(url: str) -> None:
    """VACUUM ANALYZE, as autovacuum would soon after a bulk load: without it the latency
    figures that follow measured the autovacuum storm set off by a hundred thousand new rows
    and plans made without statistics (P7's p99 278 ms; 65 ms with it, one diagnostic run each)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def raw_scan(url: str) -> float:
    """Events per second through a plain server-side cursor over the whole events table."""
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor(name="raw") as curs:
        curs.itersize = 10_000
        began = time.perf_counter()
        curs.execute("SELECT * FROM events ORDER BY position")
        rows = sum(1 for _ in curs)
        return rows / (time.perf_counter() - began)


def catch_up(url: str, processes: int = 1) -> tuple[int, float]:
    """(events, seconds) to bring every read model from nothing (none may have run) to the
    head: in this process, or shared out among `processes` as `channel-domain project
    --processes N` runs them."""
    app = ChannelDepartment(url)
    try:
        projections = all_projections()
        head = app.event_recorder.max_notification_id() or 0
        began = time.perf_counter()
        if processes == 1:
            ProjectionRunner(app, projections).catch_up_all()
            return head, time.perf_counter() - began
        stop = threading.Event()
        running = threading.Thread(target=run_in_processes, args=(app, projections, processes, stop))
        running.start()
        try:
            while not _caught_up(app, len(projections), head):
                time.sleep(0.05)
            return head, time.perf_counter() - began
        finally:
            stop.set()
            running.join()
    finally:
        app.close()


def _caught_up(app: ChannelDepartment, projections: int, head: int) -> bool:
    with app.event_recorder.datastore.get_connection() as conn:
        row = conn.execute("SELECT count(*) AS n, min(position) AS low FROM projection_checkpoints").fetchone()
    return row["n"] == projections and row["low"] >= head


def rebuild(url: str) -> dict:
    """Rebuild every read model in a worker process of its own: {events, seconds, peak_mb}."""
    worker = Path(__file__).with_name("rebuild_worker.py")
    done = subprocess.run([sys.executable, str(worker), url], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def verify_rate(url: str) -> float:
    app = ChannelDepartment(url)
    try:
        began = time.perf_counter()
        result = verify(app.event_recorder.datastore)
        if not result.ok:
            raise RuntimeError(f"the benchmark log does not verify: {result.problem}")
        return result.events / (time.perf_counter() - began)
    finally:
        app.close()
