"""Section 4: probe speed: one node's full check, 100 endpoints at once, and turnutils_uclient side by side."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from bench import profile, turn
from bench.common import Ctx
from bench.procs import CLIENT_CORE, SERVER_CORE, core
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, percentile, ratio
from bench.turn import Coturn
from turnkit import clock, keyring
from turnkit.probe import runner, uclient
from turnkit.probe.checks import CredentialSource, Options, minting
from turnkit.probe.result import CheckResult, Credential, Endpoint, Status, Transport

ONE = Target("one node, full check (UDP+TCP+TLS), p50", "<=", 100, "ms", "issue 4")
FLEET = Target("100 endpoints at once ÷ one node", "<=", 3.0, "×", "issue 4")
INSTANCES = 10
PER_INSTANCE = 10
#: Every coturn listens on these, so 10 endpoints per instance are distinct (address, port, transport).
LISTEN_IPS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
#: Relay ports: a 2,000-port window per instance, enough for every allocation of the whole run.
RELAY_PORTS = 30000
RELAY_WINDOW = 2000
UCLIENT_RUNS = 3
UCLIENT_TIMEOUT = 15.0
TRANSPORTS = (Transport.UDP, Transport.TCP, Transport.TLS)


def node_endpoints(
    server: Coturn,
    node: str,
    count: int = 3,
    ips: Sequence[str] = LISTEN_IPS,
    loopback: bool = True,
    relay_ip: str | None = None,
) -> list[Endpoint]:
    """`count` distinct endpoints of one coturn: UDP, TCP, TLS on ips[0], then the same on ips[1], ...

    The probe runs each check once per (address, port, transport), so a fleet of distinct endpoints needs
    distinct addresses: every benchmark coturn listens on all of `ips` and relays on `relay_ip` (default ips[0]).
    """
    out = []
    for k in range(count):
        transport = TRANSPORTS[k % 3]
        out.append(
            Endpoint(
                region="local",
                node=f"{node}-{k // 3}" if count > 3 else node,
                host=ips[k // 3],
                port=server.tls_port if transport is Transport.TLS else server.port,
                transport=transport,
                expected_ip=relay_ip or ips[0],
                loopback_only=loopback,
                loopback_allowed=loopback,
                server_name="turn.example.test",
            )
        )
    return out


_runs = itertools.count()


def minted(secret: str) -> CredentialSource:
    """Fresh REST credentials per check, endpoint and run: coturn's per-user quota must not couple the runs."""
    run = next(_runs)
    return minting(secret, clock.now, lambda ep, check: f"bench{run}-{check}-{ep.host}-{ep.transport.value}")


def failures(results: Sequence[CheckResult]) -> list[str]:
    return [f"{r.node}/{r.transport}/{r.check}: {r.reason}" for r in results if r.status is Status.FAIL]


async def timed(
    eps: Sequence[Endpoint], secret: str, options: Options, only: Sequence[str] = ()
) -> tuple[float, list[str]]:
    """Wall-clock ms of one probe run and its failures."""
    start = time.perf_counter()
    results = await runner.run(eps, minted(secret), options, only)
    return (time.perf_counter() - start) * 1000, failures(results)


def pin_all_threads(pid: int, cpu: int | None) -> None:
    """coturn is multi-threaded: pin every thread (`taskset -a`), not only the main one."""
    if cpu is not None:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, check=False)


@contextlib.contextmanager
def on_core(cpu: int | None) -> Iterator[None]:
    """Run this (load-generating) process on `cpu` for the block."""
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def bench(ctx: Ctx) -> Section:
    root = ctx.workdir / "probe"
    root.mkdir(parents=True, exist_ok=True)
    ring = keyring.init(int(time.time()))
    secret = ring.primary.value
    servers: list[Coturn] = []
    try:
        for i in range(INSTANCES):
            # All instances serve the first one's certificate, so one CA file verifies every TLS endpoint.
            first = servers[0].certs if servers else None
            window = (RELAY_PORTS + i * RELAY_WINDOW, RELAY_PORTS + (i + 1) * RELAY_WINDOW - 1)
            extra = {"coturn_listening_ips": list(LISTEN_IPS)}
            servers.append(turn.start(ctx.procs, root / f"coturn-{i}", list(ring.accepted), extra, first, window))
            pin_all_threads(servers[-1].proc.pid, core(SERVER_CORE))
        options = Options(ca_file=str(servers[0].certs.ca))
        fleet_eps = [ep for i, s in enumerate(servers) for ep in node_endpoints(s, f"turn-{i}", PER_INSTANCE)]
        with on_core(core(CLIENT_CORE)):
            section = asyncio.run(_measure(ctx, servers, secret, options, fleet_eps))
            if ctx.profile or section.verdicts[1].met is False:
                section.notes.append(_profile(ctx, fleet_eps, secret, options))
        return section
    finally:
        for s in servers:
            ctx.procs.stop(s.proc)


def _profile(ctx: Ctx, eps: list[Endpoint], secret: str, options: Options) -> str:
    """py-spy on this process while it sweeps the fleet: where the probe's CPU goes."""
    seconds = ctx.seconds(8.0, 2.0)

    def sweep() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            asyncio.run(timed(eps, secret, options))

    try:
        text = profile.during(os.getpid(), seconds, sweep, ctx.workdir / "probe.prof", core(SERVER_CORE))
    except RuntimeError as exc:
        return f"Profile not taken: {exc}"
    return profile.summary(text, f"the probe sweeping {len(eps)} endpoints", "turnkit/probe/")


async def _measure(
    ctx: Ctx, servers: list[Coturn], secret: str, options: Options, fleet_eps: list[Endpoint]
) -> Section:
    ca = options.ca_file
    one_eps = node_endpoints(servers[0], "turn-0")
    everything = replace(options, concurrency=len(runner.plan(fleet_eps)))
    runs = ctx.count(20, 3)
    one: list[float] = []
    fleet: list[float] = []
    fleet_all: list[float] = []
    failed: set[str] = set()
    await timed(one_eps, secret, options)  # warm-up: imports, TLS context, first allocations
    for i in range(runs):
        ms, bad = await timed(one_eps, secret, options)
        one.append(ms)
        failed.update(bad)
        if i < max(ctx.rounds, 3):  # the fleet sweep is heavier: ≥ 3 rounds, alternated with the single node
            ms, bad = await timed(fleet_eps, secret, options)
            fleet.append(ms)
            failed.update(bad)
            ms, bad = await timed(fleet_eps, secret, everything)
            fleet_all.append(ms)
            failed.update(bad)
    side = await _side_by_side(ctx, servers[0], secret, options, ca, runs)
    p50 = median(one)
    n_checks = len(runner.plan(fleet_eps))
    rows = (
        (
            "one node: UDP+TCP+TLS, all checks",
            str(len(runner.plan(one_eps))),
            fmt(p50),
            fmt(percentile(one, 90)),
            str(len(one)),
        ),
        (
            f"{len(fleet_eps)} endpoints on {len(servers)} coturns, --concurrency {options.concurrency}",
            str(n_checks),
            fmt(median(fleet)),
            fmt(max(fleet)),
            str(len(fleet)),
        ),
        (
            f"{len(fleet_eps)} endpoints, --concurrency {everything.concurrency} (all at once)",
            str(n_checks),
            fmt(median(fleet_all)),
            fmt(max(fleet_all)),
            str(len(fleet_all)),
        ),
    )
    best = min(median(fleet), median(fleet_all))
    method = f"""\
The probe's Python API (`turnkit.probe.runner.run`, what `turnkit probe` runs) in the benchmark process, pinned to
core 1, against local coturn 4.6 instances started from turnkit-rendered config (loopback peers allowed, so the
hardening check is skipped) with all their threads pinned to core 0. One node = its UDP, TCP and TLS endpoints with
every check of the probe plan (STUN, unauthenticated allocate, allocate, relay round trip of 10 packets, expired
credential); {runs} runs after one warm-up. The fleet: {len(servers)} coturn processes × {PER_INSTANCE} endpoint URLs each
on 4 loopback addresses (UDP/TCP/TLS × 127.0.0.1–4, node-level checks on each UDP one) = {len(fleet_eps)} distinct
endpoints, alternated with the single node. Fresh credentials per run and endpoint (coturn's per-user quota)."""
    notes = (
        [f"Failed checks seen: {'; '.join(sorted(failed)[:10])}"] if failed else ["Every check passed in every run."]
    )
    return Section(
        "probe",
        "4. Probe speed",
        method,
        tables=[Table(("run", "checks", "p50 ms", "p90/max ms", "runs"), rows), side],
        verdicts=[
            Verdict(ONE, p50),
            Verdict(
                FLEET, ratio(median(fleet), p50), f"{fmt(median(fleet))} ms at --concurrency {options.concurrency}"
            ),
            Verdict(replace(FLEET, metric=FLEET.metric + ", all at once"), ratio(best, p50), f"{fmt(best)} ms"),
        ],
        notes=notes,
    )


async def _side_by_side(ctx: Ctx, server: Coturn, secret: str, options: Options, ca: str | None, runs: int) -> Table:
    """The relay check per transport: turnkit's `relay` check vs `turnutils_uclient -y` (10 packets each)."""
    rows = []
    for ep in node_endpoints(server, "turn-0"):
        ours: list[float] = []
        theirs: list[float] = []
        ours_ok = theirs_ok = 0
        for i in range(runs):
            ms, bad = await timed([ep], secret, options, only=("relay",))
            ours.append(ms)
            ours_ok += not bad
            if i < ctx.count(UCLIENT_RUNS, 1):  # uclient paces itself (~0.5 s per packet round); a few runs say enough
                c = minted(secret)(ep, f"uclient{i}")
                assert c is not None
                argv = uclient.command(ep.host, ep.port, ep.transport, Credential(c.username, c.password), 10, ca)
                res = await uclient.run(argv, timeout=UCLIENT_TIMEOUT)
                theirs.append(res.duration * 1000)
                theirs_ok += res.ok
        rows.append(
            (
                ep.transport.value,
                fmt(median(ours)),
                f"{ours_ok}/{len(ours)}",
                fmt(median(theirs)),
                f"{theirs_ok}/{len(theirs)}",
                fmt(ratio(median(theirs), median(ours))) + "×",
            )
        )
    headers = (
        "relay check, 10 packets",
        "turnkit p50 ms",
        "turnkit passed",
        "uclient p50 ms",
        "uclient passed",
        "uclient ÷ turnkit",
    )
    return Table(headers, tuple(rows))
