"""`static` provider: hosts listed in turnkit.toml; turnkit neither creates nor removes them."""

from __future__ import annotations

from turnkit import nodes as nodes_mod
from turnkit.config import Config
from turnkit.nodes import Node
from turnkit.provision.base import Action, Progress


class StaticProvider:
    """Existing machines: provisioning only reads their addresses from the config."""

    def __init__(self, cfg: Config, region: str) -> None:
        self.cfg, self.region = cfg, region
        cfg.region(region)

    def nodes(self) -> list[Node]:
        return nodes_mod.region_nodes(self.cfg, self.region)

    def plan(self) -> list[Action]:
        return [Action("keep", "host", n.name, n.hostname) for n in self.nodes()]

    def apply(self, progress: Progress) -> list[Node]:
        found = self.nodes()
        progress(f"static region `{self.region}`: {len(found)} host(s) from turnkit.toml")
        return found

    def destroy_plan(self) -> list[Action]:
        return []

    def destroy(self, progress: Progress) -> list[Action]:
        progress(f"static region `{self.region}`: hosts are not managed by turnkit; nothing to destroy")
        return []
