"""One server-wide timer for ICE server pushes: a heap of (due, key) and a single loop callback.

Each connection in a room gets fresh ICE servers `refresh_margin` seconds before its set expires.
Entries are never cancelled; the owner ignores stale keys when they fire (lazy deletion).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Hashable

#: Never push sooner than this after the previous set (a margin ≥ ttl must not become a busy loop).
MIN_PUSH_DELAY = 1.0


def push_at(now: float, expires_at: float, margin: float, floor: float = MIN_PUSH_DELAY) -> float:
    """When to push a fresh set: `margin` seconds before `expires_at`, but at least `floor` from now."""
    return max(expires_at - margin, now + floor)


class TimerHeap:
    """Pure min-heap of due times; `pop_due` returns the keys whose time has come, earliest first."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, key: Hashable) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), key))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        due: list[Hashable] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due


class Timers:
    """Drives a TimerHeap with one `loop.call_at` handle, re-armed for the earliest entry."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[list[Hashable]], None]) -> None:
        self.loop = loop
        self.fire = fire
        self.heap = TimerHeap()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    def add(self, delay: float, key: Hashable) -> None:
        due = self.loop.time() + max(0.0, delay)
        self.heap.push(due, key)
        if self._armed_for is None or due < self._armed_for:
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = due
        self._handle = self.loop.call_at(due, self._run)

    def _run(self) -> None:
        self._handle = self._armed_for = None
        keys = self.heap.pop_due(self.loop.time())
        try:
            if keys:
                self.fire(keys)
        finally:
            nxt = self.heap.next_due()
            if nxt is not None:
                self._arm(nxt)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._armed_for = None
