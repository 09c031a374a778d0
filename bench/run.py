"""The benchmark suite: one run, one PostgreSQL, every figure beside its baseline.

    make bench          # the full run (about 15 minutes on 2 cores), BENCHMARKS.md-ready
    make bench-quick    # a smoke run of every benchmark at a small size (under a minute)
    .venv/bin/python bench/run.py [--quick] [--url postgresql://...] [--markdown FILE] [--stages reports,...]

Without --url it uses CHANNEL_DOMAIN_DATABASE_URL, else CHANNEL_DOMAIN_TEST_DATABASE_URL, else
the embedded server. Every stage runs in a database of its own, dropped afterwards. The
figures drift with the machine's load; the ratios, measured side by side, hold.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import append
import event_latency
import http_load
import load_contract
import proofs
import psycopg
import read_models
import relay_nats
import reports
from common import TIERS, bench_database, cpu_shares, peak_rss_mb, relayed, served, server_url, signed_contract_of, token
from rich.console import Console
from rich.table import Table

from channel_domain.application import ChannelDepartment
from channel_domain.store import checkpoints
from channel_domain.store.projecting import ProjectionRunner
from projections import all_projections

console = Console(width=None if sys.stdout.isatty() else 150)


@dataclass(frozen=True)
class Sizes:
    appends: int
    http_clients: int
    commands_per_client: int
    import_lines: int
    import_contracts: int
    statement_rate: float  # statement reads a second, on a steady schedule
    statement_reads: int
    statement_write_rate: float  # sales recorded a second meanwhile, on a steady schedule
    contract_sales: int
    log_events: int
    relay_events: int
    event_rate: float  # P8: sales a second while a consumer follows them
    event_sales: int  # P8: sales per consumer
    report_events: int  # P10: the log the reports are read over
    report_rate: float  # P10: reads a second of each report, on a steady schedule
    report_reads: int  # P10: reads of each report
    report_write_rate: float  # P10: sales recorded a second meanwhile
    proof_events: int  # P11: the log the Merkle tree is built over
    proof_rate: float  # P11: proofs a second of each kind, on a steady schedule
    proof_reads: int  # P11: proofs of each kind
    proof_import_lines: int  # P11: sales of the P3-style import the tree must keep up with
    timeline_events: int  # P11: sales added to one contract whose workspace timeline is read


FULL = Sizes(appends=3000, http_clients=16, commands_per_client=250, import_lines=100_000, import_contracts=20,
             statement_rate=50, statement_reads=1500, statement_write_rate=200, contract_sales=10_000, log_events=1_000_000,
             relay_events=50_000, event_rate=200, event_sales=3000, report_events=1_000_000, report_rate=20,
             report_reads=200, report_write_rate=200, proof_events=1_000_000, proof_rate=200, proof_reads=4000,
             proof_import_lines=100_000, timeline_events=9_996)
QUICK = Sizes(appends=200, http_clients=16, commands_per_client=10, import_lines=2_000, import_contracts=5,
              statement_rate=50, statement_reads=50, statement_write_rate=200, contract_sales=300, log_events=5_000,
              relay_events=10_000, event_rate=200, event_sales=200, report_events=5_000, report_rate=20,
              report_reads=20, report_write_rate=200, proof_events=2_000, proof_rate=200, proof_reads=100,
              proof_import_lines=1_000, timeline_events=200)


@dataclass
class Figure:
    key: str
    what: str
    value: float
    unit: str
    against: str = ""  # what the ratio is taken against
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Run:
    sizes: Sizes
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        console.print(f"  {figure.key:<4} {figure.what}: {_number(figure.value)} {figure.unit}"
                      + (f"  ({figure.ratio:.2f}x {figure.against})" if figure.ratio is not None else "")
                      + (f"  {figure.note}" if figure.note else ""))
        return figure


def _number(value: float) -> str:
    if value != value:  # NaN: nothing measured (the figure's note says why)
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _statuses(unexpected: dict[int, int]) -> str:
    return ", ".join(f"{count} answered {status}" for status, count in sorted(unexpected.items()))


def _under_load(reads: http_load.Load, writes: http_load.Load) -> str:
    """The note of a read measured while sales come (P7, P10): both p-values and any answer
    that was not expected."""
    return (f"p50 {reads.p50_ms:.1f} ms; sales p99 {writes.p99_ms:.1f} ms"
            + (f", {_statuses(reads.unexpected)}" if reads.unexpected else "")
            + (f", sales {_statuses(writes.unexpected)}" if writes.unexpected else ""))


def appends(run: Run, server: str) -> float:
    console.rule("append: raw psycopg, the stock recorder, P1 a domain command")
    with bench_database(server) as url:
        measured = append.measure(url, run.sizes.appends)
    rates = {key: value.per_s for key, value in measured.items()}
    for writers in append.WRITERS:
        run.add(Figure(f"C{writers}", f"raw psycopg insert, {writers} writer(s)", rates[("raw", writers)], "appends/s"))
        run.add(Figure("", f"stock eventsourcing recorder, {writers} writer(s)", rates[("stock", writers)], "appends/s",
                       "raw", rates[("stock", writers)] / rates[("raw", writers)]))
        ratio = rates[("ours", writers)] / rates[("raw", writers)]
        cpu_ms = measured[("ours", writers)].cpu_ms
        # Issue 18: one writer ≥ 0.8x raw; four ≥ 1.0x, the one-event-per-transaction ceiling.
        wanted = 0.8 if writers == 1 else 1.0
        run.add(Figure("P1", f"record a sale (command → events committed), {writers} writer(s); process CPU "
                             f"{cpu_ms:.2f} ms each, so at most {1000 / cpu_ms:,.0f}/s under the GIL",
                       rates[("ours", writers)], "commands/s", "raw", ratio, f"≥ {wanted}x raw", ratio >= wanted))
    alone = measured[("alone", 4)]
    run.add(Figure("", f"record a sale, 4 writers, each append in a transaction of its own (group commit off);"
                       f" process CPU {alone.cpu_ms:.2f} ms each", alone.per_s, "commands/s", "P1 grouped",
                   alone.per_s / rates[("ours", 4)]))
    console.print(f"       P1's appends, 4 writers: {rates[('groups', 4)]:.2f} commands a group on average")
    versus_stock = rates[("ours", 4)] / rates[("stock", 4)]
    run.add(Figure("P1", "record a sale, 4 writers, against the stock recorder", rates[("ours", 4)], "commands/s",
                   "stock", versus_stock, "≥ 3x stock", versus_stock >= 3))
    return rates[("ours", 4)]


def served_load(run: Run, server: str, p1: float) -> None:
    sizes = run.sizes
    console.rule("through `channel-domain serve`: P2 commands, P3 import, P4 catch-up, P7 statements, P6 as_of")
    with bench_database(server) as url:
        setup = ChannelDepartment(url)
        own = [signed_contract_of(setup, "retailer", f"Client {n}") for n in range(sizes.http_clients)]
        imported = [signed_contract_of(setup, "retailer" if n % 2 else "distributor", f"Importer {n}",
                                       TIERS if n % 4 == 0 else None) for n in range(sizes.import_contracts)]
        setup.close()
        erp = token(url, "erp", ["integration"])
        finance = token(url, "finance", ["finance"])
        with served(url) as api:
            with cpu_shares(api.pid, url) as shares:
                load = http_load.record_sales(api.base, erp, [str(c) for _, c in own], sizes.http_clients,
                                              sizes.commands_per_client)
            ratio = load.per_second / p1
            # Issue 18: where the two cores went, so that a rate under the goal says what bounds it.
            cpu = shares().per_request_ms(load.requests + sizes.http_clients * http_load.WARM_UP)
            run.add(Figure("P2", f"POST a sale over HTTP, {sizes.http_clients} clients", load.per_second, "commands/s",
                           "P1 4 writers", ratio, "≥ 0.5x P1", ratio >= 0.5 and not load.unexpected,
                           "; ".join(filter(None, [cpu, _statuses(load.unexpected)]))))
            run.add(Figure("P2", "  its p99 latency", load.p99_ms, "ms", goal="≤ 50 ms", met=load.p99_ms <= 50,
                           note=f"p50 {load.p50_ms:.1f} ms"))
            keyed = http_load.record_sales(api.base, erp, [str(c) for _, c in own], sizes.http_clients,
                                           sizes.commands_per_client, idempotent=True)
            run.add(Figure("", "  the same with an Idempotency-Key on each", keyed.per_second, "commands/s",
                           "P2", keyed.per_second / load.per_second, note=f"p99 {keyed.p99_ms:.1f} ms"))

            seconds, accepted, rejected = http_load.import_sales(api.base, erp, [str(c) for _, c in imported],
                                                                 sizes.import_lines)
            rate = sizes.import_lines / seconds
            peak = peak_rss_mb(api.pid)
            run.add(Figure("P3", f"POST /v1/sales/import, {sizes.import_lines:,} sales in one request", rate,
                           "sales/s", goal="≥ 5,000/s", met=rate >= 5000 and rejected == 0,
                           note=f"server peak RSS {peak:.0f} MB" if peak else ""))

            processes = os.cpu_count() or 1
            events, seconds = read_models.catch_up(url, processes)
            rate = events / seconds
            scan = read_models.raw_scan(url)
            run.add(Figure("P4", f"catch-up of every read model over {events:,} events, {processes} processes",
                           rate, "events/s", "raw scan", rate / scan, "≥ 20,000/s", rate >= 20000))

            read_models.analyze(url)
            partners = [str(p) for p, _ in imported]
            periods = [f"2026-{m:02d}" for m in range(3, 12)]
            # The first pass: every (partner, month) read about twice — once in each worker process,
            # whose kept lines start empty — while each process meets its contracts for the first
            # time. Shown on its own row; the goal is the steady state after it.
            cold_reads, cold_writes = http_load.read_statements_under_load(
                api.base, finance, partners, periods, rate=sizes.statement_rate,
                count=2 * len(partners) * len(periods), writer=erp, contracts=[str(c) for _, c in own],
                write_rate=sizes.statement_write_rate, orders="COLD")
            with cpu_shares(api.pid, url) as shares:
                began = time.perf_counter()
                reads, writes = http_load.read_statements_under_load(
                    api.base, finance, partners, periods, rate=sizes.statement_rate, count=sizes.statement_reads,
                    writer=erp, contracts=[str(c) for _, c in own], write_rate=sizes.statement_write_rate)
                lasted = time.perf_counter() - began
            run.add(Figure("P7", f"GET a commission statement, p99 at {sizes.statement_rate:.0f}/s while sales come"
                           f" at {sizes.statement_write_rate:.0f}/s", reads.p99_ms, "ms", goal="≤ 20 ms",
                           met=reads.p99_ms <= 20 and not reads.unexpected,
                           note=f"{_under_load(reads, writes)}; {shares().busy(lasted)}"))
            run.add(Figure("P7", "  the sales' p99 under the same load", writes.p99_ms, "ms", goal="≤ 50 ms",
                           met=writes.p99_ms <= 50 and not writes.unexpected, note=f"p50 {writes.p50_ms:.1f} ms"))
            run.add(Figure("", "  P7's first pass, each statement about twice (kept lines empty)", cold_reads.p99_ms, "ms",
                           note=_under_load(cold_reads, cold_writes)))
        timings = load_contract.measure(url, sizes.contract_sales)
        run.add(Figure("P6", f"a contract with {sizes.contract_sales:,} sales as of a past moment", timings["as_of"], "ms",
                       "latest", timings["as_of"] / timings["latest"], "≤ 20 ms", timings["as_of"] <= 20,
                       f"latest {timings['latest']:.1f} ms (median of 15)"))


P8_GOALS_MS = {"long-polling feed client": 50, "SSE client": 50, "webhook receiver": 100, "JetStream consumer": 100}


def integration_clients(run: Run, server: str) -> None:
    sizes = run.sizes
    console.rule("integration clients: P8 commit → consumer latency")
    with bench_database(server) as url, relay_nats.nats_server() as nats_url:
        setup = ChannelDepartment(url)
        contracts = [str(signed_contract_of(setup, "retailer", f"Client {n}")[1]) for n in range(16)]
        setup.close()
        erp = token(url, "erp", ["integration"])
        consumers = {**event_latency.CONSUMERS, "JetStream consumer": event_latency.jetstream_consumer(nats_url)}
        # Deployed as serve runs by default: read models kept and webhooks delivered in the
        # background; the relay beside it.
        with served(url, projections=True, env={"CHANNEL_DOMAIN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}) as api, \
                relayed(url, nats_url):
            results = event_latency.measure(url, api.base, erp, contracts, sizes.event_rate, sizes.event_sales,
                                            consumers)
        for name, latency in results.items():
            goal = P8_GOALS_MS[name]
            run.add(Figure("P8", f"commit → {name}, p99 at {sizes.event_rate:.0f} sales/s", latency.p99_ms, "ms",
                           goal=f"≤ {goal} ms", met=latency.p99_ms <= goal and latency.received == latency.expected,
                           note=f"p50 {latency.p50_ms:.1f} ms; {latency.received:,} of {latency.expected:,} arrived;"
                           f" the sales' own p99 {latency.commands_p99_ms:.0f} ms"))


def large_log(run: Run, server: str) -> None:
    events = run.sizes.log_events
    console.rule(f"a log of {events:,} events: raw scan, P5 rebuild, verify")
    with bench_database(server) as url:
        began = time.perf_counter()
        head = read_models.fill_log(url, events)
        console.print(f"  wrote {head:,} events through the application in {time.perf_counter() - began:.0f} s")
        scan = read_models.raw_scan(url)
        run.add(Figure("C", f"raw sequential scan of {head:,} events", scan, "events/s"))
        report = read_models.rebuild(url)
        budget = 45 * head / 1_000_000  # issue 18: 45 s for a million, in proportion for other sizes
        run.add(Figure("P5", f"rebuild every read model from {head:,} events", report["seconds"], "s",
                       "raw scan", report["seconds"] / (head / scan), f"≤ {budget:.0f} s" if budget >= 1 else f"≤ {budget:.2f} s",
                       report["seconds"] <= budget, f"worker peak RSS {report['peak_mb']:.0f} MB"))
        sealer = ChannelDepartment(url)
        ProjectionRunner(sealer, [p for p in all_projections() if p.name == "audit_seals"]).catch_up_all()
        sealer.close()
        rate = read_models.verify_rate(url)
        run.add(Figure("", f"verify every hash and seal of {head:,} events", rate, "events/s", "raw scan", rate / scan))


def relay(run: Run, server: str) -> None:
    console.rule("P9: the NATS relay beside a raw nats-py publish loop")
    with bench_database(server) as url, relay_nats.nats_server() as nats_url:
        read_models.fill_log(url, run.sizes.relay_events, contracts=50)
        rates = relay_nats.measure(url, nats_url)
    events = int(rates["events"])
    run.add(Figure("", f"raw nats-py publish_async of the same {events:,} messages, acks awaited per"
                   f" {relay_nats.BATCH}", rates["raw"], "msgs/s"))
    ratio = rates["relay"] / rates["raw"]
    run.add(Figure("P9", f"relay {events:,} events from the log to JetStream, acknowledged and checkpointed",
                   rates["relay"], "events/s", "raw", ratio, "≥ 0.5x raw", ratio >= 0.5))


def report_reads(run: Run, server: str) -> None:
    sizes = run.sizes
    console.rule(f"P10: reports over a year of {sizes.report_events:,} events while sales come")
    with bench_database(server) as url:
        began = time.perf_counter()
        head = read_models.fill_log(url, sizes.report_events, details=True)
        console.print(f"  wrote {head:,} events (200 partners, a year, sales naming product, region and employee)"
                      f" in {time.perf_counter() - began:.0f} s")
        processes = os.cpu_count() or 1
        events, seconds = read_models.catch_up(url, processes)
        console.print(f"  every read model caught up over {events:,} events in {seconds:.0f} s")
        read_models.analyze(url)
        setup = ChannelDepartment(url)
        contracts = [str(signed_contract_of(setup, "retailer", f"Live {n}")[1]) for n in range(16)]
        setup.close()
        reader = token(url, "bi", ["reporting"])
        erp = token(url, "erp", ["integration"])
        # As deployed by default: the read models kept in the background, so the reports are read
        # while the sales arriving are projected into them.
        with served(url, projections=True) as api:
            # A second of the load, unmeasured: every server worker's pool filled, the background
            # read models settled, before the first report is timed.
            reports.read_under_load(api.base, reader, reports.REPORTS[0][1], sizes.report_rate, int(sizes.report_rate),
                                    erp, contracts, sizes.report_write_rate, "P10-warm-up")
            for number, (label, path) in enumerate(reports.REPORTS):
                status = reports.probe(api.base, reader, path)
                if status != 200:
                    run.add(Figure("P10", f"GET {label}", float("nan"), "ms", goal="≤ 50 ms", met=False,
                                   note=f"{path} answered {status}: not measured"))
                    continue
                reads, writes = reports.read_under_load(
                    api.base, reader, path, sizes.report_rate, sizes.report_reads, erp, contracts,
                    sizes.report_write_rate, f"P10-{number}")
                run.add(Figure("P10", f"GET {label}, p99 at {sizes.report_rate:.0f}/s while sales come at"
                               f" {sizes.report_write_rate:.0f}/s", reads.p99_ms, "ms", goal="≤ 50 ms",
                               met=reads.p99_ms <= 50 and not reads.unexpected,
                               note=f"{path}; {_under_load(reads, writes)}"))
            streamed = reports.stream_csv(api.base, reader)
            run.add(Figure("P10", f"GET the year's sales lines as CSV, {streamed.rows:,} rows streamed",
                           streamed.per_second, "rows/s", goal="≥ 50,000/s", met=streamed.per_second >= 50_000,
                           note=f"{streamed.megabytes:.0f} MB in {streamed.seconds:.1f} s, first byte after"
                           f" {streamed.first_byte_ms:.0f} ms"))


def merkle_proofs(run: Run, server: str) -> None:
    sizes = run.sizes
    console.rule(f"P11: Merkle proofs over {sizes.proof_events:,} events, and the tree beside an import")
    with bench_database(server) as url, tempfile.TemporaryDirectory() as keys:
        began = time.perf_counter()
        # 200 partners as P5 and P10 have them; a quick run's small log needs few (each costs events).
        head = read_models.fill_log(url, sizes.proof_events, contracts=200 if sizes.proof_events >= 100_000 else 10)
        console.print(f"  wrote {head:,} events through the application in {time.perf_counter() - began:.0f} s")
        leaves, seconds = proofs.build_tree(url)
        run.add(Figure("P11", f"build the Merkle tree over {leaves:,} events (audit_merkle alone, from nothing)",
                       leaves / seconds, "events/s", note=f"{seconds:.1f} s"))
        # The others, so that serve starts caught up; a quick run's few events are not worth processes.
        processes = (os.cpu_count() or 1) if sizes.proof_events >= 100_000 else 1
        events, seconds = read_models.catch_up(url, processes)
        console.print(f"  every other read model caught up over {events:,} events in {seconds:.0f} s")
        read_models.analyze(url)
        key_file = proofs.signing_key(url, Path(keys))
        positions, size = proofs.sample_positions(url, max(sizes.proof_reads, 100))
        setup = ChannelDepartment(url)
        contracts = [str(signed_contract_of(setup, "retailer", f"Importer {n}")[1])
                     for n in range(20 if sizes.proof_import_lines >= 10_000 else 5)]  # P3 imports over 20
        busy = str(signed_contract_of(setup, "retailer", "Timeline")[1])  # its history read in the workspace
        setup.close()
        auditor = token(url, "auditor", ["auditor"])
        erp = token(url, "erp", ["integration"])
        bound = size.bit_length()  # ⌈log2 n⌉ + 1 at most: 21 for a million
        env = {checkpoints.KEY_FILE_VARIABLE: str(key_file), checkpoints.INTERVAL_VARIABLE: "1"}
        # As deployed by default: read models, the tree among them, and checkpoints in the background.
        with served(url, projections=True, env=env) as api:
            longest = proofs.proof_sizes(api.base, auditor, positions, size)
            run.add(Figure("P11", f"inclusion proof, longest of 100 in a tree of {size:,}", longest.inclusion_max,
                           "hashes", goal="≤ 21", met=longest.inclusion_max <= min(21, bound)))
            run.add(Figure("P11", f"consistency proof, longest of 100 against a tree of {size:,}",
                           longest.consistency_max, "hashes", goal=f"≤ {2 * bound}",
                           met=longest.consistency_max <= 2 * bound,
                           note="RFC 9162 bounds it by about 2 log2 n"))
            for kind in ("inclusion", "consistency"):
                reads = proofs.read_proofs(api.base, auditor, kind, positions, size, sizes.proof_rate,
                                           sizes.proof_reads)
                article = "an" if kind == "inclusion" else "a"
                run.add(Figure("P11", f"GET {article} {kind} proof, p99 at {sizes.proof_rate:.0f}/s", reads.p99_ms, "ms",
                               goal="≤ 5 ms", met=reads.p99_ms <= 5 and not reads.unexpected,
                               note=f"p50 {reads.p50_ms:.1f} ms" + (f", {_statuses(reads.unexpected)}"
                                                                   if reads.unexpected else "")))
            imported: dict[str, float] = {}

            def import_now() -> None:
                seconds, accepted, rejected = http_load.import_sales(api.base, erp, contracts,
                                                                     sizes.proof_import_lines)
                imported.update(seconds=seconds, accepted=accepted, rejected=rejected)

            kept = proofs.keeping_up(url, import_now)
            # A contract of about 10 000 events (its signing and 9 996 sales), read page by page in the workspace.
            _, accepted, _ = http_load.import_sales(api.base, erp, [busy], sizes.timeline_events, prefix="TL")
            assert accepted == sizes.timeline_events
            pages = proofs.timeline_pages(api.base, auditor, busy, proofs.latest_version(url, busy))
        rate = sizes.proof_import_lines / imported["seconds"]
        early, late = kept.lags(0.0, 0.25), kept.lags(0.75, 1.0)
        growing = bool(early and late) and max(late) > max(early) + 2 * 2000  # two batches of the runner
        run.add(Figure("P11", f"the tree's lag behind the head while importing {sizes.proof_import_lines:,} sales"
                       f" (P3-style, {rate:,.0f}/s), last quarter of the import", max(late or [0]), "events",
                       goal="not growing", met=not growing and kept.caught_up_s is not None,
                       note=f"first quarter {max(early or [0]):,}, overall max {kept.max_lag:,}; caught up"
                       + (f" {kept.caught_up_s:.1f} s after the import" if kept.caught_up_s is not None
                          else " NOT within 120 s of the import")
                       + f"; {kept.checkpoints} checkpoints signed (interval 1 s), checkpoint lag max"
                       f" {kept.max_checkpoint_lag:,} events"))
    worst = max(pages.p99_ms.values())
    run.add(Figure("P11", f"workspace timeline of a contract with {pages.versions:,} events, a page of 50, p99 of"
                   " 30 reads each of the first, middle and last page", worst, "ms", goal="≤ 200 ms",
                   met=worst <= 200, note="p50 " + " / ".join(f"{pages.p50_ms[where]:.0f}"
                                                             for where in ("first", "middle", "last")) + " ms"))


def machine(server: str) -> list[str]:
    with psycopg.connect(server) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = ""
    if Path("/proc/meminfo").exists():
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return [
        f"- when: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit `{commit or 'unknown'}`",
        f"- machine: {os.cpu_count()} cores ({cpu}){memory}; {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, PostgreSQL {postgres} on the same machine",
    ]


def markdown(run: Run, server: str, quick: bool) -> str:
    lines = [f"## {'Quick' if quick else 'Full'} run", "", *machine(server), "",
             "| | figure | measured | ratio | goal | met |", "|---|---|---:|---:|---|---|"]
    for f in run.figures:
        ratio = f"{f.ratio:.2f}x {f.against}" if f.ratio is not None else ""
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        what = f.what + (f" ({f.note})" if f.note else "")
        lines.append(f"| {f.key} | {what} | {_number(f.value)} {f.unit} | {ratio} | {f.goal} | {met} |")
    return "\n".join(lines) + "\n"


def table(run: Run) -> Table:
    shown = Table("", "figure", "measured", "ratio", "goal", "met", title="channel-domain benchmarks")
    for f in run.figures:
        shown.add_row(f.key, f.what, f"{_number(f.value)} {f.unit}",
                      f"{f.ratio:.2f}x {f.against}" if f.ratio is not None else "", f.goal,
                      "" if f.met is None else ("[green]yes[/green]" if f.met else "[red]no[/red]"))
    return shown


STAGES = ("append", "served", "integration", "log", "relay", "reports", "proofs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every benchmark at a small size: proves the suite runs")
    parser.add_argument("--url", help="PostgreSQL server to use")
    parser.add_argument("--markdown", type=Path, default=Path("var/bench.md"),
                        help="where to write the results as markdown (default var/bench.md)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"the stages to run, comma-separated (default every one: {','.join(STAGES)})")
    args = parser.parse_args()
    chosen = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
    unknown = set(chosen) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}")
    server = server_url(args.url)
    run = Run(QUICK if args.quick else FULL)
    p1 = appends(run, server) if "append" in chosen else None
    if "served" in chosen:
        if p1 is None:
            parser.error("the served stage compares P2 with P1: run it with the append stage")
        served_load(run, server, p1)
    if "integration" in chosen:
        integration_clients(run, server)
    if "log" in chosen:
        large_log(run, server)
    if "relay" in chosen:
        relay(run, server)
    if "reports" in chosen:
        report_reads(run, server)
    if "proofs" in chosen:
        merkle_proofs(run, server)
    console.print(table(run))
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(run, server, args.quick))
    console.print(f"markdown for BENCHMARKS.md written to {args.markdown}")


if __name__ == "__main__":
    main()
