"""`turnkit deploy`: plan → the region's provider deploys it → probe, and the pieces providers share.

`deploy` shows the provider's plan and hands over to `Provider.deploy`: the local provider starts
processes (`turnkit.localstack`), the others call `over_ssh` (provision → render → Ansible with
the shipped site.yml → probe). Secret rotation is fleet-safe here: when the keyring holds a staged secret, every node is first
configured to accept all secrets (staged included), only then is the staged secret promoted so
the signaling service issues with it, and finally the signaling service is updated.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from turnkit import ansible, clock, health, keyring, localmeter, render, resources, wheelhouse
from turnkit.config import Config
from turnkit.coturn import target_version
from turnkit.errors import TurnkitError
from turnkit.meter import remote as remote_meter
from turnkit.nodes import Node
from turnkit.progress import Progress
from turnkit.provision import Action, Provider, provider_class, provider_for

DEV_TOKEN_TTL = 12 * 3600
#: How often a node restarted after a drain is probed before it is left draining.
PROBE_ATTEMPTS = 3
PROBE_RETRY_DELAY = 2.0
#: The coturn role's task that marks a node draining before a coturn restart (roles/coturn/tasks/drain.yml):
#: when it reports `changed` for a node, the controller probes the node and undrains it.
DRAIN_MARK_TASK = "coturn : Mark the node draining where signaling reads node health"
#: The task by which a node leaves a parallel run untouched because its running coturn must restart
#: (roles/coturn/tasks/restart_check.yml): such nodes are configured alone afterwards, one at a time.
RESTART_DEFER_TASK = "coturn : Leave the node for a run of its own (its coturn restart must not overlap another node's)"
#: Ansible runs at once at most (one per machine; Ansible's own default is 5 forks).
MAX_PARALLEL_RUNS = 5


class DeployError(TurnkitError):
    """A deploy step failed; the text names the step."""


class _Prefixed:
    """Where a run among parallel ones writes its output: whole lines, each prefixed with its label."""

    lock = threading.Lock()

    def __init__(self, label: str) -> None:
        self.label = label

    def write(self, text: str) -> int:
        with self.lock:
            for line in text.splitlines():
                sys.stderr.write(f"[{self.label}] {line}\n")
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


@dataclass(frozen=True)
class _Job:
    """One Ansible run of a deploy: the TURN nodes and/or the signaling host it configures."""

    label: str
    turn: tuple[str, ...] = ()
    signaling: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    #: Tasks Ansible reported `changed` over every run of the deploy (None: no Ansible ran).
    ansible_changed: int | None = None

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
            "ansible_changed": self.ansible_changed,
        }


# -- secret rotation -------------------------------------------------------------------------


def staged_secret(ring: keyring.Keyring) -> keyring.Secret | None:
    """The newest staged (accepted-only) secret, if a rotation is under way."""
    return next((s for s in ring.secrets if s.staged), None)


def rollout(
    cfg: Config, push_all: Callable[[], None], push_signaling: Callable[[], None], progress: Progress
) -> str | None:
    """Configure everything with every accepted secret; then, if a secret is staged, promote it
    (every node accepts it by now) and update the signaling service so it issues with it."""
    push_all()
    ring = keyring.load(cfg.secrets_path)
    staged = staged_secret(ring)
    if staged is None:
        return None
    keyring.save(cfg.secrets_path, keyring.promote(ring, staged.id, clock.now()))
    progress(f"every node accepts secret {staged.id}; promoted it to primary")
    push_signaling()
    return staged.id


# -- probe ----------------------------------------------------------------------------------


def probe(cfg: Config, nodes: Sequence[Node], ca_file: Path | None, progress: Progress) -> list[NodeResult]:
    """Run the probe checks against every node and publish health, as `turnkit probe --region` does."""
    from turnkit.probe import checks, record, report, runner, targets

    credential_for = checks.minting(keyring.load(cfg.secrets_path).primary.value, clock.now)
    started = clock.now()
    endpoints = targets.node_endpoints(cfg, list(nodes))
    results = asyncio.run(
        runner.run(endpoints, credential_for, checks.Options(ca_file=str(ca_file) if ca_file else None))
    )
    record.publish(cfg, results, started)
    verdicts = report.node_health(results, started)
    passed = sum(1 for r in results if r.ok)
    progress(f"probe: {passed}/{len(results)} checks passed")
    out = []
    for n in nodes:
        verdict = verdicts.get(health.key(n))
        out.append(NodeResult(n, None if verdict is None else verdict.ok, list(verdict.failed) if verdict else []))
    return out


# -- the local region's demo page -------------------------------------------------------------


def dev_token(cfg: Config, secret: str, now: int) -> str:
    """An HS256 JWT for trying the demo page (`sub` = demo); never for production use."""
    claims: dict[str, Any] = {"sub": "demo", "iat": now, "exp": now + DEV_TOKEN_TTL}
    if cfg.signaling.jwt.audience:
        claims["aud"] = cfg.signaling.jwt.audience
    if cfg.signaling.jwt.issuer:
        claims["iss"] = cfg.signaling.jwt.issuer
    return jwt.encode(claims, secret, algorithm="HS256")


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
    """How a remote region's nodes are configured with the shipped site.yml (Ansible over SSH)."""

    cfg: Config
    region: str
    nodes: Sequence[Node]
    connection: str = "ssh"
    addresses: Mapping[str, str] | None = None
    playbook: Path | None = None
    extra_vars: Mapping[str, Any] | None = None
    # Provider.fleet_options: the region's own key (default: ssh_public_key without `.pub`) and
    # a machine of its own for signaling (default: the first TURN node).
    private_key: Path | None = None
    signaling_node: Node | None = None
    wheelhouse: Path | None = None  # its archive, shipped to every host and installed with `pip --no-index`
    # Usage metering (docs/metering.md): the region's meter keys (None: no meter, no drain) and
    # the CA of the signaling host's certificate when it is not a public one.
    meter: localmeter.Keys | None = None
    ca_file: Path | None = None
    #: Every finished run, in order (the deploy report sums their changes).
    runs: list[ansible.RunResult] = field(default_factory=list)

    def _inventory(self, turn: Sequence[str], signaling: bool) -> ansible.Inventory:
        spec = self.cfg.region(self.region)
        key = Path(spec.ssh_public_key.removesuffix(".pub")).expanduser()
        return ansible.region_inventory(
            self.cfg,
            self.nodes,
            target_version(self.cfg),
            turn=turn,
            signaling=None if signaling else (),
            connection=self.connection,
            addresses=self.addresses,
            user=spec.ssh_user,
            private_key=self.private_key or (key if key.exists() else None),
            node_state=provider_class(spec.provider).records_nodes,
            signaling_node=self.signaling_node,
            wheelhouse=self.wheelhouse,
            health=bool(turn) and self.meter is not None,
        )

    def _secrets(self, turn: Sequence[str], signaling: bool) -> dict[str, Any]:
        """The run's secrets file: TURN secrets and keyring, and the meter's passwords of the hosts
        in this run (one TURN node per run, so each node gets only its own)."""
        out = ansible.secret_vars(keyring.load(self.cfg.secrets_path), self._service_environment())
        if self.meter is not None:
            for node in self.nodes:
                if node.name in turn:
                    out.update(remote_meter.node_secrets(self.cfg, self.meter, node))
            if signaling:
                out.update(remote_meter.signaling_secrets(self.cfg, self.meter, self.nodes))
        return out

    def _run(
        self,
        turn: Sequence[str],
        signaling: bool,
        playbook: Path | None = None,
        extra: Mapping[str, Any] | None = None,
        stream: ansible.Sink | None = None,
    ) -> ansible.RunResult:
        more = remote_meter.ca_vars(self.ca_file) if self.meter is not None else {}
        result = ansible.run_playbook(
            self._inventory(turn, signaling),
            self._secrets(turn, signaling),
            extra_vars={**more, **(self.extra_vars or {}), **(extra or {})},
            playbook=playbook or self.playbook,
            stream=stream,
        )
        self.runs.append(result)
        return result

    def _address(self, node: Node) -> str:
        return ansible.host_address(node, self.addresses)

    def _signaling_apart(self) -> bool:
        """The signaling host is a machine no TURN node runs on (its run may overlap theirs)."""
        machine = self.signaling_node
        return machine is not None and self._address(machine) not in {self._address(n) for n in self.nodes}

    def _run_all(self, jobs: Sequence[_Job]) -> list[ansible.RunResult]:
        """The jobs' runs at the same time (each configures machines of its own), output line-prefixed;
        the first failure is raised once every run has ended."""
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_RUNS, len(jobs))) as pool:
            futures = [
                pool.submit(self._run, job.turn, job.signaling, extra=job.extra, stream=_Prefixed(job.label))
                for job in jobs
            ]
        failed = [exc for f in futures if (exc := f.exception()) is not None]
        if failed:
            raise failed[0]
        return [f.result() for f in futures]

    def _service_environment(self) -> dict[str, str]:
        """The operator's HS256 JWT secret goes to the signaling host's root-only environment file."""
        name = self.cfg.signaling.jwt.secret_env
        value = os.environ.get(name)
        return {name: value} if value and "HS256" in self.cfg.signaling.jwt.algorithms else {}

    def push_nodes(self, progress: Progress) -> None:
        """The TURN nodes (see `_push_turn`)."""
        self._push_turn(progress, with_signaling=False)

    def _push_turn(self, progress: Progress, with_signaling: bool) -> None:
        """The TURN nodes, each in a run of its own, at the same time when they are separate machines:
        a new node, an unchanged one or a secret change restarts no coturn. A node whose running coturn
        must restart leaves that run untouched (roles/coturn/tasks/restart_check.yml) and is configured
        afterwards alone, one node at a time (`_push_alone`). `with_signaling`: the signaling host too,
        alongside when it is a machine of its own, else last."""
        apart = with_signaling and self._signaling_apart()
        separate = len({self._address(n) for n in self.nodes}) == len(self.nodes)
        if separate and len(self.nodes) + apart > 1:
            defer = {"coturn_restart_defer": True}
            jobs = [_Job(n.name, (n.name,), extra=defer) for n in self.nodes]
            jobs += [_Job("signaling", signaling=True)] if apart else []
            progress(f"configuring {', '.join(j.label for j in jobs)} in parallel")
            results = dict(zip([j.label for j in jobs], self._run_all(jobs), strict=True))
            alone = [n for n in self.nodes if results[n.name].statuses.get((n.name, RESTART_DEFER_TASK)) == "changed"]
        else:
            alone, apart = list(self.nodes), False
        for node in alone:
            self._push_alone(node, progress)
        if with_signaling and not apart:
            self.push_signaling(progress)

    def _push_alone(self, node: Node, progress: Progress) -> None:
        """One TURN node in a run of its own. A run that must restart coturn drains the node first
        (roles/coturn/tasks/drain.yml); it is handed out again only after it passes the probe."""
        progress(f"configuring {node.name}")
        if self._run([node.name], signaling=False).statuses.get((node.name, DRAIN_MARK_TASK)) == "changed":
            self._undrain_after_probe(node, progress)

    def _undrain_after_probe(self, node: Node, progress: Progress) -> None:
        name = health.key(node)
        if self._passes_probe(node, progress):
            self._run([], signaling=True, playbook=resources.playbook_dir() / "undrain.yml",
                      extra={"coturn_node_name": node.name, "coturn_meter_region": node.region})  # fmt: skip
            progress(f"{name}: probe passed after the restart; back in service")
        else:
            progress(f"{name}: probe failed after the restart; left draining (`turnkit undrain` once fixed)")

    def _passes_probe(self, node: Node, progress: Progress) -> bool:
        """The node passes the probe, asked up to PROBE_ATTEMPTS times (a coturn that was just
        restarted may still be opening its TLS listener)."""
        for attempt in range(PROBE_ATTEMPTS):
            if attempt:
                time.sleep(PROBE_RETRY_DELAY)
            if all(r.ok for r in probe(self.cfg, [node], self.ca_file, progress)):
                return True
        return False

    def push_signaling(self, progress: Progress) -> None:
        """The signaling service runs behind NGINX on `signaling_node`, else on the region's first node."""
        progress("configuring the signaling host")
        self._run([], signaling=True)

    def push_all(self, progress: Progress) -> None:
        """Every TURN node and the signaling host: alongside the nodes' parallel runs when it is a
        machine of its own, else after them."""
        self._push_turn(progress, with_signaling=True)

    def changed(self) -> int:
        return sum(r.total_changed() for r in self.runs)


def over_ssh(provider: Provider[Any], report: Report, progress: Progress) -> None:
    """Deploy a region whose nodes are machines reached over SSH: provision, render, Ansible, probe."""
    cfg, region = provider.cfg, provider.region
    progress("==> provision")
    nodes = provider.apply(progress)
    progress("==> render")
    render_to_state(cfg, region, nodes, keyring.load(cfg.secrets_path).accepted, progress)
    house = wheelhouse.archive(wheelhouse.build(cfg.state_path / "wheelhouse", progress))
    progress("==> configure with Ansible (coturn, meter, certbot certificates, nginx, signaling, probe)")
    keys = localmeter.load_keys(remote_meter.paths(cfg, region))
    ca = provider.ca_file()
    fleet = Fleet(cfg, region, nodes, wheelhouse=house, meter=keys, ca_file=ca, **provider.fleet_options())
    report.promoted = rollout(cfg, lambda: fleet.push_all(progress), lambda: fleet.push_signaling(progress), progress)
    report.ansible_changed = fleet.changed()
    usage_env = remote_meter.write_usage_env(cfg, region, keys, ca)
    progress(f"usage: `set -a; . {shlex.quote(str(usage_env))}; set +a; turnkit usage --region {region}`")
    progress("==> probe")
    report.nodes = probe(cfg, nodes, ca, progress)


def deploy(cfg: Config, region: str, progress: Progress, dry_run: bool = False) -> Report:
    """Take `region` from its current state to a probed fleet (or only plan it with `dry_run`)."""
    provider = provider_for(cfg, region)
    progress("==> plan")
    report = Report(region, provider.plan(), dry_run=dry_run)
    for action in report.actions:
        progress(f"    {action}")
    if not dry_run:
        provider.deploy(report, progress)
    return report
