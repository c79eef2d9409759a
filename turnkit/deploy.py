"""`turnkit deploy`: provision → render → configure (Ansible) → certificates → probe.

Secret rotation is fleet-safe here: when the keyring holds a staged secret, every node is first
configured to accept all secrets (staged included), only then is the staged secret promoted so
the signaling service issues with it, and finally the signaling service is updated.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from turnkit import __version__, clock, health, keyring, localstack, render, resources, wheelhouse
from turnkit.config import Config
from turnkit.coturn import target_version
from turnkit.errors import TurnkitError
from turnkit.nodes import Node, region_nodes
from turnkit.provision import Action, provider_for

Progress = Callable[[str], None]
DEV_TOKEN_TTL = 12 * 3600


class DeployError(TurnkitError):
    """A deploy step failed; the text names the step."""


@dataclass
class NodeResult:
    """A node and what the probe said about it (None: not probed)."""

    node: Node
    ok: bool | None = None
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.node.to_dict(), "ok": self.ok, "failed": self.failed}


@dataclass
class Report:
    """What a deploy did and found."""

    region: str
    actions: list[Action]
    nodes: list[NodeResult] = field(default_factory=list)
    promoted: str | None = None
    demo_url: str | None = None
    ice_servers: Any = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.dry_run or (bool(self.nodes) and all(n.ok for n in self.nodes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "actions": [a.to_dict() for a in self.actions],
            "nodes": [n.to_dict() for n in self.nodes],
            "promoted": self.promoted,
            "demo_url": self.demo_url,
            "ice_servers": self.ice_servers,
        }


# -- secret rotation -------------------------------------------------------------------------


def staged_secret(ring: keyring.Keyring) -> keyring.Secret | None:
    """The newest staged (accepted-only) secret, if a rotation is under way."""
    return next((s for s in ring.secrets if s.staged), None)


def rollout(
    cfg: Config, push_nodes: Callable[[], None], push_signaling: Callable[[], None], progress: Progress
) -> str | None:
    """Push every accepted secret to all nodes, then promote a staged one, then update signaling."""
    push_nodes()
    ring = keyring.load(cfg.secrets_path)
    staged = staged_secret(ring)
    if staged is None:
        return None
    keyring.save(cfg.secrets_path, keyring.promote(ring, staged.id, clock.now()))
    progress(f"every node accepts secret {staged.id}; promoted it to primary")
    push_signaling()
    return staged.id


# -- probe ----------------------------------------------------------------------------------


def probe(cfg: Config, nodes: Sequence[Node], ca_file: str | None, progress: Progress) -> list[NodeResult]:
    """Run the probe checks against every node and publish health, as `turnkit probe --region` does."""
    from turnkit.probe import checks, record, report, runner, targets

    credential_for = checks.minting(keyring.load(cfg.secrets_path).primary.value, clock.now)
    started = clock.now()
    endpoints = targets.node_endpoints(cfg, list(nodes))
    results = asyncio.run(runner.run(endpoints, credential_for, checks.Options(ca_file=ca_file)))
    record.publish(cfg, results, started)
    verdicts = report.node_health(results, started)
    passed = sum(1 for r in results if r.ok)
    progress(f"probe: {passed}/{len(results)} checks passed")
    out = []
    for n in nodes:
        verdict = verdicts.get(health.key(n))
        out.append(NodeResult(n, None if verdict is None else verdict.ok, list(verdict.failed) if verdict else []))
    return out


# -- local region ---------------------------------------------------------------------------


def dev_token(cfg: Config, secret: str, now: int) -> str:
    """An HS256 JWT for trying the demo page (`sub` = demo); never for production use."""
    claims: dict[str, Any] = {"sub": "demo", "iat": now, "exp": now + DEV_TOKEN_TTL}
    if cfg.signaling.jwt.audience:
        claims["aud"] = cfg.signaling.jwt.audience
    if cfg.signaling.jwt.issuer:
        claims["iss"] = cfg.signaling.jwt.issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def _deploy_local(cfg: Config, region: str, report: Report, progress: Progress) -> None:
    progress("==> start local services")

    def up() -> None:
        localstack.up(cfg, region, clock.now(), progress)

    report.promoted = rollout(cfg, up, up, progress)
    nodes = region_nodes(cfg, region)
    lay = localstack.layout(cfg, region)
    progress("==> probe")
    report.nodes = probe(cfg, nodes, str(localstack.ca_file(cfg, region)), progress)
    token = dev_token(cfg, localstack.jwt_secret(cfg, lay), clock.now())
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(cfg.signaling.host, cfg.signaling.host)  # a wildcard bind
    base = f"http://{host}:{cfg.signaling.port}"
    report.demo_url = f"{base}/?token={token}"
    from turnkit.probe import signaling

    try:
        report.ice_servers = signaling.get_ice_servers(base, token)
    except signaling.SignalingError as exc:
        raise DeployError(str(exc)) from None  # the stack is up but not serving: a deploy failure (exit 3)


# -- cloud and static regions ---------------------------------------------------------------


def rendered_dir(cfg: Config, region: str) -> Path:
    return cfg.state_path / "regions" / region / "rendered"


def render_to_state(
    cfg: Config, region: str, nodes: Sequence[Node], secrets: Sequence[str], progress: Progress
) -> None:
    """Render the region's files where the operator can inspect them (0600/0640 as the targets say)."""
    files = render.render_region(cfg, nodes, secrets, target_version(cfg), resources.template_dir())
    out = rendered_dir(cfg, region)
    render.write_tree(out, files)
    progress(f"rendered {len(files)} file(s) into {out}")


@dataclass(frozen=True)
class Fleet:
    """How `deploy` configures a remote region with the shipped site.yml (Ansible)."""

    cfg: Config
    region: str
    nodes: Sequence[Node]
    connection: str = "ssh"
    addresses: Mapping[str, str] | None = None
    playbook: Path | None = None
    extra_vars: Mapping[str, Any] | None = None
    private_key: Path | None = None  # the provider's key (lab); default: ssh_public_key without `.pub`
    signaling_node: Node | None = None  # a separate signaling host (lab); default: the first TURN node
    wheelhouse: Path | None = None  # shipped to the signaling host and installed with `pip --no-index`

    def _hosts(self) -> list[Any]:
        from turnkit import ansible

        spec = self.cfg.region(self.region)
        key = Path(spec.ssh_public_key.removesuffix(".pub")).expanduser()
        return ansible.turn_hosts(
            self.cfg,
            self.nodes,
            target_version(self.cfg),
            user=spec.ssh_user,
            private_key=self.private_key or (key if key.exists() else None),
            certificates=True,
            connection=self.connection,
            addresses=self.addresses,
        )

    def _run(self, turn: Sequence[Any], signaling: Sequence[Any]) -> None:
        from turnkit import ansible

        ring = keyring.load(self.cfg.secrets_path)
        inventory = ansible.Inventory(
            turn=turn,
            signaling=signaling,
            turn_vars=ansible.certbot_vars(self.cfg, self.nodes),
            signaling_vars={
                **self._signaling_extra(),
                **ansible.region_vars(self.cfg, self.nodes),
                "signaling_config_toml": self.cfg.path.read_text(encoding="utf-8"),
                **self._node_state_vars(),
            },
        )
        ansible.run_playbook(
            inventory,
            ansible.secret_vars(ring, self._service_environment()),
            extra_vars=self.extra_vars,
            playbook=self.playbook,
        )

    def _signaling_extra(self) -> dict[str, Any]:
        """The server_name certificate (a TURN node acting as signaling host keeps its own) and the wheelhouse."""
        out: dict[str, Any] = {"certbot_domains": [render.nginx_context(self.cfg, self.nodes)["nginx_server_name"]]}
        if self.wheelhouse:
            out.update(signaling_wheelhouse=str(self.wheelhouse), signaling_turnkit_version=__version__)
        return out

    def _signaling_hosts(self) -> list[Any]:
        from turnkit import ansible

        if self.signaling_node is None:
            return self._hosts()[:1]
        spec = self.cfg.region(self.region)
        node = self.signaling_node
        address = node.public_ip or node.hostname
        return [ansible.Host(node.name, address, self.connection, spec.ssh_user, self.private_key)]

    def _service_environment(self) -> dict[str, str]:
        """The operator's HS256 JWT secret goes to the signaling host's root-only environment file."""
        name = self.cfg.signaling.jwt.secret_env
        value = os.environ.get(name)
        return {name: value} if value and "HS256" in self.cfg.signaling.jwt.algorithms else {}

    def _node_state_vars(self) -> dict[str, Any]:
        """Cloud nodes live in the controller's state dir; the signaling host needs them too."""
        if self.cfg.region(self.region).provider not in ("aws", "lab"):
            return {}
        state_dir = Path(self.cfg.project.state_dir)
        config_dir = render.signaling_context(self.cfg, self.nodes)["signaling_config_dir"]
        on_host = state_dir if state_dir.is_absolute() else Path(config_dir) / state_dir
        return {
            "signaling_node_state": {self.region: [n.to_dict() for n in self.nodes]},
            "signaling_state_dir": str(on_host),
        }

    def push_nodes(self, progress: Progress) -> None:
        """One TURN node at a time (a changed secret restarts coturn), then the signaling host."""
        hosts = self._hosts()
        for host in hosts:
            progress(f"configuring {host.name}")
            self._run([host], [])
        self.push_signaling(progress)

    def push_signaling(self, progress: Progress) -> None:
        """The signaling service runs on the region's first node (behind NGINX)."""
        progress("configuring the signaling host")
        self._run([], self._signaling_hosts())


def _deploy_remote(cfg: Config, region: str, report: Report, progress: Progress) -> None:
    provider = provider_for(cfg, region)
    progress("==> provision")
    nodes = provider.apply(progress)
    progress("==> render")
    render_to_state(cfg, region, nodes, keyring.load(cfg.secrets_path).accepted, progress)
    house = wheelhouse.build(cfg.state_path / "wheelhouse", progress)
    progress("==> configure with Ansible (coturn, certbot certificates, nginx, signaling, probe)")
    hook = getattr(provider, "fleet_options", None)  # provider-specific SSH key / signaling host (lab)
    fleet = Fleet(cfg, region, nodes, wheelhouse=house, **(hook() if hook else {}))
    report.promoted = rollout(cfg, lambda: fleet.push_nodes(progress), lambda: fleet.push_signaling(progress), progress)
    progress("==> probe")
    ca_file = getattr(provider, "ca_file", None)
    report.nodes = probe(cfg, nodes, ca_file() if ca_file else None, progress)


#: provider → how a region of that kind is deployed.
DEPLOYERS: dict[str, Callable[[Config, str, Report, Progress], None]] = {
    "local": _deploy_local,
    "aws": _deploy_remote,
    "static": _deploy_remote,
    "lab": _deploy_remote,
}


def deploy(cfg: Config, region: str, progress: Progress, dry_run: bool = False) -> Report:
    """Take `region` from its current state to a probed fleet (or only plan it with `dry_run`)."""
    spec = cfg.region(region)
    progress("==> plan")
    report = Report(region, provider_for(cfg, region).plan(), dry_run=dry_run)
    for action in report.actions:
        progress(f"    {action}")
    if dry_run:
        return report
    DEPLOYERS[spec.provider](cfg, region, report, progress)
    return report
