"""The event feed: pages of feed items in position order, and a shared tail of the log that
every waiting client of a process follows.

Every position a client is given is final: it comes through `EventLog`'s fence, so no event
a running transaction still holds can later appear before it (store/log.py). A client that
resumes after the last position it was given therefore misses nothing and sees nothing twice.

Cost. Clients at the head — long-polls waiting for news, Server-Sent Event streams — do not
read the database themselves. One `FeedTail` per process polls the log (one short read-only
transaction every `poll_interval_s`) only while at least one client waits, decodes each new
event into its feed item once, and wakes every waiting client; a hundred idle streams cost
what one does. It pauses when the last client leaves and starts again from the head when it
has been unwanted for `linger_s` — so nothing reads the log while nobody waits. A client that
is behind reads its own bounded pages (`read_page`) until it reaches what the tail holds,
then follows the tail.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Notification

from channel_domain.store.log import EventLog, settled_head
from integration.items import EventFilter, feed_items

logger = logging.getLogger(__name__)

READ_BATCH = 1000  # rows a reader takes from the log at once
SCAN_BUDGET = 20_000  # events one page may examine for a narrow filter before it answers anyway
MIN_GAP_WAIT_S = 0.25  # a gap's writer is usually milliseconds from its commit: worth waiting for
HEAD_WAIT_S = 5.0  # how long a stream starting at the head waits for writers that could commit below it


@dataclass(frozen=True)
class Entry:
    """One event as the feed sends it: its item already serialised, its notification (without
    its stored bytes) kept only for filtering."""

    position: int
    type: str
    item_json: str
    notification: Notification


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next_after: int  # the last position examined: every event up to it was matched or filtered out


def entries_of(app: Any, notifications: Sequence[Notification]) -> list[Entry]:
    """Decode `notifications` into feed items (personal data as markers) and serialise each once."""
    items = feed_items(app, notifications)
    return [Entry(n.id, item["type"], _json(item), dataclasses.replace(n, state=b""))
            for n, item in zip(notifications, items, strict=True)]


def _json(item: dict[str, Any]) -> str:
    # As Starlette's JSONResponse writes it, so both ways of answering read the same.
    return json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def read_page(app: Any, after: int, wanted: EventFilter, limit: int, *, gap_wait_s: float) -> Page:
    """Up to `limit` matching events after `after`, read by this caller alone (it blocks: run
    it in a thread). Stops at a gap a running transaction may still fill, waiting for that
    transaction at most `gap_wait_s` when it has found nothing yet; examines at most
    `SCAN_BUDGET` events, so a narrow filter far behind the head answers in bounded time —
    its `next_after` then moves past what it skipped."""
    log = EventLog(app.event_recorder, after=after)
    unfiltered = not (wanted.types or wanted.stream_types or wanted.stream_id)
    batch_size = min(limit, READ_BATCH) if unfiltered else READ_BATCH
    deadline = time.monotonic() + gap_wait_s
    pause = 0.001
    found: list[Notification] = []
    examined = 0
    while examined < SCAN_BUDGET:
        batch = log.read(batch_size)
        examined += len(batch)
        for notification in batch:
            if wanted(notification):
                found.append(notification)
                if len(found) == limit:
                    return Page(entries_of(app, found), notification.id)
        if log.held_at_gap:
            if found or time.monotonic() >= deadline:
                break
            time.sleep(pause)  # the gap's writer is usually milliseconds from its commit
            pause = min(pause * 2, 0.05)
        elif len(batch) < batch_size:
            break  # caught up with everything final
    return Page(entries_of(app, found), log.position)


class FeedTail:
    """One reader at the head of the log for a whole process, shared by every waiting client.

    Lives on the process's event loop; its reads run on a thread of its own, so a busy pool
    of request threads never delays the news. It keeps the last `capacity` events (decoded)
    so that clients a little behind — a slow consumer, a long-poll between two requests —
    are served from memory.
    """

    def __init__(self, app: Any, *, poll_interval_s: float = 0.01, linger_s: float = 5.0,
                 capacity: int = 5000) -> None:
        self.app = app
        self.poll_interval_s = poll_interval_s
        self.linger_s = linger_s
        self.capacity = capacity
        self.polls = 0  # reads of the log by this tail, for /metrics
        self._waiting = 0
        self._wanted = asyncio.Event()  # set while at least one client waits
        self._changed = asyncio.Event()  # replaced by a fresh one each time the tail moves
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-tail")
        self._reset()

    def _reset(self) -> None:
        # Every final position between `held_from` and here is in memory. (Below `held_from`
        # the tail promises nothing: a client there reads alone, through its own fence.)
        self.examined = 0
        self.held_from: int | None = None  # None while stopped
        self._positions: list[int] = []
        self._entries: list[Entry] = []

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[FeedTail]:
        """While the block runs, the tail reads the log; on entry it has started (from the head
        when it was stopped) or the error that stopped it is raised."""
        self._waiting += 1
        self._wanted.set()
        try:
            if self._task is None:
                loop = asyncio.get_running_loop()
                self._error = None
                self._started = loop.create_future()
                self._task = loop.create_task(self._run(), name="feed-tail")
            assert self._started is not None
            await asyncio.shield(self._started)
            yield self
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._wanted.clear()

    def covers(self, position: int) -> bool:
        """Whether every event after `position` that is final reaches clients through the tail."""
        return self.held_from is not None and position >= self.held_from

    def collect(self, after: int, wanted: EventFilter, limit: int) -> Page:
        """The matching events after `after` the tail holds (`covers(after)` must hold)."""
        found: list[Entry] = []
        for entry in self._entries[bisect.bisect_right(self._positions, after):]:
            if wanted(entry.notification):
                found.append(entry)
                if len(found) == limit:
                    return Page(found, entry.position)
        return Page(found, max(after, self.examined))

    async def wait_beyond(self, position: int, timeout_s: float) -> None:
        """Until the tail has examined past `position`, or `timeout_s`; raises the error that
        stopped the tail (the database went away) so the client hears of it."""
        deadline = time.monotonic() + timeout_s
        while self.examined <= position or self.held_from is None:
            if self._error is not None:
                raise self._error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = self._started
        assert started is not None
        try:
            # The visible head, not a settled one: the tail serves only clients at or past
            # `held_from`, who asked for nothing below it, so a late commit below it is not
            # the tail's to deliver; and no waiting client should fail because some writer
            # is slow (the stream's "new events only" start is settled: `start_of_new_events`).
            head = await loop.run_in_executor(self._executor, self.app.event_recorder.max_notification_id) or 0
            log = EventLog(self.app.event_recorder, after=head)
            self.examined = self.held_from = head
            started.set_result(None)
            self._moved()
            while True:
                if not self._wanted.is_set():
                    # Nobody waits: read nothing. Clients come back within a moment (a
                    # long-poll between requests); after `linger_s` start afresh at the head.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wanted.wait(), self.linger_s)
                    if not self._wanted.is_set():
                        return
                entries = await loop.run_in_executor(self._executor, self._read, log)
                self._append(entries, log.position)
                if len(entries) < READ_BATCH:
                    await asyncio.sleep(self.poll_interval_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("the feed's reader stopped: %s", type(error).__name__, exc_info=True)
            self._error = error
            if not started.done():
                started.set_exception(error)
        finally:
            self._task = None
            self._reset()
            self._moved()

    def _read(self, log: EventLog) -> list[Entry]:
        self.polls += 1
        return entries_of(self.app, log.read(READ_BATCH))

    def _append(self, entries: list[Entry], examined: int) -> None:
        if entries:
            self._positions.extend(entry.position for entry in entries)
            self._entries.extend(entries)
            if len(self._entries) > 2 * self.capacity:  # trimmed in steps: amortised O(1) per event
                drop = len(self._entries) - self.capacity
                self.held_from = self._positions[drop - 1]
                del self._positions[:drop], self._entries[:drop]
        if examined > self.examined:
            self.examined = examined
            self._moved()

    def _moved(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


Stopping = Callable[[], bool]


async def _read_alone(app: Any, after: int, wanted: EventFilter, limit: int, gap_wait_s: float) -> Page:
    return await asyncio.to_thread(read_page, app, after, wanted, limit, gap_wait_s=gap_wait_s)


async def next_page(tail: FeedTail, after: int, wanted: EventFilter, limit: int, wait_s: float,
                    stopping: Stopping = lambda: False) -> Page:
    """The feed's long-poll: the next matching events after `after`; when there are none yet,
    waits up to `wait_s` for one (or until `stopping()`, the server shutting down)."""
    if wait_s <= 0:
        # Read alone, not from the tail's memory: it may be a poll interval behind, and a
        # client reading right after its own command expects to see it.
        return await _read_alone(tail.app, after, wanted, limit, MIN_GAP_WAIT_S)
    deadline = time.monotonic() + wait_s
    page = Page([], after)
    async with tail.watching():
        while True:
            remaining = deadline - time.monotonic()
            if tail.covers(page.next_after):
                page = tail.collect(page.next_after, wanted, limit)
                if page.entries or remaining <= 0 or stopping():
                    return page
                # In slices, so that a server shutting down answers within half a second.
                await tail.wait_beyond(page.next_after, min(remaining, 0.5))
            else:
                before = page.next_after
                page = await _read_alone(tail.app, before, wanted, limit, max(remaining, MIN_GAP_WAIT_S))
                if page.entries or remaining <= 0 or stopping():
                    return page
                if page.next_after == before:
                    await asyncio.sleep(tail.poll_interval_s)


async def follow(tail: FeedTail, after: int, wanted: EventFilter,
                 stopping: Stopping = lambda: False) -> AsyncIterator[Entry]:
    """Every matching event after `after`, for as long as the caller iterates (Server-Sent
    Events), or until `stopping()` (its token revoked): looked at before each page and at
    least every half second while it waits."""
    async with tail.watching():
        position = after
        while not stopping():
            if tail.covers(position):
                page = tail.collect(position, wanted, READ_BATCH)
            else:
                page = await _read_alone(tail.app, position, wanted, READ_BATCH, 1.0)
            for entry in page.entries:
                yield entry
            if not page.entries:
                if tail.covers(page.next_after):
                    await tail.wait_beyond(page.next_after, 0.5)
                elif page.next_after == position:
                    await asyncio.sleep(tail.poll_interval_s)
            position = page.next_after


async def start_of_new_events(app: Any, wait_s: float = HEAD_WAIT_S) -> int:
    """Where "new events only" starts: the head once every position below it is final, so an
    event that commits after this answer at a lower position (its writer drew the position
    earlier) is not lost behind the start. Raises `WritersStillOpen` when a transaction that
    could still commit below the head stays open `wait_s`."""
    return await asyncio.to_thread(settled_head, app.event_recorder, wait_s)


async def beyond_head(tail: FeedTail, after: int) -> int | None:
    """The log's head when `after` lies beyond it, else None. Read afresh unless the tail has
    already examined past `after` (it examines only positions that were visible, and what is
    visible stays so): a position no log here has reached comes from elsewhere — another
    environment, a restored backup — and waiting for it would hang the client silently."""
    if after == 0 or (tail.held_from is not None and after <= tail.examined):
        return None
    head = await asyncio.to_thread(tail.app.event_recorder.max_notification_id) or 0
    return head if after > head else None
