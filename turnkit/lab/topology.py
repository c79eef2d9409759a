"""Names and addresses of a lab, computed from its id and host names (no I/O).

One lab per machine owns 198.18.0.0/24 (bridge 198.18.0.1, hosts from .10, NAT boxes from .200)
and 198.19.K.0/24 for the K-th home network behind a NAT; every link and namespace name starts
with the lab's prefix `tk` + 6 hex digits so teardown can find leftovers even without records.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
BRIDGE_NET = ipaddress.ip_network("198.18.0.0/24")
BRIDGE_IP = "198.18.0.1"
FIRST_HOST = 10
FIRST_NAT = 200
HOME_NET = "198.19.{k}.0/24"


def lab_id(state_dir: str, region: str) -> str:
    """`tk` + 6 hex digits, stable for one region of one project (fits 15-byte link names)."""
    return "tk" + hashlib.sha256(f"{state_dir}\0{region}".encode()).hexdigest()[:6]


@dataclass(frozen=True)
class HostNet:
    """One container's network: namespace, veth pair, address on the bridge."""

    name: str
    index: int
    ip: str
    netns: str
    veth: str
    peer: str


@dataclass(frozen=True)
class Topology:
    lab: str
    hosts: tuple[HostNet, ...]

    @property
    def bridge(self) -> str:
        return f"{self.lab}br"

    def host(self, name: str) -> HostNet:
        return next(h for h in self.hosts if h.name == name)


def host_net(lab: str, name: str, index: int) -> HostNet:
    ip = str(BRIDGE_NET[FIRST_HOST + index])
    return HostNet(name, index, ip, f"{lab}-{name}", f"{lab}{index:02d}", f"{lab}{index:02d}p")


def topology(lab: str, names: list[str]) -> Topology:
    """Host i (0-based, in order) gets 198.18.0.(10+i); at most 100 hosts."""
    if len(names) > FIRST_NAT - FIRST_HOST:
        raise ValueError(f"a lab holds at most {FIRST_NAT - FIRST_HOST} hosts, got {len(names)}")
    return Topology(lab, tuple(host_net(lab, n, i) for i, n in enumerate(names)))


def in_lab(address: str) -> bool:
    """True for addresses the lab may use (the network rule: 198.18.0.0/15 only)."""
    return ipaddress.ip_address(address) in LAB_RANGE
