"""Bytes relayed through a TURN server both ways, counted, for the tests that meter them.

Two allocations (aioice, `tests/turnclient.py`) send to each other's relayed address: each is the
other's peer, so nothing leaves the TURN server's own addresses. Both are closed at the end because
coturn publishes a session's totals at deallocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests import turnclient
from turnkit import clock, credentials

#: Bytes in one datagram.
PAYLOAD = 1000
#: How far a metered total may stray from what was sent (UDP on a loaded host).
TOLERANCE = 0.02
#: One pause of PACE_SLEEP seconds every PACE_EVERY datagrams (~20 Mbit/s each way): a loaded
#: 2-core host drops UDP bursts.
PACE_EVERY = 10
PACE_SLEEP = 0.004

#: An allocation as `turnclient.allocate` returns it: the TURN transport and its inbox.
Allocation = tuple[Any, turnclient.Inbox]


@dataclass(frozen=True)
class Relayed:
    """What one `relay_between` sent and what arrived, in bytes: `sent` each way, `received` by A and by B."""

    sent: int
    received: tuple[int, int]


def _drained(inbox: turnclient.Inbox) -> int:
    total = 0
    while not inbox.queue.empty():
        total += len(inbox.queue.get_nowait()[0])
    return total


async def relay_between(
    a: Allocation,
    b: Allocation,
    packets: int,
    payload: int = PAYLOAD,
    at: Mapping[int, Callable[[], None]] | None = None,
    warmup: float = 0.3,
    settle: float = 0.5,
) -> Relayed:
    """A and B each send `packets` × `payload` bytes to the other's relayed address, then both close.

    `at` maps a packet number to a blocking action run (in a thread) once that many have gone out
    each way, e.g. stopping a daemon mid-stream. `warmup` lets the first datagrams install the
    permissions and channels both ways; `settle` lets the last ones arrive before and after closing.
    """
    (ta, inbox_a), (tb, inbox_b) = a, b
    try:
        ra, rb = ta.get_extra_info("sockname"), tb.get_extra_info("sockname")
        tb.sendto(b"b" * payload, ra)  # permissions and channels both ways first
        ta.sendto(b"a" * payload, rb)
        await asyncio.sleep(warmup)
        for i in range(1, packets):
            ta.sendto(b"a" * payload, rb)
            tb.sendto(b"b" * payload, ra)
            if i % PACE_EVERY == 0:
                await asyncio.sleep(PACE_SLEEP)
            if at and i in at:
                await asyncio.to_thread(at[i])
        await asyncio.sleep(settle)
    finally:
        ta.close()
        tb.close()
    await asyncio.sleep(settle)
    return Relayed(packets * payload, (_drained(inbox_a), _drained(inbox_b)))


async def relay_both_ways(
    port: int,
    secret: str,
    users: tuple[str, str],
    packets: int,
    at: Mapping[int, Callable[[], None]] | None = None,
) -> Relayed:
    """Allocate for both users (TURN REST credentials from `secret`) on the TURN server at
    127.0.0.1:`port` (UDP) and relay between them (`relay_between`)."""
    now = clock.now()
    first, second = (credentials.issue(user, secret, now, 600) for user in users)
    a = await turnclient.allocate(port, first.username, first.password)
    try:
        b = await turnclient.allocate(port, second.username, second.password)
    except BaseException:
        a[0].close()
        raise
    return await relay_between(a, b, packets, at=at)


def arrived(row: Mapping[str, Any], sent: int, tolerance: float = TOLERANCE) -> bool:
    """A user's `turnkit usage --by user` row holds its ended session and (nearly) all of both directions."""
    least = sent * (1 - tolerance)
    return bool(row.get("sessions")) and row.get("bytes_up", 0) >= least and row.get("bytes_down", 0) >= least


def assert_metered(row: Mapping[str, Any], relayed: Relayed, tolerance: float = TOLERANCE) -> None:
    """The row shows one session and each direction within `tolerance` of what was sent."""
    sent = relayed.sent
    assert abs(row.get("bytes_up", 0) - sent) <= sent * tolerance, (row, relayed)
    assert abs(row.get("bytes_down", 0) - sent) <= sent * tolerance, (row, relayed)
    assert row.get("sessions") == 1, (row, relayed)
