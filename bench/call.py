"""Section 5: call setup: two aiortc peers join a room through turnkit signaling, relay-only through coturn."""

from __future__ import annotations

import asyncio
import os
import time

import jwt

from bench import profile, stack, turn
from bench.callpeer import CallPeer
from bench.common import Ctx
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, percentile
from turnkit import keyring

#: Below this a call needed no ICE check retransmission (aioice's first STUN retransmit comes after 500 ms).
RETRANSMIT_MS = 250
SETUP = Target("aiortc call setup p50 (join → data channel open, relay only)", "<=", 500, "ms", "issues 3, 6")


def ws_url(server: stack.Server, sub: str) -> str:
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 900}, stack.JWT_SECRET, algorithm="HS256")
    return f"{server.url}?token={token}"


async def one_call(server: stack.Server, n: int) -> tuple[float, float, bool]:
    """(ms from the first join to both channels open, ms from the second join, both ends relayed)."""
    a = CallPeer(ws_url(server, f"bench-a{n}"))
    b = CallPeer(ws_url(server, f"bench-b{n}"))
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


async def _calls(server: stack.Server, count: int, first: int = 0) -> list[tuple[float, float, bool]]:
    await one_call(server, first - 1)  # warm-up: aiortc imports and codecs, first TURN allocations
    return [await one_call(server, first + i) for i in range(count)]


def _profile(ctx: Ctx, server: stack.Server, count: int) -> str:
    """py-spy of this process (the two aiortc peers) over `count` more calls, after the measured ones."""
    out = ctx.workdir / "call.prof"
    try:
        text = profile.while_running(os.getpid(), lambda: asyncio.run(_calls(server, count, 1000)), out, None)
    except RuntimeError as exc:
        return f"Profile not taken: {exc}"
    return profile.summary(text, f"the two aiortc peers (this process) over {count} more calls", "aioice/")


def bench(ctx: Ctx) -> Section:
    count = ctx.count(20, 2)
    ring = keyring.init(int(time.time()))
    coturn = turn.start(ctx.procs, ctx.workdir / "call-coturn", list(ring.accepted))
    server = stack.start_turnkit(ctx.procs, ctx.workdir, None, turn=(coturn.port, coturn.tls_port), ring=ring)
    calls = asyncio.run(_calls(server, count))
    verdict = Verdict(
        SETUP, median([c[0] for c in calls]), f"{sum(c[2] for c in calls)}/{len(calls)} calls relay↔relay"
    )
    notes = [_profile(ctx, server, ctx.count(5, 1))] if ctx.profile or verdict.met is False else []
    first = [c[0] for c in calls]
    second = [c[1] for c in calls]
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
`bench/callpeer.py`'s aiortc peer (the same flow as the demo page: the newcomer offers, ICE servers with
TURN credentials come from `all-users`, candidates queued until the remote description is set), two peers per call,
`iceTransportPolicy: relay`, through `turnkit signaling serve` and a local coturn started from turnkit-rendered
config. Both WebSockets are open before the clock starts; {count} sequential calls after one warm-up call; the
servers and peers are not pinned (aiortc and coturn both need the CPU during ICE). Setup times are bimodal: ~40 ms,
or ~510 ms when the controlling agent's first connectivity check reaches the other relay before that side's TURN
permission exists and is dropped, so it waits for aioice's first retransmission (RTO 500 ms); the last column
counts the calls that needed none."""
    return Section(
        "call",
        "5. Call setup (aiortc peers)",
        method,
        tables=[Table(("interval", "p50 ms", "p90 ms", "max ms", f"calls < {RETRANSMIT_MS} ms"), rows)],
        verdicts=[verdict],
        notes=notes,
    )
