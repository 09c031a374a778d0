"""P11: Merkle proofs over a large log — the tree built, proof sizes, inclusion and consistency
proofs served over HTTP at a steady rate, and whether the tree and its checkpoints keep up with
a P3-style import."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import psycopg
from common import percentile
from http_load import Load, _open_loop

from channel_domain.application import ChannelDepartment
from channel_domain.store import checkpoints
from channel_domain.store.projecting import ProjectionRunner
from projections import all_projections

SAMPLE_EVERY_S = 0.2


def build_tree(url: str) -> tuple[int, float]:
    """(leaves, seconds) to build the tree over the whole log from nothing, the `audit_merkle`
    projection alone in this process."""
    app = ChannelDepartment(url)
    try:
        runner = ProjectionRunner(app, [p for p in all_projections() if p.name == "audit_merkle"])
        began = time.perf_counter()
        runner.catch_up_all()
        seconds = time.perf_counter() - began
        with app.event_recorder.datastore.get_connection() as conn:
            leaves = conn.execute("SELECT count(*) AS n FROM merkle_leaves").fetchone()["n"]
        return leaves, seconds
    finally:
        app.close()


def signing_key(url: str, directory: Path) -> Path:
    """A key file for the server, its public key registered; and a first checkpoint of the tree."""
    path = directory / "checkpoint.pem"
    key = checkpoints.create_key_file(path)
    app = ChannelDepartment(url)
    try:
        datastore = app.event_recorder.datastore
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            checkpoints.make_current(curs, key)
        checkpoints.make(datastore, key)
    finally:
        app.close()
    return path


def sample_positions(url: str, count: int, seed: int = 11) -> tuple[list[int], int]:
    """`count` positions of leaves picked at random, and the latest checkpoint's tree size."""
    with psycopg.connect(url) as conn:
        size = conn.execute("SELECT tree_size FROM merkle_checkpoints ORDER BY id DESC LIMIT 1").fetchone()[0]
        picked = random.Random(seed).sample(range(size), min(count, size))
        positions = [row[0] for row in conn.execute(
            "SELECT position FROM merkle_leaves WHERE leaf_index = ANY(%s)", (picked,))]
    return positions, size


@dataclass(frozen=True)
class Sizes:
    inclusion_max: int
    consistency_max: int


def proof_sizes(base: str, reader: str, positions: list[int], size: int, probes: int = 100) -> Sizes:
    """The longest inclusion and consistency proofs among `probes` of each, in hashes."""
    rng = random.Random(5)
    headers = {"Authorization": f"Bearer {reader}"}
    inclusion = consistency = 0
    with httpx.Client(base_url=base, timeout=60) as client:
        for position in positions[:probes]:
            answer = client.get("/v1/audit/proofs/inclusion", params={"position": position}, headers=headers)
            answer.raise_for_status()
            inclusion = max(inclusion, len(answer.json()["audit_path"]))
        for _ in range(probes):
            answer = client.get("/v1/audit/proofs/consistency", params={"first": rng.randint(1, size)},
                                headers=headers)
            answer.raise_for_status()
            consistency = max(consistency, len(answer.json()["proof"]))
    return Sizes(inclusion, consistency)


def read_proofs(base: str, reader: str, kind: str, positions: list[int], size: int, rate: float,
                count: int) -> Load:
    """`count` proofs at a steady `rate` a second, open loop (as P7): inclusion of the events at
    `positions` in turn, or consistency of a random older size with the latest checkpoint's."""
    rng = random.Random(7)
    firsts = [rng.randint(1, size) for _ in range(count)]
    headers = {"Authorization": f"Bearer {reader}"}

    async def read(session: aiohttp.ClientSession, _: int, number: int) -> int:
        path = (f"/v1/audit/proofs/inclusion?position={positions[number % len(positions)]}" if kind == "inclusion"
                else f"/v1/audit/proofs/consistency?first={firsts[number % count]}")
        async with session.get(path, headers=headers) as answer:
            await answer.read()
            return answer.status

    async def warm_then_measure() -> Load:
        await _open_loop(base, rate, max(10, int(rate)), read)  # a second unmeasured: pools filled
        return await _open_loop(base, rate, count, read)

    return asyncio.run(warm_then_measure())


@dataclass(frozen=True)
class KeepingUp:
    samples: list[tuple[float, int, int, int]]  # (seconds since the import began, head, tree, checkpointed)
    import_s: float
    caught_up_s: float | None  # after the import ended: until the tree reached the head
    checkpoints: int  # made while the import ran and until the tree caught up

    def lags(self, first: float, last: float) -> list[int]:
        """The tree's lag (positions behind the head) in samples between two fractions of the import."""
        return [head - tree for at, head, tree, _ in self.samples
                if first * self.import_s <= at <= last * self.import_s]

    @property
    def max_lag(self) -> int:
        return max((head - tree for _, head, tree, _ in self.samples), default=0)

    @property
    def max_checkpoint_lag(self) -> int:
        return max((head - signed for at, head, _, signed in self.samples if at <= self.import_s), default=0)


def keeping_up(url: str, run_import, timeout_s: float = 120) -> KeepingUp:  # noqa: ANN001
    """Sample, every 0.2 s, the head, the tree's position and the latest checkpoint's while
    `run_import()` runs, then until the tree reaches the head."""
    samples: list[tuple[float, int, int, int]] = []
    stop = threading.Event()
    began = time.perf_counter()

    def sample() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                head, tree, signed = conn.execute(
                    "SELECT (SELECT coalesce(max(position), 0) FROM events),"
                    " (SELECT coalesce(max(position), 0) FROM merkle_leaves),"
                    " coalesce((SELECT l.position FROM merkle_leaves l WHERE l.leaf_index ="
                    "  (SELECT tree_size - 1 FROM merkle_checkpoints ORDER BY id DESC LIMIT 1)), 0)").fetchone()
                samples.append((time.perf_counter() - began, head, tree, signed))
                stop.wait(SAMPLE_EVERY_S)

    with psycopg.connect(url) as conn:
        made_before = conn.execute("SELECT count(*) FROM merkle_checkpoints").fetchone()[0]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run_import()
        import_s = time.perf_counter() - began
        caught_up = None
        with psycopg.connect(url, autocommit=True) as conn:
            head = conn.execute("SELECT max(position) FROM events").fetchone()[0]
            while time.perf_counter() - began < import_s + timeout_s:
                if conn.execute("SELECT coalesce(max(position), 0) FROM merkle_leaves").fetchone()[0] >= head:
                    caught_up = time.perf_counter() - began - import_s
                    break
                time.sleep(0.05)
    finally:
        stop.set()
        sampler.join()
    with psycopg.connect(url) as conn:
        made = conn.execute("SELECT count(*) FROM merkle_checkpoints").fetchone()[0] - made_before
    return KeepingUp(samples, import_s, caught_up, made)


@dataclass(frozen=True)
class TimelinePages:
    versions: int
    p50_ms: dict[str, float]  # by where the page starts: first, middle, last
    p99_ms: dict[str, float]


def timeline_pages(base: str, auditor: str, record: str, versions: int, reads: int = 30) -> TimelinePages:
    """The workspace's timeline of `record` (with `versions` events) as an auditor's browser asks
    for it: signed in once (the session cookie, never the token, on each page), then `reads` GETs
    of its first, middle and last page of 50, one after another."""
    with httpx.Client(base_url=base, timeout=60) as browser:
        form = browser.get("/audit/sign-in")
        form.raise_for_status()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed = browser.post("/audit/sign-in", data={"csrf_token": csrf, "token": auditor, "next": "/audit/"})
        if signed.status_code != 303:
            raise RuntimeError(f"signing in to the workspace answered {signed.status_code}: {signed.text[:200]}")
        p50: dict[str, float] = {}
        p99: dict[str, float] = {}
        for where, after in (("first", 0), ("middle", versions // 2), ("last", versions - 50)):
            timings = []
            for _ in range(reads):
                began = time.perf_counter()
                page = browser.get(f"/audit/records/{record}", params={"after": after})
                timings.append((time.perf_counter() - began) * 1000)
                page.raise_for_status()
                if f'id="v{after + 1}"' not in page.text:
                    raise RuntimeError(f"the page after version {after} does not show version {after + 1}")
            p50[where], p99[where] = percentile(timings, 0.5), percentile(timings, 0.99)
    return TimelinePages(versions, p50, p99)


def latest_version(url: str, record: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT max(originator_version) FROM events WHERE originator_id = %s",
                            (record,)).fetchone()[0]
