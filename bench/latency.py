"""Section 4b: the probe fleet at real-network latency: coturn behind a 50 ms round trip (netem on a veth pair)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from bench import netns, profile, turn
from bench.common import Ctx
from bench.probe import INSTANCES, PER_INSTANCE, RELAY_PORTS, RELAY_WINDOW, node_endpoints, on_core, timed
from bench.procs import CLIENT_CORE, SERVER_CORE, core
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, ratio
from turnkit import keyring, render
from turnkit.probe import runner
from turnkit.probe.checks import Options
from turnkit.probe.result import Endpoint

REPO = Path(__file__).resolve().parents[1]
DELAY_MS = 25.0  # each way: a 50 ms round trip, a near region
FLEET = Target("100 endpoints at once ÷ one node, 50 ms RTT", "<=", 3.0, "×", "issue 13")
MOONSHOT = Target("moonshot: 100 endpoints at once ÷ one node, 50 ms RTT", "<=", 1.5, "×", "issue 13")


def denied_except(hole: ipaddress.IPv4Network) -> list[str]:
    """turnkit's denied peer ranges with one hole, the benchmark /24, so relays in it may reach each other.

    198.18.0.0/15 stays denied around the hole, so the hardening check's 198.18.0.0 and 198.19.255.255 still get 403.
    """
    around = [str(net) for net in netns.BENCH_RANGE.address_exclude(hole)]
    return render.peer_ranges([n for n in render.DENIED_PEER_NETWORKS if n != str(netns.BENCH_RANGE)] + around)


@dataclass(frozen=True)
class Network:
    """Where the probe sends (`front`), where coturn listens and relays (`back`), and what adds the delay."""

    ns: netns.Namespace
    front: tuple[str, ...]
    back: tuple[str, ...]
    delay: str


@contextlib.contextmanager
def network() -> Iterator[Network]:
    """netem on the veth pair where the kernel has it; else bench/delay.py between two address sets."""
    try:
        with netns.isolated(4, DELAY_MS) as ns:
            yield Network(ns, ns.ips, ns.ips, f"`tc netem delay {DELAY_MS:g}ms` on both ends of the veth pair")
            return
    except netns.NoNetem as exc:
        reason = str(exc)
    with netns.isolated(8) as ns:
        how = (
            f"{reason}, so `bench/delay.py` (uvloop, in the namespace, on the server core) holds every datagram "
            f"and TCP chunk back {DELAY_MS:g} ms each way between {', '.join(ns.ips[:4])} (what the probe "
            f"dials) and coturn on {', '.join(ns.ips[4:])}"
        )
        yield Network(ns, ns.ips[:4], ns.ips[4:], how)


def start_delay(ctx: Ctx, net: Network, servers: list[turn.Coturn], pin: int | None) -> None:
    """The userspace delay between front and back addresses for every coturn port; waits until it listens."""
    pairs = [f"{f}={b}" for f, b in zip(net.front, net.back, strict=True)]
    udp = [str(s.port) for s in servers]
    tcp = [str(p) for s in servers for p in (s.port, s.tls_port)]
    argv = [sys.executable, "-m", "bench.delay", *pairs, "--delay-ms", f"{DELAY_MS:g}", "--udp", *udp, "--tcp", *tcp]
    proc = ctx.procs.start("delay", net.ns.exec(argv), pin=pin, cwd=REPO, stdout_pipe=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready or proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"bench/delay.py did not start: {ctx.procs.log_tail('delay')}")


def bench(ctx: Ctx) -> Section:
    root = ctx.workdir / "latency"
    ring = keyring.init(int(time.time()))
    secret = ring.primary.value
    pin = core(SERVER_CORE)
    with network() as net:
        servers: list[turn.Coturn] = []
        try:
            extra = {
                "coturn_listening_ips": list(net.back),
                "coturn_relay_ips": [net.back[0]],
                "coturn_allow_loopback_peers": False,
                "coturn_denied_peer_ranges": denied_except(netns.SUBNET),
            }
            wrap = [*(["taskset", "-c", str(pin)] if pin is not None else []), *net.ns.exec([])]
            for i in range(INSTANCES):
                first = servers[0].certs if servers else None
                window = (RELAY_PORTS + i * RELAY_WINDOW, RELAY_PORTS + (i + 1) * RELAY_WINDOW - 1)
                servers.append(
                    turn.start(
                        ctx.procs, root / f"coturn-{i}", list(ring.accepted), extra, first, window, wrap, net.back[0]
                    )
                )
            if net.front != net.back:
                start_delay(ctx, net, servers, pin)
            with on_core(core(CLIENT_CORE)):
                section = asyncio.run(_measure(ctx, servers, secret, net))
                if ctx.profile or section.verdicts[1].met is False:
                    section.notes.append(_profile(ctx, servers, secret, net))
                return section
        finally:
            for s in servers:
                ctx.procs.stop(s.proc)


def _fleet(servers: list[turn.Coturn], net: Network) -> tuple[list[Endpoint], Options]:
    """The fleet's endpoints behind the delay, and probe options that check all of them at once."""
    options = Options(ca_file=str(servers[0].certs.ca))
    fleet_eps = [
        ep
        for i, s in enumerate(servers)
        for ep in node_endpoints(s, f"turn-{i}", PER_INSTANCE, ips=net.front, loopback=False, relay_ip=net.back[0])
    ]
    return fleet_eps, replace(options, concurrency=len(runner.plan(fleet_eps)))


def _profile(ctx: Ctx, servers: list[turn.Coturn], secret: str, net: Network) -> str:
    """py-spy of this process (the probe) sweeping the fleet at latency once more."""
    eps, opts = _fleet(servers, net)
    out = ctx.workdir / "latency.prof"
    try:
        text = profile.while_running(os.getpid(), lambda: asyncio.run(timed(eps, secret, opts)), out, core(SERVER_CORE))
    except RuntimeError as exc:
        return f"Profile not taken: {exc}"
    return profile.summary(text, f"the probe sweeping {len(eps)} endpoints at 50 ms RTT", "turnkit/probe/")


async def _measure(ctx: Ctx, servers: list[turn.Coturn], secret: str, net: Network) -> Section:
    options = Options(ca_file=str(servers[0].certs.ca))
    one_eps = node_endpoints(servers[0], "turn-0", ips=net.front, loopback=False, relay_ip=net.back[0])
    fleet_eps, everything = _fleet(servers, net)
    rounds = max(ctx.rounds, 3)
    one: list[float] = []
    fleet: list[float] = []
    failed: set[str] = set()
    await timed(one_eps, secret, options)  # warm-up
    for _ in range(rounds):  # alternated
        for eps, opts, into in ((one_eps, options, one), (fleet_eps, everything, fleet)):
            ms, bad = await timed(eps, secret, opts)
            into.append(ms)
            failed.update(bad)
    p50_one, p50_fleet = median(one), median(fleet)
    rows = (
        ("one node: UDP+TCP+TLS, all checks", str(len(runner.plan(one_eps))), fmt(p50_one), " / ".join(map(fmt, one))),
        (
            f"{len(fleet_eps)} endpoints on {len(servers)} coturns, all at once",
            str(len(runner.plan(fleet_eps))),
            fmt(p50_fleet),
            " / ".join(map(fmt, fleet)),
        ),
    )
    ns = net.ns
    method = f"""\
The same probe plan and fleet shape as section 4, but every coturn runs inside a network namespace reached over a
veth pair, {2 * DELAY_MS:g} ms round trip: {net.delay}. Addresses: {ns.host_ip} on the host end, {", ".join(ns.ips)}
inside ({netns.SUBNET}, within 198.18.0.0/15); the namespace has no default route and the host only the connected
/24, so no packet can leave the machine. coturn's denied peer ranges are turnkit's own with a hole for that /24
only (relays echo to each other there); loopback peers are denied, so the hardening check runs here. {rounds}
alternated rounds after one warm-up; probe on core 1, coturn threads on core 0. One node = one coturn's UDP, TCP
and TLS endpoints; the fleet = {len(fleet_eps)} endpoints at `--concurrency {everything.concurrency}`. Round trips
overlap in the fleet run; what cannot overlap is CPU."""
    notes = (
        [f"Failed checks seen: {'; '.join(sorted(failed)[:10])}"] if failed else ["Every check passed in every run."]
    )
    value = ratio(p50_fleet, p50_one)
    detail = f"{fmt(p50_fleet)} vs {fmt(p50_one)} ms"
    return Section(
        "latency",
        "4b. Probe fleet at real latency (50 ms RTT)",
        method,
        tables=[Table(("run", "checks", "p50 ms", "ms per round"), rows)],
        verdicts=[Verdict(FLEET, value, detail), Verdict(MOONSHOT, value, detail)],
        notes=notes,
    )
