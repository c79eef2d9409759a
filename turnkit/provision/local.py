"""`local` provider: the region's services as plain processes on this machine (see `turnkit.localstack`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from turnkit import clock, localstack, supervisor
from turnkit.nodes import Node
from turnkit.progress import Progress
from turnkit.provision.base import Action, Diff, Provider

if TYPE_CHECKING:
    from turnkit.deploy import Report

#: A wildcard bind is reached on loopback by the demo page.
_REACH = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}


class LocalProvider(Provider[None]):
    """Provisioning a local region means starting (or keeping) its processes; no Ansible."""

    runs_here = True

    def nodes(self) -> list[Node]:
        """Node N listens on 127.0.0.N: every node keeps the configured ports (loopback is a /8)."""
        return [
            Node(f"turn-{i + 1}", self.region, f"127.0.0.{i + 1}", f"127.0.0.{i + 1}", None)
            for i in range(self.spec.nodes)
        ]

    @property
    def layout(self) -> localstack.Layout:
        return localstack.layout(self.cfg, self.region)

    def _compute_diff(self) -> Diff[None]:
        """Which processes would start; running ones show as `keep` (a changed config restarts them)."""
        actions = []
        for service in localstack.describe_services(
            self.cfg, self.layout, self.nodes(), localstack.Materials.placeholder()
        ):
            rec = supervisor.running(self.layout, service.name)
            if rec is not None:
                actions.append(Action("keep", "process", service.name, f"pid {rec.pid}"))
            else:
                actions.append(Action("create", "process", service.name, service.detail))
        return Diff(actions, None)

    def _execute(self, diff: Diff[None], progress: Progress) -> list[Node]:
        nodes = self.nodes()
        localstack.up(self.cfg, self.region, nodes, clock.now(), progress, self._checker(progress))
        return nodes

    def _checker(self, progress: Progress) -> localstack.NodeCheck:
        """Probe one node (after its coturn restarted): passes when every check does."""
        from turnkit import deploy

        def check(node: Node) -> bool:
            return all(r.ok for r in deploy.probe(self.cfg, [node], self.ca_file(), progress))

        return check

    def destroy_plan(self) -> list[Action]:
        return [
            Action("delete", "process", name, f"pid {pid}")
            for name, pid in localstack.status(self.cfg, self.region).items()
            if pid is not None
        ]

    def destroy(self, progress: Progress) -> list[Action]:
        before = {a.name: a for a in self.destroy_plan()}
        return [before[name] for name in self.stop(progress) if name in before]

    def stop(self, progress: Progress) -> list[str]:
        return localstack.down(self.cfg, self.region, progress)

    def status(self) -> dict[str, dict[str, Any]]:
        procs = localstack.status(self.cfg, self.region)
        return {n.name: {"pid": procs.get(localstack.coturn_name(n))} for n in self.nodes()}

    def ca_file(self) -> Path | None:
        path = localstack.ca_file(self.cfg, self.region)
        return path if path.is_file() else None

    def deploy(self, report: Report, progress: Progress) -> None:
        """Start the processes (the rollout keeps a staged secret safe), probe them, mint a demo token."""
        from turnkit import deploy
        from turnkit.probe import signaling

        progress("==> start local services")
        nodes = self.nodes()

        def up() -> None:
            localstack.up(self.cfg, self.region, nodes, clock.now(), progress, self._checker(progress))

        report.promoted = deploy.rollout(self.cfg, up, up, progress)
        progress("==> probe")
        report.nodes = deploy.probe(self.cfg, nodes, self.ca_file(), progress)
        sig = self.cfg.signaling
        token = deploy.dev_token(self.cfg, localstack.jwt_secret(self.cfg, self.layout), clock.now())
        base = f"http://{_REACH.get(sig.host, sig.host)}:{sig.port}"
        report.demo_url = f"{base}/?token={token}"
        try:
            report.ice_servers = signaling.get_ice_servers(base, token)
        except signaling.SignalingError as exc:
            # The stack is up but not serving: a deploy failure (exit 3).
            raise deploy.DeployError(str(exc)) from None
