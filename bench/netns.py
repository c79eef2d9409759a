"""A network namespace at real-network latency: a veth pair with `tc netem delay` on both ends (when the kernel
has netem; bench/delay.py stands in otherwise).

Addresses come from one /24 of the benchmark range 198.18.0.0/15 only. The namespace has no default route and
the host side has only the connected /24, so nothing sent there can leave this machine; `ip netns del` at the
end removes the namespace and the veth pair with it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: The /24 the benchmark uses (inside 198.18.0.0/15, away from the low addresses other labs pick first).
SUBNET = ipaddress.ip_network("198.19.242.0/24")
BENCH_RANGE = ipaddress.ip_network("198.18.0.0/15")


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the host end of the veth pair
    ips: tuple[str, ...]  # addresses inside the namespace
    delay_ms: float  # one way, on each end: the round trip is twice this

    def exec(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _tc(*args: str) -> None:
    done = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=30, check=False)
    if "qdisc kind is unknown" in done.stderr:
        raise NoNetem(f"this kernel ({os.uname().release}) has no netem qdisc (CONFIG_NET_SCH_NETEM unset)")
    if done.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)}: {done.stderr.strip()}")


def plan(count: int, subnet: ipaddress.IPv4Network = SUBNET) -> tuple[str, tuple[str, ...]]:
    """(host address, `count` namespace addresses) in `subnet`, which must lie in 198.18.0.0/15."""
    if not subnet.subnet_of(BENCH_RANGE):
        raise ValueError(f"{subnet} is outside the benchmark range {BENCH_RANGE}")
    hosts = list(subnet.hosts())
    if count + 1 > len(hosts):
        raise ValueError(f"{subnet} has room for {len(hosts) - 1} namespace addresses, not {count}")
    return str(hosts[0]), tuple(str(h) for h in hosts[1 : count + 1])


class NoNetem(RuntimeError):
    """This kernel has no netem qdisc."""


@contextlib.contextmanager
def isolated(count: int, delay_ms: float | None = None) -> Iterator[Namespace]:
    """A fresh namespace with `count` addresses (and `delay_ms` of netem delay each way); removed on exit."""
    tag = f"tkb{os.getpid() % 100000}"
    ns, outside, inside = f"{tag}-ns", f"{tag}h", f"{tag}n"
    host_ip, ips = plan(count)
    prefix = SUBNET.prefixlen
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
        _ip("addr", "add", f"{host_ip}/{prefix}", "dev", outside)
        _ip("link", "set", outside, "up")
        for addr in ips:
            _ip("-n", ns, "addr", "add", f"{addr}/{prefix}", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        if delay_ms is not None:
            delay = f"{delay_ms:g}ms"
            _tc("qdisc", "add", "dev", outside, "root", "netem", "delay", delay, "limit", "100000")
            _tc("-n", ns, "qdisc", "add", "dev", inside, "root", "netem", "delay", delay, "limit", "100000")
        yield Namespace(ns, host_ip, ips, delay_ms or 0.0)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=30, check=False)
