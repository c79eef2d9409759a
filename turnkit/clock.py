"""The one place that reads the wall clock (pure modules take `now` as an argument)."""

from __future__ import annotations

import time


def now() -> int:
    return int(time.time())
