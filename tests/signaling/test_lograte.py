"""Client-provoked warnings: one line per kind per interval, the rest counted."""

from __future__ import annotations

import logging

import pytest

from signaling.lograte import RateLimitedLog


def test_one_warning_line_per_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    warn = RateLimitedLog(logging.getLogger("test.lograte"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.lograte"):
        for i in range(1000):
            warn.warning("bad", "peer %s misbehaved", i)
        warn.warning("other", "something else")
        now[0] += 10.0
        warn.warning("bad", "peer %s misbehaved", "last")
    assert [r.getMessage() for r in caplog.records] == [
        "peer 0 misbehaved",
        "something else",
        "peer last misbehaved (and 999 more like it since the last report)",
    ]
    assert not any(r.exc_info for r in caplog.records)
