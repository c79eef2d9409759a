"""`static` provider: hosts listed in turnkit.toml; turnkit neither creates nor removes them."""

from __future__ import annotations

import ipaddress

from turnkit.config import Host
from turnkit.nodes import Node
from turnkit.progress import Progress
from turnkit.provision.base import Action, Diff, Provider


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def node_of(region: str, index: int, host: Host) -> Node:
    """A configured host as a node: `turn-N` unless named, its address as hostname unless given."""
    public = host.public_ip or (host.address if _is_ip(host.address) else None)
    return Node(host.name or f"turn-{index}", region, host.hostname or host.address, public, host.private_ip)


class StaticProvider(Provider[list[Node]]):
    """Existing machines: provisioning only reads their addresses from the config; Ansible configures them."""

    def nodes(self) -> list[Node]:
        return [node_of(self.region, i + 1, h) for i, h in enumerate(self.spec.hosts)]

    def _compute_diff(self) -> Diff[list[Node]]:
        found = self.nodes()
        return Diff([Action("keep", "host", n.name, n.hostname) for n in found], found)

    def _execute(self, diff: Diff[list[Node]], progress: Progress) -> list[Node]:
        progress(f"static region `{self.region}`: {len(diff.found)} host(s) from turnkit.toml")
        return diff.found

    def destroy(self, progress: Progress) -> list[Action]:
        progress(f"static region `{self.region}`: hosts are not managed by turnkit; nothing to destroy")
        return []
