"""Group commit: the appends of this process's commands that become ready while earlier groups
are being written wait for them, and then go to the database together, in one call and one
transaction; each command keeps its own optimistic checks and gets its own answer.

There is no timer. A command that finds fewer than `GROUPS_IN_FLIGHT` groups being written
writes at once, alone; the commands that become ready meanwhile (other requests' threads,
while these wait on the database with the GIL released) queue, and the first of them writes
them all as the next group when a group is done. So one writer pays nothing for it, and under
load the groups grow with the load. Per command, one `append_events` call for a group of four
cost PostgreSQL 0.06 ms of CPU against 0.19 ms for one call a command (bench/append.py's P1
prints both ways). Two groups at a time, not one: with one, the writers' threads all waited on
the database together while the GIL sat idle (P1 with 4 writers, interleaved runs on one host:
2,470-2,590/s with one group at a time, 3,250-3,400/s with two, 2,360-2,430/s with none).

Whoever writes a group decides what a failure means for each of its commands (`write`): the
recorder writes a refused group again one command at a time, so a command refused by the
database fails alone and the others commit as if they had never met it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_COMMANDS = 64  # in one group
MAX_EVENTS = 1000  # in one group, unless one command alone has more
GROUPS_IN_FLIGHT = 2  # written at once; the next gathers behind them
PATIENCE_S = 0.02  # the longest an append waits for the group before it; then it begins its own


@dataclass(eq=False)
class Pending:
    """One command's append, waiting for its group to be written. Its writer answers it with
    `answer`, as soon as its answer is known, whatever is left of the group."""

    request: Any
    events: int
    positions: list[int] | None = None
    error: BaseException | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the queue's
    _taken: bool = False  # into a group
    _answered: bool = False
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)

    def answer(self, positions: list[int] | None = None, error: BaseException | None = None) -> None:
        """Its positions, or what refused it; the first answer stands."""
        with self._lock:
            if self._answered:
                return
            self.positions, self.error = positions, error
            self._answered = True
            self._wake.set()

    def result(self) -> list[int]:
        if self.error is not None:
            raise self.error
        if self.positions is None:  # the writer broke every promise: say so, never answer success
            raise RuntimeError("the group this append was in ended without an answer for it")
        return self.positions


@dataclass
class GroupStats:
    groups: int = 0
    commands: int = 0
    largest: int = 0
    impatient: int = 0  # groups begun beside others that took longer than PATIENCE_S
    refused: int = 0  # groups the database refused, written again one append at a time


class GroupCommit:
    """`write(group)` writes a group and answers each of its appends (`Pending.answer`).

    `groups_in_flight` groups are written at a time, so that the appends behind them gather
    into the next. But an append that waits longer than `patience_s` (the groups being written
    wait on a lock, say a closing of selling days) begins a group of its own beside them: slow
    appends hold back the others of their process no longer than that. The members of a slow
    group itself wait for it, as one command waits for its own transaction."""

    def __init__(self, write: Callable[[Sequence[Pending]], None], *, max_commands: int = MAX_COMMANDS,
                 max_events: int = MAX_EVENTS, patience_s: float = PATIENCE_S,
                 groups_in_flight: int = GROUPS_IN_FLIGHT) -> None:
        self._write = write
        self.max_commands = max(1, max_commands)
        self.max_events = max_events
        self.patience_s = patience_s
        self.groups_in_flight = max(1, groups_in_flight)
        self._lock = threading.Lock()
        self._queue: deque[Pending] = deque()
        self._in_flight = 0
        self.stats = GroupStats()

    def append(self, request: Any, events: int) -> list[int]:
        """Write this command's append in a group; returns its positions once its group has
        committed, or raises what refused it."""
        mine = Pending(request, events, _lock=self._lock)
        group: list[Pending] | None = None
        try:
            with self._lock:
                self._queue.append(mine)
                if self._in_flight < self.groups_in_flight:
                    group = self._take()
            while True:
                if group is not None:
                    # Usually begins with this append; when older ones fill it, this one waits on.
                    writing, group = group, None
                    self._write_group(writing)
                # Taken into a group being written, it waits for its answer, however long.
                handed = mine._wake.wait(None if mine._taken else self.patience_s)
                with self._lock:
                    if mine._answered:
                        return mine.result()
                    mine._wake.clear()
                    if not mine._taken:  # handed the next group, or out of patience
                        self.stats.impatient += not handed and self._in_flight > 0
                        group = self._take()
        except BaseException:
            # Interrupted (KeyboardInterrupt, SystemExit) before its group was written: it must
            # not be written later for a caller that has gone, nor keep a group's place.
            with self._lock:
                if not mine._taken:
                    self._queue.remove(mine)
            if group is not None:
                self._finish(group)
            raise

    def count_refused(self) -> None:
        with self._lock:
            self.stats.refused += 1

    def _take(self) -> list[Pending]:
        """The next group, from the front of the queue (under the lock)."""
        group = [self._queue.popleft()]
        events = group[0].events
        while self._queue and len(group) < self.max_commands and events + self._queue[0].events <= self.max_events:
            events += self._queue[0].events
            group.append(self._queue.popleft())
        for pending in group:
            pending._taken = True
        self._in_flight += 1
        self.stats.groups += 1
        self.stats.commands += len(group)
        self.stats.largest = max(self.stats.largest, len(group))
        return group

    def _write_group(self, group: list[Pending]) -> None:
        try:
            self._write(group)
        except BaseException as error:  # noqa: BLE001 - each unanswered append of the group raises it
            for pending in group:
                pending.answer(error=error)
        finally:
            self._finish(group)

    def _finish(self, group: list[Pending]) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._queue and self._in_flight < self.groups_in_flight:
                self._queue[0]._wake.set()  # the next group is theirs to write
            for pending in group:
                if not pending._answered:  # `result` says so: never a success
                    pending._answered = True
                    pending._wake.set()
