"""Browsers' homes behind symmetric NAT: a NAT namespace on the bridge and a home namespace behind it.

The NAT box masquerades with `fully-random` (a new mapped port per destination: symmetric NAT)
and forwards only LAN→WAN plus established/related replies, so nothing on the bridge can open a
path into the home; `drop` refuses more from the home (all UDP, say, so only TCP/TLS gets out).
Forwarding is enabled inside the NAT namespace only; the host's `ip_forward` stays 0.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from turnkit.lab import network
from turnkit.lab.sh import run
from turnkit.lab.topology import BRIDGE_NET, FIRST_NAT, HOME_NET, Topology


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
