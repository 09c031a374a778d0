"""What the benchmarks share: a scratch database, signed contracts, a served API, timing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import psycopg

from api.tokens import create_token
from channel_domain import acting_as
from channel_domain.application import ChannelDepartment
from channel_domain.store.database import DATABASE_URL_VARIABLE, database_url, scratch_database
from channel_domain.store.migrations import migrate

CONTENTS = {"goals": "g", "products": ["p"], "price_policy": "p", "obligations": "o", "support": "s",
            "confidentiality": "c"}
TIERS = {"type": "tiered", "tiers": [{"up_to": "50000.00", "rate": "0.02"}, {"up_to": None, "rate": "0.03"}]}
FLAT = {"type": "flat", "rate": "0.02"}


def server_url(given: str | None) -> str:
    """--url, else the server the app would use, else the one the tests use, else embedded."""
    return (given or os.environ.get(DATABASE_URL_VARIABLE) or os.environ.get("CHANNEL_DOMAIN_TEST_DATABASE_URL")
            or database_url())


@contextmanager
def bench_database(server: str) -> Iterator[str]:
    """A migrated database of its own, dropped afterwards."""
    with scratch_database(server, prefix="cd_bench") as url:
        migrate(url)
        yield url


def signed_contract(app: ChannelDepartment, kind: str, name: str, commission: dict | None = None) -> UUID:
    return signed_contract_of(app, kind, name, commission)[1]


def signed_contract_of(app: ChannelDepartment, kind: str, name: str,
                       commission: dict | None = None, products: list[str] | None = None) -> tuple[UUID, UUID]:
    """(partner, contract): a partner approved and its contract for 2026 signed (for
    `products`, when given, else for the one product "p")."""
    with acting_as("spec", ["channel_specialist"]):
        partner = app.register_partner(kind=kind, name=name).id
        for document in ("business_licence", "legal_representative_id"):
            app.record_partner_document(partner, document, f"{document}-{name}")
    with acting_as("mgr", ["channel_manager"]):
        app.review_partner(partner, "approve")
        contract = app.draft_contract(partner_id=partner, starts_on="2026-01-01", ends_on="2026-12-31",
                                      commission=commission or FLAT,
                                      **{**CONTENTS, **({"products": products} if products else {})}).id
        app.submit_contract(contract)
    with acting_as("gm", ["general_manager"]):
        app.approve_contract(contract)
    with acting_as("mgr", ["channel_manager"]):
        app.sign_contract(contract, "2026-01-01")
    return partner, contract


def token(url: str, actor: str, roles: list[str]) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        return create_token(conn, actor, roles)[1]


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median_ms(load: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        load()
        timings.append((time.perf_counter() - began) * 1000)
    return percentile(timings, 0.5)


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident memory so far (Linux's VmHWM), in MB, of the process or of the largest
    of its children: `serve` with several workers does its work in child processes."""
    peaks = [peak for peak in map(_peak_rss_kb, [pid, *_children(pid)]) if peak is not None]
    return max(peaks) / 1024 if peaks else None


def _peak_rss_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, reaped: bool = False) -> float | None:
    """The process's user and system CPU so far; with `reaped`, also that of every child it has
    waited for (Linux adds it to the parent's cutime and cstime). None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / _TICKS


def _descendants(root: int) -> list[int]:
    """The root and every process below it (a served app's workers, their projection processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _tree_cpu(root: int) -> dict[int, float]:
    """Each process of the tree, with the CPU of the children it has reaped: a process that
    ends is reaped by its parent, so its whole life's CPU stays in the tree's sum."""
    seconds = {pid: cpu_seconds(pid, reaped=True) for pid in _descendants(root)}
    return {pid: value for pid, value in seconds.items() if value is not None}


def _tree_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples of a tree: a child gone meanwhile was reaped into the root's
    figure with all its life's CPU, so what it had spent before the first sample comes off."""
    return (sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
            - sum(seconds for pid, seconds in before.items() if pid not in after))


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def postmaster_of(url: str) -> int | None:
    """The process id of the PostgreSQL server behind `url` when it runs on this machine (the
    parent of this connection's backend), else None."""
    with psycopg.connect(url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    if _comm(backend) != "postgres":
        return None  # on another host, or in another container: its process is not ours to see
    parent = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return parent if _comm(parent) == "postgres" else None


def _cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class CpuShares:
    """CPU seconds spent, while a load ran, by the server (its process and workers), by the
    PostgreSQL server the load used (None when it is not on this machine), and by this
    process (the load client)."""

    server: float
    postgres: float | None
    client: float

    def _parts(self) -> list[float]:
        return [self.server, self.postgres or 0.0, self.client]

    def _postgres(self, value: float, unit: str) -> str:
        return f"PostgreSQL {value:.{2 if unit == 'ms' else 0}f} {unit}" if self.postgres is not None \
            else "PostgreSQL not counted (not on this machine)"

    def per_request_ms(self, requests: int) -> str:
        server, postgres, client = (1000 * part / requests for part in self._parts())
        cores = _cores()
        return (f"CPU a request: server {server:.2f} ms, {self._postgres(postgres, 'ms')}, client {client:.2f} ms;"
                f" at that, {cores} cores allow at most {cores * 1000 / (server + postgres + client):,.0f}/s")

    def busy(self, seconds: float) -> str:
        """How much of the machine's cores the parties kept busy over `seconds`."""
        cores = _cores()
        server, postgres, client = (100 * part / (seconds * cores) for part in self._parts())
        return (f"the {cores} cores {server + postgres + client:.0f} % busy (server {server:.0f} %,"
                f" {self._postgres(postgres, '%')}, client {client:.0f} %)")


@contextmanager
def cpu_shares(server_pid: int, url: str) -> Iterator[Callable[[], CpuShares]]:
    """Measures the CPU of the block by party: the figures are read when the block ends. The
    server's and PostgreSQL's processes are counted as trees, so a backend or a worker that
    ends inside the block still counts (through its parent's reaped children's CPU)."""
    postmaster = postmaster_of(url)

    def sample() -> tuple[dict[int, float], dict[int, float] | None, float]:
        return (_tree_cpu(server_pid), _tree_cpu(postmaster) if postmaster is not None else None,
                time.process_time())

    before = sample()
    shares: list[CpuShares] = []
    yield lambda: shares[0]
    after = sample()
    postgres = _tree_spent(before[1], after[1]) if before[1] is not None and after[1] is not None else None
    shares.append(CpuShares(_tree_spent(before[0], after[0]), postgres, after[2] - before[2]))


@dataclass
class Served:
    base: str
    pid: int


@contextmanager
def served(url: str, *, projections: bool = False, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`channel-domain serve` in a process of its own on a free port, as deployed (one worker
    per core, access log on), by default with projections off: the benchmarks drive the read
    models themselves; with them on it also delivers webhooks, as deployed. Its log goes to a
    file: a pipe nobody reads would stall it once full."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executable = Path(sys.executable).with_name("channel-domain")
    env = {**os.environ, **(env or {}), DATABASE_URL_VARIABLE: url}
    log = open(os.environ["BENCH_SERVER_LOG"], "w+b") if os.environ.get("BENCH_SERVER_LOG") else tempfile.TemporaryFile()
    process = subprocess.Popen(
        [str(executable), "serve", "--port", str(port), "--projections" if projections else "--no-projections"],
        env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer within 60 s")
            time.sleep(0.1)
        yield Served(base, process.pid)
    finally:
        _stop(process)
        log.close()


@contextmanager
def relayed(url: str, nats_url: str) -> Iterator[None]:
    """`channel-domain relay nats` in a process of its own, as deployed, until the block ends."""
    executable = Path(sys.executable).with_name("channel-domain")
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([str(executable), "relay", "nats", "--url", nats_url],
                               env={**os.environ, DATABASE_URL_VARIABLE: url}, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the relay exited: {log.read().decode(errors='replace')[-2000:]}")
        yield
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
