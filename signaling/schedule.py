"""When to push fresh ICE servers to a connection in a room. Pure.

Each connection in a room gets a fresh set `refresh_margin` seconds before its current set expires;
the hub keeps one timer per connection for it (`Hub.pushes`).
"""

from __future__ import annotations

#: Never push sooner than this after the previous set (a margin ≥ ttl must not become a busy loop).
MIN_PUSH_DELAY = 1.0


def push_at(now: float, expires_at: float, margin: float, floor: float = MIN_PUSH_DELAY) -> float:
    """When to push a fresh set: `margin` seconds before `expires_at`, but at least `floor` from now."""
    return max(expires_at - margin, now + floor)
