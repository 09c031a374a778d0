"""What each read model costs to catch up, alone, in this process (issue 18, P4/P5 diagnostic).

A log of about 100 000 events is written once through the application (`read_models.fill_log`,
sales naming product, region and employee) into a template database. Each measurement runs on a
fresh copy of it (`CREATE DATABASE … TEMPLATE`), so every read model starts from nothing and
the others' tables stay empty. For each read model alone, then for all of them together as one
`ProjectionRunner` in one process, it prints:

- events/s of the catch-up and its wall seconds;
- CPU seconds of this process (Python: decoding, the model's own work, psycopg's side);
- wall less CPU: waiting, mostly for PostgreSQL (its CPU, its I/O, the round trips);
- PG CPU s: the CPU seconds of the PostgreSQL backends that served it (from /proc, so only
  with the server on this machine; its background writers not included);
- statements sent (execute, executemany's rows, COPY) and their per-batch count.

Two rows stand for the cost every read model shares: `(read)`, reading the log alone, and
`(read+decode)`, reading and decoding each event into its domain object. A model's own cost is
its row less `(read+decode)` (less `(read)` for the two evidence models, which do not decode).

    PYTHONPATH=$PWD/src .venv/bin/python bench/read_model_costs.py \\
        --url postgresql://postgres@127.0.0.1:5432/postgres [--keep cd_p45_costs] [--only commissions]
        [--repeat 3] [--profile commissions] [--rows]

`--keep NAME` keeps the filled template database under that name (and reuses it when it is
there) so that runs after the first skip the minute of writing the log; drop it afterwards.
`--profile NAME` prints the cProfile of that model's catch-up (top functions by own time).
Instruction counts of the catch-up alone, which the machine's load does not move (perf counters
are not available here; run one read model per process):

    P45_CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.%p \\
        .venv/bin/python bench/read_model_costs.py --keep cd_p45_small --events 10000 --only commissions
    callgrind_annotate /tmp/cg.<pid> | head  # "PROGRAM TOTALS"

`--only p4` runs P4 itself: every read model caught up in 2 processes, as bench/run.py does;
`--only p5` P5's rebuild (bench/rebuild_worker.py) over this log. Their CPU columns are the worker
processes' (and, for P4, their backends'); the machine's load moves the wall time far more than
the CPU, so compare versions by CPU, in runs made one after the other.

`--rows` prints a digest of every read-model table after the all-together catch-up, to show that
two versions of the code write the same rows.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))

from common import server_url  # noqa: E402
from read_models import _caught_up, fill_log, rebuild  # noqa: E402

from channel_domain.application import ChannelDepartment  # noqa: E402
from channel_domain.store.database import scratch_database, with_database_name  # noqa: E402
from channel_domain.store.migrations import migrate  # noqa: E402
from channel_domain.store.projecting import ProjectionRunner, run_in_processes  # noqa: E402
from projections import all_projections  # noqa: E402

BATCH = 2000  # the runner's batch, as `channel-domain project` runs it


class _Nothing:
    """A read model that writes nothing: what reading (and decoding) the log costs alone."""

    tables: tuple[str, ...] = ()

    def __init__(self, name: str, decodes: bool) -> None:
        self.name = name
        self.decodes = decodes

    def apply(self, cursor: Any, events: Sequence) -> None:
        pass


class Statements:
    """Counts what psycopg sends: each execute, each row of an executemany, each COPY."""

    def __init__(self) -> None:
        self.count = 0
        self._saved: list[tuple[type, str, Any]] = []

    def __enter__(self) -> Statements:
        for kind in (psycopg.Cursor, psycopg.ServerCursor):
            for name in ("execute", "executemany", "copy"):
                if name in vars(kind):
                    self._saved.append((kind, name, vars(kind)[name]))
        counter = self

        def counted(original: Any, name: str) -> Any:
            if name == "executemany":
                def executemany(self: Any, query: Any, params_seq: Any, *args: Any, **kwargs: Any) -> Any:
                    params_seq = list(params_seq)
                    counter.count += len(params_seq)
                    return original(self, query, params_seq, *args, **kwargs)
                return executemany

            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                counter.count += 1
                return original(self, *args, **kwargs)
            return call

        for kind, name, original in self._saved:
            setattr(kind, name, counted(original, name))
        return self

    def __exit__(self, *exc: Any) -> None:
        for kind, name, original in self._saved:
            setattr(kind, name, original)


def _admin(server: str) -> str:
    return with_database_name(server, "postgres")


def prepare_template(server: str, keep: str | None, events: int) -> tuple[str, bool]:
    """(template database name, whether to drop it afterwards), filled with the log."""
    name = keep or f"cd_p45_costs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin(server), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            admin.execute(f'CREATE DATABASE "{name}"')
    if exists is None:
        url = with_database_name(server, name)
        migrate(url)
        began = time.perf_counter()
        head = fill_log(url, events, details=True)
        print(f"wrote {head:,} events through the application in {time.perf_counter() - began:.0f} s into {name}",
              file=sys.stderr)
    return name, keep is None


def _callgrind(state: str) -> None:
    """Under `valgrind --tool=callgrind --instr-atstart=no`, count instructions only while a
    catch-up runs (with P45_CALLGRIND=1 in the environment): a figure the machine's load does
    not move."""
    if os.environ.get("P45_CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)


def measure(url: str, projections: list, profile: bool = False) -> dict[str, Any]:
    app = ChannelDepartment(url)
    try:
        runner = ProjectionRunner(app, projections, batch_size=BATCH)
        profiler = cProfile.Profile() if profile else None
        _callgrind("on")
        with Statements() as statements:
            wall, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            events = runner.catch_up_all()
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        _callgrind("off")
        result = {"events": events, "wall": wall, "cpu": cpu, "statements": statements.count,
                  "pg_cpu": backend_cpu(url)}
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
            result["profile"] = out.getvalue()
        return result
    finally:
        app.close()


def measure_p4(url: str) -> dict[str, Any]:
    """Every read model caught up as P4 runs them (`channel-domain project --processes 2`, as
    read_models.catch_up does). CPU s is the worker processes' (they are this process's children),
    PG CPU s their backends', read before the workers stop: the sum is what the catch-up cost the
    machine, which the machine's load moves much less than the wall time."""
    app = ChannelDepartment(url)
    try:
        projections = all_projections()
        head = app.event_recorder.max_notification_id() or 0
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stop = threading.Event()
        began = time.perf_counter()
        running = threading.Thread(target=run_in_processes, args=(app, projections, 2, stop))
        running.start()
        try:
            while not _caught_up(app, len(projections), head):
                time.sleep(0.05)
            wall = time.perf_counter() - began
            pg_cpu = backend_cpu(url)
        finally:
            stop.set()
            running.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"events": head, "wall": wall, "cpu": cpu, "statements": 0, "pg_cpu": pg_cpu}
    finally:
        app.close()


def measure_p5(url: str) -> dict[str, Any]:
    """Every rebuildable read model rebuilt as P5 runs it (bench/rebuild_worker.py: a process of
    its own sharing them out among one builder process per core), over this log. CPU s is the
    worker's and its builders' (the worker's start-up and the switch included); PostgreSQL's is
    not counted."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = rebuild(url)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker and its builders, all reaped
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"events": report["events"], "wall": report["seconds"], "cpu": cpu, "statements": 0,
            "pg_cpu": float("nan")}


def backend_cpu(url: str) -> float:
    """CPU seconds of every PostgreSQL backend connected to this database now (read from /proc,
    so only where the server runs on this machine): a fresh copy has no backend but this run's,
    so this is what PostgreSQL spent serving the catch-up (its background writers not included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    with psycopg.connect(url) as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def digest(url: str, projections: list) -> dict[str, tuple[int, str]]:
    """Every read-model table's rows (in a stable order) as a count and a hash; the one column
    that says when a row was written, not what, is left out."""
    found = {}
    with psycopg.connect(url) as conn:
        for projection in projections:
            for table in projection.tables:
                rows = conn.execute(f"SELECT (to_jsonb(r) - 'sealed_at')::text FROM {table} AS r"  # noqa: S608
                                    " ORDER BY 1").fetchall()
                hashed = hashlib.sha256("\n".join(row[0] for row in rows).encode()).hexdigest()[:16]
                found[table] = (len(rows), hashed)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the PostgreSQL server (as for bench/run.py)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--keep", help="keep (and reuse) the filled template database under this name")
    parser.add_argument("--only", help="comma-separated read models (also: all, read, decode)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", help="print the cProfile of this read model's catch-up")
    parser.add_argument("--rows", action="store_true", help="print a digest of every table after `all`")
    args = parser.parse_args()
    server = server_url(args.url)
    template, drop = prepare_template(server, args.keep, args.events)
    models = all_projections()
    runs: dict[str, Any] = {"read": lambda: [_Nothing("(read)", False)],
                            "decode": lambda: [_Nothing("(read+decode)", True)]}
    for projection in models:
        runs[projection.name] = lambda kind=type(projection): [kind()]
    runs["all"] = all_projections
    runs["p4"] = all_projections
    runs["p5"] = all_projections
    chosen = args.only.split(",") if args.only else list(runs)
    if args.profile and args.profile not in chosen:
        chosen.append(args.profile)
    try:
        print(f"{'read model':<22} {'events/s':>9} {'wall s':>7} {'CPU s':>6} {'wait s':>7} {'µs CPU/ev':>9}"
              f" {'PG CPU s':>8} {'statements':>10} {'per batch':>9}")
        for _ in range(args.repeat):
            for name in chosen:
                with scratch_database(server, prefix="cd_p45_run", template=template) as url:
                    if name == "p4":
                        result = measure_p4(url)
                    elif name == "p5":
                        result = measure_p5(url)
                    else:
                        result = measure(url, runs[name](), profile=name == args.profile)
                    if name == "all" and args.rows:
                        rows = digest(url, models)
                events = result["events"] or 1
                batches = -(-events // BATCH)
                label = {"read": "(read)", "decode": "(read+decode)", "all": "(all, one process)",
                         "p4": "(P4: 2 processes)", "p5": "(P5 rebuild)"}.get(name, name)
                print(f"{label:<22} {events / result['wall']:>9,.0f} {result['wall']:>7.2f} {result['cpu']:>6.2f}"
                      f" {result['wall'] - result['cpu']:>7.2f} {1e6 * result['cpu'] / events:>9.1f}"
                      f" {result['pg_cpu']:>8.2f} {result['statements']:>10,} {result['statements'] / batches:>9.1f}", flush=True)
                if "profile" in result:
                    print(result["profile"])
        if args.rows:
            for table, (count, hashed) in rows.items():
                print(f"  {table:<32} {count:>8,} rows  {hashed}")
    finally:
        if drop:
            with psycopg.connect(_admin(server), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


if __name__ == "__main__":
    main()
