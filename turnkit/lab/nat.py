"""Browsers' homes behind symmetric NAT: a NAT namespace on the bridge and a home namespace behind it.

The NAT box masquerades with `fully-random` (a new mapped port per destination: symmetric NAT)
and forwards only LAN→WAN plus established/related replies, so nothing on the bridge can open a
path into the home; `drop` refuses more from the home (all UDP, say, so only TCP/TLS gets out).
Forwarding is enabled inside the NAT namespace only; the host's `ip_forward` stays 0.

A home resolves names like a home network does, through a DNS server: the lab's (challtestsrv on
the bridge), named in `/etc/netns/<home>/resolv.conf`, which `ip netns exec` puts in place of
/etc/resolv.conf for whatever runs in the home. (Chromium's WebRTC resolves STUN and UDP TURN
server names through DNS alone: without it a browser gathers no server-reflexive candidate.)
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from turnkit.fsutil import atomic_write
from turnkit.lab import network
from turnkit.lab.sh import run
from turnkit.lab.topology import BRIDGE_IP, BRIDGE_NET, FIRST_NAT, HOME_NET, Topology

#: Per-namespace files `ip netns exec` mounts over /etc (iproute2's convention).
NETNS_ETC = Path("/etc/netns")


@dataclass(frozen=True)
class Home:
    """The k-th home: its namespace (where a browser runs) and its NAT box's WAN address."""

    k: int
    lab: str

    @property
    def nat_ns(self) -> str:
        return f"{self.lab}-nat{self.k}"

    @property
    def home_ns(self) -> str:
        return f"{self.lab}-home{self.k}"

    @property
    def wan_ip(self) -> str:
        return str(BRIDGE_NET[FIRST_NAT + self.k])

    @property
    def lan(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(HOME_NET.format(k=self.k))

    @property
    def home_ip(self) -> str:
        return str(self.lan[2])

    @property
    def etc(self) -> Path:
        return NETNS_ETC / self.home_ns


def ruleset(drop: Sequence[str] = ()) -> str:
    """The NAT box's nftables rules; `drop` are nft matches refused from the home (`meta l4proto udp`).

    (`fwd` is an nft keyword: the chain is `forward_filter`.)
    """
    udp = "".join(f'        iifname "lan" {match} drop\n' for match in drop)
    return (
        "flush ruleset\n"
        "table ip nat {\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat; policy accept;\n"
        '        oifname "wan" masquerade fully-random\n'
        "    }\n"
        "}\n"
        "table inet filter {\n"
        "    chain forward_filter {\n"
        "        type filter hook forward priority filter; policy drop;\n"
        "        ct state established,related accept\n"
        f"{udp}"
        '        iifname "lan" oifname "wan" accept\n'
        "    }\n"
        "}\n"
    )


def up(topo: Topology, home: Home, drop: Sequence[str] = ()) -> None:
    """Create (or re-rule) the NAT box and its home; the bridge must be up."""
    network.assert_no_forwarding()
    for ns in (home.nat_ns, home.home_ns):
        if ns not in network.namespaces(ns):
            run(["ip", "netns", "add", ns])
    nat, hm = ["ip", "-n", home.nat_ns], ["ip", "-n", home.home_ns]
    wan_host, lan_host = f"{home.lab}n{home.k}w", f"{home.lab}n{home.k}l"
    if not network.links(wan_host):
        run(["ip", "link", "add", wan_host, "type", "veth", "peer", "name", f"{wan_host}p"])
        run(["ip", "link", "set", f"{wan_host}p", "netns", home.nat_ns])
        run([*nat, "link", "set", f"{wan_host}p", "name", "wan"])
        run(["ip", "link", "add", lan_host, "type", "veth", "peer", "name", f"{lan_host}p"])
        run(["ip", "link", "set", lan_host, "netns", home.nat_ns])
        run([*nat, "link", "set", lan_host, "name", "lan"])
        run(["ip", "link", "set", f"{lan_host}p", "netns", home.home_ns])
        run([*hm, "link", "set", f"{lan_host}p", "name", "eth0"])
    run(["ip", "link", "set", wan_host, "master", topo.bridge, "up"])
    prefix = home.lan.prefixlen
    run([*nat, "addr", "replace", f"{home.wan_ip}/{BRIDGE_NET.prefixlen}", "dev", "wan"])
    run([*nat, "addr", "replace", f"{home.lan[1]}/{prefix}", "dev", "lan"])
    run([*hm, "addr", "replace", f"{home.home_ip}/{prefix}", "dev", "eth0"])
    for cmd in ([*nat, "link", "set", "lo", "up"], [*nat, "link", "set", "wan", "up"], [*nat, "link", "set", "lan", "up"],
                [*hm, "link", "set", "lo", "up"], [*hm, "link", "set", "eth0", "up"]):  # fmt: skip
        run(cmd)
    run([*hm, "route", "replace", "default", "via", str(home.lan[1])])
    run(["ip", "netns", "exec", home.nat_ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    run(["ip", "netns", "exec", home.nat_ns, "nft", "-f", "-"], input_=ruleset(drop))
    network.assert_no_forwarding()  # the namespace's switch is its own; the host's is untouched
    home.etc.mkdir(parents=True, exist_ok=True)
    atomic_write(home.etc / "resolv.conf", resolv_conf())


def resolv_conf() -> str:
    """The homes' resolver: the lab's DNS server on the bridge, nothing else."""
    return f"nameserver {BRIDGE_IP}\noptions timeout:2 attempts:2\n"


def etc_dirs(lab: str) -> list[Path]:
    """The lab's per-namespace /etc directories still on the machine."""
    return sorted(NETNS_ETC.glob(f"{lab}-*")) if NETNS_ETC.is_dir() else []


def forget(lab: str) -> list[str]:
    """Remove the lab's per-namespace /etc directories (the namespaces go with `network.down`)."""
    removed = []
    for d in etc_dirs(lab):
        shutil.rmtree(d)
        removed.append(f"dir {d}")
    return removed
