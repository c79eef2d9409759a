"""Section 1: signaling relay throughput, turnkit vs the Node.js Socket.IO reference and the bare ws ceiling."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from bench import profile, stack
from bench.common import Ctx
from bench.procs import CLIENT_CORE, SERVER_CORE, children_cpu_seconds, core, cpu_seconds, run
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, ratio

PAIRS = 50
HEADERS = (
    "server",
    "msgs/s",
    "rtt p50 ms",
    "rtt p99 ms",
    "vs Socket.IO",
    "server CPU",
    "client CPU",
    "msgs/s per round",
)
PRELOAD = Path(__file__).with_name("preload.js")

MSGS = Target("turnkit msgs/s ÷ Socket.IO reference", ">=", 1.5, "×", "issues 3, 6")
P99 = Target("turnkit rtt p99 at 50 rooms", "<=", 10, "ms", "issues 3, 6")
REDIS = Target("turnkit Redis, 2 processes, msgs/s ÷ reference", ">=", 1.0, "×", "issue 6")


@dataclass(frozen=True)
class Load:
    """One relay-load.js result line."""

    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu: float = math.nan  # share of one core the server process(es) used during the run
    client_cpu: float = math.nan  # the same for the load client


def parse_load(stdout: str) -> Load:
    """The last JSON line relay-load.js printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"relay-load.js printed no result: {stdout[-500:]!r}")
    doc = json.loads(lines[-1])
    nan = float("nan")
    return Load(float(doc["msgs_per_s"]), float(doc.get("rtt_p50_ms", nan)), float(doc.get("rtt_p99_ms", nan)))


def load(server: stack.Server, seconds: float, split: list[int] | None = None, pids: Sequence[int] = ()) -> Load:
    """Run relay-load.js on the client core against `server` (or spread over `split` ports).

    Also reports how busy the server processes (`pids`, default the server) and the client were:
    a client near 100% means the figure is bounded by the load generator, not the server.
    """
    script = str(stack.node_dir() / "relay-load.js")
    argv = ["node", *(["-r", str(PRELOAD)] if split else []), script, server.proto, server.url, str(PAIRS)]
    env = {"TURNKIT_JWT_SECRET": stack.JWT_SECRET}
    if split:
        env["BENCH_SPLIT_PORTS"] = ",".join(map(str, split))
    watched = list(pids) or [server.proc.pid]
    before = [cpu_seconds(p) for p in watched]
    client_before, start = children_cpu_seconds(), time.monotonic()
    out = run([*argv, f"{seconds:g}"], pin=core(CLIENT_CORE), timeout=seconds + 120, env=env)
    wall = time.monotonic() - start
    server_cpu = sum(cpu_seconds(p) - b for p, b in zip(watched, before, strict=True)) / wall
    result = parse_load(out)
    return replace(result, server_cpu=server_cpu, client_cpu=(children_cpu_seconds() - client_before) / wall)


def bench(ctx: Ctx) -> Section:
    seconds = ctx.seconds(8.0)
    pin = core(SERVER_CORE)
    servers: dict[str, stack.Server] = {
        "Socket.IO reference": stack.start_reference(ctx.procs, "socketio", pin),
        "bare ws ceiling": stack.start_reference(ctx.procs, "ws", pin),
        "turnkit (memory)": stack.start_turnkit(ctx.procs, ctx.workdir, pin),
    }
    redis_url, redis = stack.start_redis(ctx.procs, ctx.workdir / "redis", pin)
    a = stack.start_turnkit(ctx.procs, ctx.workdir, pin, redis_url)
    b = stack.start_turnkit(ctx.procs, ctx.workdir, pin, redis_url)
    runs: dict[str, Callable[[], Load]] = {name: functools.partial(load, s, seconds) for name, s in servers.items()}
    both = [a.proc.pid, b.proc.pid, redis.pid]
    runs["turnkit (Redis, 2 processes)"] = lambda: load(a, seconds, split=[a.port, b.port], pids=both)
    results: dict[str, list[Load]] = {name: [] for name in runs}
    for _ in range(ctx.rounds):
        for name, go in runs.items():  # alternated: every round runs each server once, in turn
            results[name].append(go())
    med = {name: Load(*(median([getattr(x, f.name) for x in r]) for f in fields(Load))) for name, r in results.items()}
    ref = med["Socket.IO reference"].msgs_per_s
    rows = tuple(
        (
            name,
            fmt(m.msgs_per_s),
            fmt(m.p50_ms),
            fmt(m.p99_ms),
            fmt(ratio(m.msgs_per_s, ref)) + "×",
            f"{m.server_cpu:.0%}",
            f"{m.client_cpu:.0%}",
            " / ".join(fmt(x.msgs_per_s) for x in results[name]),
        )
        for name, m in med.items()
    )
    mem, red = med["turnkit (memory)"], med["turnkit (Redis, 2 processes)"]
    section = Section(
        "relay",
        "1. Signaling relay throughput",
        _method(seconds, ctx.rounds),
        tables=[Table(HEADERS, rows)],
        verdicts=[
            Verdict(MSGS, ratio(mem.msgs_per_s, ref), f"{fmt(mem.msgs_per_s)} vs {fmt(ref)} msgs/s"),
            Verdict(P99, mem.p99_ms),
            Verdict(REDIS, ratio(red.msgs_per_s, ref), f"{fmt(red.msgs_per_s)} msgs/s"),
        ],
    )
    if ctx.profile or any(v.met is False for v in section.verdicts[:2]):
        memory = servers["turnkit (memory)"]
        what = "the turnkit server (memory backend) under the same relay load"
        section.notes.append(_profile(ctx, memory, what, runs["turnkit (memory)"], seconds))
    if ctx.profile or section.verdicts[2].met is False:
        what = "one of the two Redis-backed turnkit processes under the split relay load"
        section.notes.append(_profile(ctx, a, what, runs["turnkit (Redis, 2 processes)"], seconds))
    return section


def _profile(ctx: Ctx, server: stack.Server, what: str, workload: Callable[[], Load], seconds: float) -> str:
    """py-spy on a turnkit server during one more load run: where the relay's CPU goes."""
    out = ctx.workdir / f"relay-{server.port}.prof"
    try:
        text = profile.during(server.proc.pid, seconds, workload, out, core(CLIENT_CORE))
    except RuntimeError as exc:
        return f"Profile not taken: {exc}"
    return profile.summary(text, what, "signaling/")


def _method(seconds: float, rounds: int) -> str:
    return f"""\
Same load client for every server: `relay-load.js` from `../shared/bench`, {PAIRS} rooms of two peers
playing offer/answer ping-pong with a 1.2 KB SDP for {seconds:g} s (a closed loop per room). Servers are
pinned to core 0, the load client to core 1; each of {rounds} rounds runs every server once, in turn, and the
table shows medians. turnkit runs `turnkit signaling serve` with JWT auth, frame validation, room checks and
its rate limiter on (limit raised above the load); the references have none of these.
**Redis, 2 processes:** two `turnkit signaling serve` processes sharing one `redis-server`, all three
pinned to core 0 (the same one-core server budget as the reference). One `relay-load.js` with a preload
(`bench/preload.js`) that alternates new WebSocket connections between the two processes, so the two peers of
every room sit on different processes and every relayed message crosses Redis pub/sub.
**CPU columns:** share of one core used by the server process(es) and by the load client over the run (median);
a client near 100% means that row is bounded by the load generator, not by the server. relay-load.js measures
round trips with `Date.now()`, so latencies are whole milliseconds."""
