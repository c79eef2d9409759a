"""Section 1: signaling relay throughput and server CPU per relayed message, turnkit vs the Socket.IO reference and
the bare ws ceiling."""

from __future__ import annotations

import functools
import json
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

from bench import profile, stack
from bench.common import Ctx
from bench.procs import CLIENT_CORE, SERVER_CORE, core, run_windowed
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, ratio

PAIRS = 50
HEADERS = (
    "server",
    "msgs/s",
    "server µs/msg",
    "µs/msg vs Socket.IO",
    "msgs/s vs Socket.IO",
    "rtt p50 ms",
    "rtt p99 ms",
    "server CPU",
    "client CPU",
    "client µs/msg",
    "msgs/s per round",
)

MSGS = Target("turnkit msgs/s ÷ Socket.IO reference", ">=", 1.5, "×", "issue 13")
CPU = Target("turnkit server µs/msg ÷ Socket.IO reference", "<=", 0.67, "×", "issue 13")
CEILING = Target("moonshot: turnkit server µs/msg ÷ bare ws ceiling", "<=", 1.0, "×", "issue 13")
P99 = Target("turnkit rtt p99 at 50 rooms", "<=", 10, "ms", "issue 13")
REDIS = Target("turnkit Redis, 2 processes, msgs/s ÷ reference", ">=", 1.0, "×", "issue 13")


@dataclass(frozen=True)
class Load:
    """One load.js run: its result line, and the CPU the server processes used in the measured window."""

    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    messages: float = math.nan  # relayed messages counted in the window
    seconds: float = math.nan  # length of the window
    client_cpu_s: float = math.nan  # the load client's own utime+stime in the window
    server_cpu_s: float = math.nan  # utime+stime of every server process (incl. redis-server) in the window

    @property
    def server_us_per_msg(self) -> float:
        return ratio(self.server_cpu_s * 1e6, self.messages)

    @property
    def client_us_per_msg(self) -> float:
        return ratio(self.client_cpu_s * 1e6, self.messages)

    @property
    def server_share(self) -> float:
        """Share of one core the server processes used over the window."""
        return ratio(self.server_cpu_s, self.seconds)

    @property
    def client_share(self) -> float:
        return ratio(self.client_cpu_s, self.seconds)


def parse_load(stdout: str) -> Load:
    """The result line load.js printed (the last JSON line that is not a start/stop event)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{") and '"event"' not in line]
    if not lines:
        raise RuntimeError(f"load.js printed no result: {stdout[-500:]!r}")
    doc = json.loads(lines[-1])

    def num(key: str) -> float:
        value = doc.get(key)
        return math.nan if value is None else float(value)

    return Load(
        num("msgs_per_s"), num("rtt_p50_ms"), num("rtt_p99_ms"), num("messages"), num("seconds"), num("client_cpu_s")
    )


def load(server: stack.Server, seconds: float, split: list[int] | None = None, pids: Sequence[int] = ()) -> Load:
    """Run load.js on the client core against `server` (or spread over the `split` ports).

    Server CPU is utime+stime of `pids` (default: the server) over load.js's measured window, from /proc.
    """
    stack.npm_ci()
    argv = ["node", str(stack.LOAD), server.proto, server.url, str(PAIRS), f"{seconds:g}"]
    # Fresh room names per run: load.js exits without closing, so turnkit parks the last run's members for its
    # resume window, and rooms of the same names would still be full when the next round starts.
    env = {"TURNKIT_JWT_SECRET": stack.JWT_SECRET, "BENCH_ROOM_PREFIX": f"r{secrets.token_hex(4)}-"}
    if split:
        env["BENCH_PORTS"] = ",".join(map(str, split))
    out = run_windowed(argv, list(pids) or [server.proc.pid], core(CLIENT_CORE), seconds + 120, env)
    return replace(parse_load(out.stdout), server_cpu_s=out.cpu_seconds)


def _median(loads: Sequence[Load]) -> Load:
    return Load(*(median([getattr(x, f.name) for x in loads]) for f in fields(Load)))


def _row(name: str, m: Load, ref: Load, per_round: Sequence[Load]) -> tuple[str, ...]:
    us = m.server_us_per_msg
    return (
        name,
        fmt(m.msgs_per_s),
        fmt(us),
        fmt(ratio(us, ref.server_us_per_msg)) + "×",
        fmt(ratio(m.msgs_per_s, ref.msgs_per_s)) + "×",
        fmt(m.p50_ms),
        fmt(m.p99_ms),
        f"{m.server_share:.0%}",
        f"{m.client_share:.0%}",
        fmt(m.client_us_per_msg),
        " / ".join(fmt(x.msgs_per_s) for x in per_round),
    )


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
    med = {name: _median(r) for name, r in results.items()}
    ref, ceiling = med["Socket.IO reference"], med["bare ws ceiling"]
    rows = tuple(_row(name, m, ref, results[name]) for name, m in med.items())
    mem, red = med["turnkit (memory)"], med["turnkit (Redis, 2 processes)"]
    us, ref_us, ceil_us = mem.server_us_per_msg, ref.server_us_per_msg, ceiling.server_us_per_msg
    section = Section(
        "relay",
        "1. Signaling relay throughput and CPU per message",
        _method(seconds, ctx.rounds),
        tables=[Table(HEADERS, rows)],
        verdicts=[
            Verdict(CPU, ratio(us, ref_us), f"{fmt(us)} vs {fmt(ref_us)} µs/msg"),
            Verdict(
                MSGS, ratio(mem.msgs_per_s, ref.msgs_per_s), f"{fmt(mem.msgs_per_s)} vs {fmt(ref.msgs_per_s)} msgs/s"
            ),
            Verdict(CEILING, ratio(us, ceil_us), f"{fmt(us)} vs {fmt(ceil_us)} µs/msg"),
            Verdict(P99, mem.p99_ms),
            Verdict(
                REDIS,
                ratio(red.msgs_per_s, ref.msgs_per_s),
                f"{fmt(red.msgs_per_s)} msgs/s, {fmt(red.server_us_per_msg)} µs/msg",
            ),
        ],
    )
    if ctx.profile or any(v.met is False for v in section.verdicts[:4]):
        memory = servers["turnkit (memory)"]
        what = "the turnkit server (memory backend) under the same relay load"
        section.notes.append(_profile(ctx, memory, what, runs["turnkit (memory)"], seconds))
    if ctx.profile or section.verdicts[4].met is False:
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
Same load client for every server: `bench/load.js`, {PAIRS} rooms of two peers playing offer/answer ping-pong with a
1.2 KB SDP (a closed loop per room), a 0.5 s warm-up, then a {seconds:g} s measured window. Servers are pinned to
core 0, the load client to core 1; each of {rounds} rounds runs every server once, in turn, and the table shows
medians. turnkit runs `turnkit signaling serve` with JWT auth, frame validation, room checks and its rate limiter on
(limit raised above the load); the references have none of these.
**Redis, 2 processes:** two `turnkit signaling serve` processes sharing one `redis-server`, all three pinned to
core 0 (the same one-core server budget as the reference). load.js alternates its connections between the two
ports (`BENCH_PORTS`), so the two peers of every room sit on different processes and every relayed message crosses
Redis pub/sub.
**Server µs/msg** (the headline): utime+stime of every server process — both turnkit processes and redis-server
for the Redis row — read from /proc/PID/stat when load.js prints its window's start and stop lines, divided by the
messages relayed in the window. **server/client CPU:** share of one core over the window; a client near 100% means
that row's msgs/s is bounded by the load generator, which is why µs/msg is the fairer figure. Round trips are
timed with `performance.now()`."""
