"""Warnings that a client can provoke, said at most once per interval per kind.

A client that floods the server with bad input must not flood its log: the first line of a kind is
written, the next ones within `interval` seconds are counted and reported with the following line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """One warning line per kind per `interval`; the kinds are a small fixed set chosen by the caller."""

    def __init__(
        self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        if held:
            msg, args = msg + " (and %d more like it since the last report)", (*args, held)
        self.logger.warning(msg, *args)
