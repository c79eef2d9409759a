"""Section 5: call setup: two aiortc peers join a room through turnkit signaling, relay-only through coturn."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import Ctx
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, percentile
from tests.signaling.callpeer import CallPeer
from tests.signaling.callstack import Stack, call_stack

#: Below this a call needed no ICE check retransmission (aioice's first STUN retransmit comes after 500 ms).
RETRANSMIT_MS = 250
SETUP = Target("call setup p50 (join → data channel open, relay only)", "<=", 500, "ms", "issues 3, 6")


async def one_call(stack: Stack, n: int) -> tuple[float, float, bool]:
    """(ms from the first join to both channels open, ms from the second join, both ends relayed)."""
    a = CallPeer(stack.ws_url(stack.token(f"bench-a{n}")), relay_only=True)
    b = CallPeer(stack.ws_url(stack.token(f"bench-b{n}")), relay_only=True)
    try:
        await a.connect()
        await b.connect()
        room = f"bench-call-{n}"
        start = time.perf_counter()
        await a.join(room)
        second = time.perf_counter()
        await b.join(room)
        await asyncio.gather(a.wait_open(), b.wait_open())
        end = time.perf_counter()
        relayed = a.selected_pair() == ("relay", "relay") and b.selected_pair() == ("relay", "relay")
        return (end - start) * 1000, (end - second) * 1000, relayed
    finally:
        await a.close()
        await b.close()


async def _calls(stack: Stack, count: int) -> list[tuple[float, float, bool]]:
    await one_call(stack, -1)  # warm-up: aiortc imports and codecs, first TURN allocations
    return [await one_call(stack, i) for i in range(count)]


def bench(ctx: Ctx) -> Section:
    count = ctx.count(20, 2)
    with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp, call_stack(Path(tmp)) as stack:
        calls = asyncio.run(_calls(stack, count))
    first = [c[0] for c in calls]
    second = [c[1] for c in calls]
    relayed = sum(c[2] for c in calls)
    fast = sum(ms < RETRANSMIT_MS for ms in first)
    rows = (
        (
            "first join → both data channels open",
            fmt(median(first)),
            fmt(percentile(first, 90)),
            fmt(max(first)),
            f"{fast}/{len(first)}",
        ),
        ("second join (the offer) → both open", fmt(median(second)), fmt(percentile(second, 90)), fmt(max(second)), ""),
    )
    method = f"""\
`tests/signaling/callpeer.py`'s aiortc peer (the same flow as the demo page: the newcomer offers, ICE servers with
TURN credentials come from `all-users`, candidates queued until the remote description is set), two peers per call,
`iceTransportPolicy: relay`, through `turnkit signaling serve` and a local coturn started from turnkit-rendered
config. Both WebSockets are open before the clock starts; {count} sequential calls after one warm-up call; the
servers and peers are not pinned (aiortc and coturn both need the CPU during ICE). Setup times are bimodal: ~40 ms,
or ~510 ms when the controlling agent's first connectivity check reaches the other relay before that side's TURN
permission exists and is dropped, so it waits for aioice's first retransmission (RTO 500 ms); the last column
counts the calls that needed none."""
    return Section(
        "call",
        "5. Call setup",
        method,
        tables=[Table(("interval", "p50 ms", "p90 ms", "max ms", f"calls < {RETRANSMIT_MS} ms"), rows)],
        verdicts=[Verdict(SETUP, median(first), f"{relayed}/{len(calls)} calls relay↔relay")],
    )
