"""The lab's network on this machine: guard route, bridge, one namespace + veth per host.

The order matters: `ip_forward` is checked and the `unreachable 198.18.0.0/15` route installed
before any host starts, so nothing a container sends can follow the default route out.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from turnkit.lab.sh import LabError, run
from turnkit.lab.topology import BRIDGE_IP, BRIDGE_NET, LAB_RANGE, HostNet, Topology

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
GUARD_ROUTE = ["unreachable", str(LAB_RANGE)]


def assert_no_forwarding() -> None:
    """The host must not route: lab traffic stays between the bridge and the containers."""
    if IP_FORWARD.read_text().strip() != "0":
        raise LabError("lab: net.ipv4.ip_forward is 1 on this machine; the lab refuses to run on a router")


def links(prefix: str) -> list[str]:
    out = run(["ip", "-j", "link", "show"]).stdout
    return [item["ifname"] for item in json.loads(out or "[]") if item["ifname"].startswith(prefix)]


def namespaces(prefix: str) -> list[str]:
    out = run(["ip", "-j", "netns", "list"]).stdout
    return [item["name"] for item in json.loads(out or "[]") if item["name"].startswith(prefix)]


def guard_route_present() -> bool:
    out = run(["ip", "-j", "route", "show", "table", "main", str(LAB_RANGE)]).stdout
    return any(r.get("type") == "unreachable" for r in json.loads(out or "[]"))


def _bridge_owner() -> str | None:
    """The interface that holds 198.18.0.1 now, if any."""
    out = run(["ip", "-j", "-4", "addr", "show"]).stdout
    for item in json.loads(out or "[]"):
        if any(a.get("local") == BRIDGE_IP for a in item.get("addr_info", [])):
            return str(item["ifname"])
    return None


def up_bridge(topo: Topology) -> None:
    """Guard route first, then the bridge with 198.18.0.1/24 (refuses if another lab holds it)."""
    assert_no_forwarding()
    run(["ip", "route", "replace", *GUARD_ROUTE])
    owner = _bridge_owner()
    if owner not in (None, topo.bridge):
        raise LabError(f"lab: {BRIDGE_IP} is already on `{owner}` (another lab is up; run `make lab-down` there)")
    if topo.bridge not in links(topo.bridge):
        run(["ip", "link", "add", topo.bridge, "type", "bridge"])
    if owner is None:
        run(["ip", "addr", "replace", f"{BRIDGE_IP}/{BRIDGE_NET.prefixlen}", "dev", topo.bridge])
    run(["ip", "link", "set", topo.bridge, "up"])


def up_host(topo: Topology, host: HostNet) -> None:
    """Namespace with lo and eth0 (its address, no default route) wired to the bridge."""
    if host.netns not in namespaces(host.netns):
        run(["ip", "netns", "add", host.netns])
    ns = ["ip", "-n", host.netns]
    if "eth0" not in {i["ifname"] for i in json.loads(run([*ns, "-j", "link", "show"]).stdout or "[]")}:
        for stale in links(host.veth):
            run(["ip", "link", "del", stale], check=False)
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", host.peer])
        run(["ip", "link", "set", host.peer, "netns", host.netns])
        run([*ns, "link", "set", host.peer, "name", "eth0"])
    run(["ip", "link", "set", host.veth, "master", topo.bridge, "up"])
    run([*ns, "addr", "replace", f"{host.ip}/{BRIDGE_NET.prefixlen}", "dev", "eth0"])
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "link", "set", "eth0", "up"])


def down(prefix: str) -> list[str]:
    """Remove every namespace and link named with the lab's prefix; the guard route last."""
    removed = []
    for ns in namespaces(prefix):
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    for link in links(prefix):
        run(["ip", "link", "del", link], check=False)
        removed.append(f"link {link}")
    if guard_route_present() and _bridge_owner() is None:
        with contextlib.suppress(LabError):
            run(["ip", "route", "del", *GUARD_ROUTE])
            removed.append(f"route unreachable {LAB_RANGE}")
    return removed
