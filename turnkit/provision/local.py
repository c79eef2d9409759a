"""`local` provider: the region's services as plain processes on this machine (see `turnkit.localstack`)."""

from __future__ import annotations

from turnkit import clock, localstack
from turnkit.config import Config
from turnkit.nodes import Node, region_nodes
from turnkit.provision.base import Action, Progress


class LocalProvider:
    """Provisioning a local region means starting (or keeping) its processes."""

    def __init__(self, cfg: Config, region: str) -> None:
        self.cfg, self.region = cfg, region
        cfg.region(region)
        self.layout = localstack.layout(cfg, region)

    def nodes(self) -> list[Node]:
        return region_nodes(self.cfg, self.region)

    def _wanted(self) -> dict[str, str]:
        ports, sig = self.cfg.ports, self.cfg.signaling
        out = {
            f"coturn-{n.name}": f"turnserver on {n.hostname}:{ports.listening}/udp+tcp, {ports.tls}/tls"
            for n in self.nodes()
        }
        out["signaling"] = f"turnkit signaling on http://{sig.host}:{sig.port}"
        return out

    def plan(self) -> list[Action]:
        """Read-only: which processes would start; running ones show as `keep` (a changed config restarts)."""
        actions = []
        for name, detail in self._wanted().items():
            rec = localstack.running(self.layout, name)
            if rec is not None:
                actions.append(Action("keep", "process", name, f"pid {rec.pid}"))
            else:
                actions.append(Action("create", "process", name, detail))
        return actions

    def apply(self, progress: Progress) -> list[Node]:
        localstack.up(self.cfg, self.region, clock.now(), progress)
        return self.nodes()

    def destroy_plan(self) -> list[Action]:
        return [
            Action("delete", "process", name, f"pid {pid}")
            for name, pid in localstack.status(self.cfg, self.region).items()
            if pid is not None
        ]

    def destroy(self, progress: Progress) -> list[Action]:
        actions = self.destroy_plan()
        localstack.down(self.cfg, self.region, progress)
        return actions
