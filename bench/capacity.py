"""Section 2: idle joined connections: server RSS growth per connection, turnkit vs the references."""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Callable

from bench import stack
from bench.common import Ctx
from bench.procs import CLIENT_CORE, SERVER_CORE, core, raise_nofile, rss_kib
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, ratio

PER_CLIENT = 5000  # a client process stays well under the 20,000 open-files hard limit
SETTLE = 2.0

PER_CONN = Target("turnkit RSS per idle joined connection", "<=", 20, "KiB", "issue 6")
VS_REF = Target("turnkit per-connection RSS ÷ Socket.IO reference", "<=", 1.0, "×", "issue 6")
CEILING = Target("moonshot: turnkit per-connection RSS ÷ bare ws ceiling", "<=", 1.0, "×", "issue 13")


def wait_ready(clients: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Wait until every idle client printed its `idle_connections` line (all its peers joined)."""
    pending = {c.stdout: c for c in clients if c.stdout is not None}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{len(pending)} idle clients not connected within {timeout:g}s")
        ready, _, _ = select.select(list(pending), [], [], min(left, 1.0))
        for stream in ready:
            line = stream.readline()
            client = pending[stream]
            if b"idle_connections" in line:
                del pending[stream]
            elif not line and client.poll() is not None:
                raise RuntimeError(f"idle client exited with {client.returncode}")


def measure(ctx: Ctx, start: Callable[[], stack.Server], n: int) -> float:
    """KiB of server RSS growth per connection for `n` idle joined connections on a fresh server."""
    server = start()
    clients: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(SETTLE)
        before = rss_kib(server.proc.pid)
        stack.npm_ci()
        per_client = min(PER_CLIENT, max(2, n // 2))  # at least two clients, even in a smoke run
        split = [per_client] * (n // per_client) + ([n % per_client] if n % per_client else [])
        for i, share in enumerate(split):
            argv = ["node", str(stack.LOAD), server.proto, server.url, "idle", str(share)]
            clients.append(
                ctx.procs.start(
                    f"idle-{server.port}-{i}",
                    argv,
                    pin=core(CLIENT_CORE),
                    env={"TURNKIT_JWT_SECRET": stack.JWT_SECRET, "BENCH_ROOM_PREFIX": f"c{i}-"},
                    stdout_pipe=True,
                )
            )
        wait_ready(clients, timeout=60 + n / 50)
        time.sleep(SETTLE)
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} died under {n} connections")
        return (rss_kib(server.proc.pid) - before) / n
    finally:
        for c in clients:
            ctx.procs.stop(c)
        ctx.procs.stop(server.proc)


def bench(ctx: Ctx) -> Section:
    soft = raise_nofile()
    n = ctx.count(15000, 200)
    pin = core(SERVER_CORE)
    starters: dict[str, Callable[[], stack.Server]] = {
        "Socket.IO reference": lambda: stack.start_reference(ctx.procs, "socketio", pin),
        "bare ws ceiling": lambda: stack.start_reference(ctx.procs, "ws", pin),
        "turnkit (memory)": lambda: stack.start_turnkit(ctx.procs, ctx.workdir, pin),
    }
    per: dict[str, list[float]] = {name: [] for name in starters}
    for _ in range(ctx.rounds):
        for name, start in starters.items():
            per[name].append(measure(ctx, start, n))
    med = {name: median(v) for name, v in per.items()}
    ref = med["Socket.IO reference"]
    rows = tuple(
        (name, fmt(m), fmt(m * 1024), fmt(ratio(m, ref)) + "×", " / ".join(fmt(x) for x in per[name]))
        for name, m in med.items()
    )
    tk, ws = med["turnkit (memory)"], med["bare ws ceiling"]
    method = f"""\
{n:,} idle connections, each authenticated (turnkit: JWT) and joined to a room of two (`bench/load.js … idle N`),
opened by {-(-n // min(PER_CLIENT, max(2, n // 2)))} client processes of at most {PER_CLIENT:,} connections (the machine's hard limit is
20,000 open files per process; the runner raises the soft limit to {soft:,} for its children). A fresh server per
measurement, pinned to core 0; RSS (VmRSS) read {SETTLE:g} s after start and {SETTLE:g} s after the last client
reported all its peers joined; the figure is the growth divided by the connection count, median of {ctx.rounds} rounds."""
    return Section(
        "capacity",
        "2. Capacity: memory per idle joined connection",
        method,
        tables=[Table(("server", "KiB/conn", "bytes/conn", "vs Socket.IO", "KiB/conn per round"), rows)],
        verdicts=[
            Verdict(PER_CONN, tk),
            Verdict(VS_REF, ratio(tk, ref), f"{fmt(tk)} vs {fmt(ref)} KiB"),
            Verdict(CEILING, ratio(tk, ws), f"{fmt(tk)} vs {fmt(ws)} KiB"),
        ],
    )
