"""Run the shipped Ansible roles: inventory from turnkit nodes, secrets in a 0600 file, progress streamed.

The inventory carries only non-secret variables (the render context of each role, keyed by the
same names the templates use); TURN secrets and the keyring travel in an extra-vars file inside
a private temporary directory, never on a command line and never in turnkit's output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from turnkit import __version__, keyring, render, resources
from turnkit.config import Config
from turnkit.errors import TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.keyring import Keyring
from turnkit.nodes import Node

#: turnkit connection kind → Ansible connection plugin.
CONNECTIONS: dict[str, str] = {
    "ssh": "ansible.builtin.ssh",
    "chroot": "community.general.chroot",
}

#: Variables that must never be written to the inventory (they go to the secrets file).
SECRET_VARS: frozenset[str] = frozenset(
    {
        "coturn_static_auth_secrets",
        "coturn_key_pem",
        "coturn_statsdb_password",
        "coturn_meter_central_url",
        "signaling_secrets_json",
        "signaling_environment",
        "signaling_usage_store_acl",
        "signaling_usage_store_reader_env",
    }
)

#: The inventory group of the host whose node health signaling reads (drain marks go there).
HEALTH_GROUP = "turnkit_health"

#: Environment for a parseable, colourless run of the default stdout callback.
ANSIBLE_ENV: dict[str, str] = {
    "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_FORCE_COLOR": "0",
    "ANSIBLE_RETRY_FILES_ENABLED": "0",
    "ANSIBLE_DIFF_ALWAYS": "0",
    "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
    "PYTHONUNBUFFERED": "1",
    # One SSH round trip per task instead of three (put the module, run it, remove it); the hosts'
    # sudo must not require a tty (Debian's default).
    "ANSIBLE_PIPELINING": "1",
    # Less CPU per task on both ends: modules travel as a stored (uncompressed) zip, and SSH keeps its
    # shared connection but drops compression (Ansible's default ssh_args add -C).
    "ANSIBLE_MODULE_COMPRESSION": "ZIP_STORED",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
}


def plugin_env() -> dict[str, str]:
    """Where the roles' action plugins are (`turnkit_copy`, `turnkit_template`, `turnkit_file`: the
    builtins with a cheap check for a path that needs nothing, turnkit.fastpath). site.yml finds them
    beside itself; a play of one's own that uses the roles needs this too."""
    return {"ANSIBLE_ACTION_PLUGINS": str(resources.playbook_dir() / "action_plugins")}


_TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<task>.*)\] \*+$")
_FAILED = re.compile(
    r"^(?:fatal|failed): \[(?P<host>[^\]]+)\](?: \(item=.*\))?: (?P<kind>FAILED|UNREACHABLE)! => (?P<rest>.*)$"
)
_FAILED_ITEM = re.compile(r"^failed: \[(?P<host>[^\]]+)\] \(item=.*?\) => (?P<rest>.*)$")
_STATUS = re.compile(r"^(?P<status>ok|changed|skipping): \[(?P<host>[^\]\s]+)(?: -> [^\]]+)?\]")
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


class Sink(Protocol):
    """Where a run's output goes (a text stream)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class PlaybookError(TurnkitError):
    """ansible-playbook failed; names the first failed host and task."""

    def __init__(self, message: str, host: str | None = None, task: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.task = task


@dataclass(frozen=True)
class Host:
    """One inventory host: its name, how Ansible reaches it, and its (non-secret) variables."""

    name: str
    address: str
    connection: str = "ssh"
    user: str | None = None
    private_key: Path | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    def inventory_vars(self) -> dict[str, Any]:
        if self.connection not in CONNECTIONS:
            known = ", ".join(sorted(CONNECTIONS))
            raise TurnkitError(f"host `{self.name}`: unknown connection `{self.connection}` (known: {known})")
        leaked = SECRET_VARS & set(self.vars)
        if leaked:
            raise TurnkitError(
                f"host `{self.name}`: secret variable `{sorted(leaked)[0]}` must not go in the inventory"
            )
        out: dict[str, Any] = {
            "ansible_connection": CONNECTIONS[self.connection],
            "ansible_host": self.address,
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        if self.connection == "ssh":
            out["ansible_ssh_common_args"] = "-o StrictHostKeyChecking=accept-new"
            if self.user:
                out["ansible_user"] = self.user
                out["ansible_become"] = self.user != "root"
            if self.private_key:
                out["ansible_ssh_private_key_file"] = str(self.private_key)
        return {**out, **self.vars}


@dataclass(frozen=True)
class Inventory:
    """The two groups site.yml configures, with group-wide variables."""

    turn: Sequence[Host] = ()
    signaling: Sequence[Host] = ()
    turn_vars: Mapping[str, Any] = field(default_factory=dict)
    signaling_vars: Mapping[str, Any] = field(default_factory=dict)
    #: Where signaling reads node health (the signaling host), for TURN plays that drain a node
    #: before a coturn restart: group `turnkit_health`, which no play targets (only `delegate_to`).
    health: Sequence[Host] = ()

    def _check_shared_hosts(self) -> None:
        """A host in both groups is one Ansible host: its variables must agree (host vars beat group vars)."""
        turn = {h.name: {**self.turn_vars, **h.vars} for h in self.turn}
        for host in self.signaling:
            if host.name not in turn:
                continue
            mine = {**self.signaling_vars, **host.vars}
            clash = sorted(k for k in set(turn[host.name]) & set(mine) if turn[host.name][k] != mine[k])
            if clash:
                raise TurnkitError(
                    f"host `{host.name}` is in both groups with different `{clash[0]}`: "
                    "configure its TURN and signaling roles in separate runs"
                )

    def to_dict(self) -> dict[str, Any]:
        """The YAML-inventory structure (written as JSON, which the YAML plugin reads)."""
        for group in (self.turn_vars, self.signaling_vars):
            leaked = SECRET_VARS & set(group)
            if leaked:
                raise TurnkitError(f"secret variable `{sorted(leaked)[0]}` must not go in the inventory")
        self._check_shared_hosts()
        groups = {
            "turn": (self.turn, self.turn_vars),
            "signaling": (self.signaling, self.signaling_vars),
        }
        if self.health:
            groups[HEALTH_GROUP] = (self.health, {})
        return {
            "all": {
                "children": {
                    name: {"hosts": {h.name: h.inventory_vars() for h in hosts}, "vars": dict(group_vars)}
                    for name, (hosts, group_vars) in groups.items()
                }
            }
        }


def _public(context: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if k not in SECRET_VARS}


def region_inventory(
    cfg: Config,
    nodes: Sequence[Node],
    coturn_version: str,
    *,
    turn: Sequence[str] | None = None,
    signaling: Sequence[Host] | None = None,
    connection: str = "ssh",
    addresses: Mapping[str, str] | None = None,
    user: str | None = None,
    private_key: Path | None = None,
    certificates: bool = True,
    node_state: bool = False,
    signaling_node: Node | None = None,
    wheelhouse: Path | None = None,
    node_overrides: Mapping[str, Any] | None = None,
    region_overrides: Mapping[str, Any] | None = None,
    health: bool = False,
) -> Inventory:
    """The inventory of a region, the only one turnkit builds (deploy, tests, by-hand runs).

    `turn` names the TURN nodes to configure (default: all); `signaling` the signaling host(s)
    (default: `signaling_node`'s machine if the region has one of its own, else the first node's;
    `()` for none). TURN hosts carry their coturn context; with `certificates`, each TURN host asks
    certbot for its own hostname and the signaling host for its `server_name`, the name NGINX's
    `ssl_certificate` points at. `node_state` hands the signaling host the recorded nodes (cloud
    regions keep them only on the controller); `wheelhouse` (a directory on the controller, see
    turnkit.wheelhouse) is what the signaling host installs turnkit from, without a package index.
    With `health`, the signaling machine is also in group `turnkit_health`, where a TURN play marks
    its node draining before a coturn restart (roles/coturn/tasks/drain.yml).
    """
    wanted = None if turn is None else set(turn)
    hosts = []
    for node in nodes:
        if wanted is not None and node.name not in wanted:
            continue
        context = _public(render.coturn_context(cfg, node, [], coturn_version))
        if certificates:
            context["certbot_domains"] = [node.hostname]
        context.update(_public(node_overrides or {}))
        hosts.append(Host(node.name, host_address(node, addresses), connection, user, private_key, context))
    machine = signaling_node or nodes[0]
    if signaling is None:
        signaling = [Host(machine.name, host_address(machine, addresses), connection, user, private_key)]
    # Its own inventory name: a host named like a group (`signaling`) would be matched by that play.
    health_host = Host(
        f"{HEALTH_GROUP}-{machine.name}", host_address(machine, addresses), connection, user, private_key
    )
    overrides = _public(region_overrides or {})
    return Inventory(
        turn=hosts,
        signaling=signaling,
        health=[health_host] if health else (),
        turn_vars={
            **render.certbot_context(cfg, nodes),
            **_turn_wheelhouse_vars(wheelhouse),
            **_turn_meter_vars(cfg),
            **overrides,
        },
        signaling_vars={
            **_signaling_vars(cfg, nodes, certificates, node_state),
            **_wheelhouse_vars(wheelhouse),
            **overrides,
        },
    )


def _wheelhouse_vars(wheelhouse: Path | None) -> dict[str, Any]:
    """The signaling role installs exactly this turnkit from the shipped wheelhouse (`pip --no-index`)."""
    if wheelhouse is None:
        return {}
    if wheelhouse.is_dir():
        raise TurnkitError(f"wheelhouse: expected its archive (turnkit.wheelhouse.archive), got directory {wheelhouse}")
    return {"signaling_wheelhouse": str(wheelhouse), "signaling_turnkit_version": __version__}


def _turn_wheelhouse_vars(wheelhouse: Path | None) -> dict[str, Any]:
    """TURN nodes install the same turnkit (the meter, the drain count) from the same wheelhouse."""
    if wheelhouse is None:
        return {}
    return {"coturn_meter_wheelhouse": str(wheelhouse), "coturn_meter_turnkit_version": __version__}


def _turn_meter_vars(cfg: Config) -> dict[str, Any]:
    """The meter and the drain count on a TURN node read turnkit.toml; the drain waits this long."""
    return {
        "coturn_meter_config_toml": cfg.path.read_text(encoding="utf-8"),
        "coturn_drain_timeout": cfg.coturn.drain_timeout,
    }


def host_address(node: Node, addresses: Mapping[str, str] | None = None) -> str:
    """How Ansible reaches `node`: an address given for it, else its public IP, else its hostname."""
    return (addresses or {}).get(node.name) or node.public_ip or node.hostname


def _signaling_vars(cfg: Config, nodes: Sequence[Node], certificates: bool, node_state: bool) -> dict[str, Any]:
    """Group variables of the signaling host: the nginx, certbot, signaling and probe contexts."""
    merged: dict[str, Any] = {}
    for context in (
        render.nginx_context,
        render.certbot_context,
        render.signaling_context,
        render.probe_context,
        render.usage_store_context,
    ):
        merged.update(context(cfg, nodes))
    if certificates:
        merged["certbot_domains"] = [merged["nginx_server_name"]]
    merged["signaling_config_toml"] = cfg.path.read_text(encoding="utf-8")
    if node_state:
        state_dir = Path(cfg.project.state_dir)
        on_host = state_dir if state_dir.is_absolute() else Path(merged["signaling_config_dir"]) / state_dir
        regions = sorted({n.region for n in nodes})
        merged["signaling_node_state"] = {r: [n.to_dict() for n in nodes if n.region == r] for r in regions}
        merged["signaling_state_dir"] = str(on_host)
    return merged


def secret_vars(ring: Keyring, environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The secrets file of a run: every accepted TURN secret for coturn, the keyring and the service
    environment (JWT secret) for signaling."""
    out: dict[str, Any] = {"coturn_static_auth_secrets": ring.accepted, "signaling_secrets_json": keyring.to_json(ring)}
    if environment:
        out["signaling_environment"] = dict(environment)
    return out


@dataclass(frozen=True)
class RunResult:
    """A finished run: PLAY RECAP counts per host, and the output lines."""

    recap: dict[str, dict[str, int]]
    lines: list[str]
    #: (host, task) → the last status the task reported for the host (`ok`, `changed`, `skipping`).
    statuses: dict[tuple[str, str], str] = field(default_factory=dict)

    def changed(self) -> dict[str, int]:
        return {host: counts.get("changed", 0) for host, counts in self.recap.items()}

    def total_changed(self) -> int:
        """Tasks that changed something, over every host (0: the run was a no-op)."""
        return sum(self.changed().values())


@dataclass
class _Parser:
    """Follows the default callback's output: current task, first failure per host, recap."""

    task: str | None = None
    failures: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    statuses: dict[tuple[str, str], str] = field(default_factory=dict)
    in_recap: bool = False

    def feed(self, line: str) -> None:
        if m := _TASK.match(line):
            self.task = m["task"]
        elif self.task is not None and (m := _STATUS.match(line)):
            self.statuses[(m["host"], self.task)] = m["status"]
        elif (m := _FAILED.match(line)) or (m := _FAILED_ITEM.match(line)):
            self.failures.setdefault(m["host"], (self.task, _reason(m["rest"])))
        elif line.startswith("PLAY RECAP"):
            self.in_recap = True
        elif self.in_recap and (m := _RECAP.match(line)):
            counts = dict(item.split("=") for item in m["counts"].split())
            self.recap[m["host"]] = {k: int(v) for k, v in counts.items()}


def _reason(rest: str) -> str:
    """The `msg` of a failure result (no_log results are censored by Ansible itself)."""
    try:
        result = json.loads(rest)
    except ValueError:
        return ""
    if not isinstance(result, dict):
        return ""
    msg = result.get("msg") or result.get("censored") or result.get("stderr") or ""
    return str(msg).strip().splitlines()[0] if str(msg).strip() else ""


def ansible_playbook() -> str:
    """The ansible-playbook next to this Python (the venv), else on PATH."""
    found = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or shutil.which("ansible-playbook")
    if not found:
        raise TurnkitError("`ansible-playbook` not found (install turnkit's `ansible` dependency)")
    return found


def base_vars() -> dict[str, Any]:
    """Extra variables every run needs: the managed-by header and the shared template set."""
    return {"turnkit_header": render.HEADER, "turnkit_templates_dir": str(resources.template_dir())}


def run_playbook(
    inventory: Inventory,
    secrets: Mapping[str, Any],
    *,
    extra_vars: Mapping[str, Any] | None = None,
    playbook: Path | None = None,
    stream: Sink | None = None,
    timeout: float | None = None,
) -> RunResult:
    """Run `playbook` (default: the shipped site.yml) and return the recap; raise PlaybookError on failure."""
    book = playbook or resources.playbook_dir() / "site.yml"
    out = stream if stream is not None else sys.stderr
    with tempfile.TemporaryDirectory(prefix="turnkit-ansible-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        atomic_write(work / "inventory.yml", json.dumps(inventory.to_dict(), indent=2).encode(), mode=0o600)
        atomic_write(work / "vars.json", json.dumps({**base_vars(), **(extra_vars or {})}).encode(), mode=0o600)
        atomic_write(work / "secrets.json", json.dumps(dict(secrets)).encode(), mode=0o600)
        argv = [
            ansible_playbook(),
            "-i", str(work / "inventory.yml"),
            "-e", f"@{work / 'vars.json'}",
            "-e", f"@{work / 'secrets.json'}",
            str(book),
        ]  # fmt: skip
        env = {**os.environ, **ANSIBLE_ENV, **plugin_env(), "ANSIBLE_LOCAL_TEMP": str(work / "tmp")}
        return _run(argv, env, out, timeout, work)


def _run(argv: list[str], env: dict[str, str], out: Sink, timeout: float | None, cwd: Path) -> RunResult:
    parser, lines = _Parser(), []
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise TurnkitError(f"cannot run `ansible-playbook`: {exc.strerror}") from None
    assert proc.stdout is not None
    # Reading the output blocks until ansible-playbook and its workers close it: a watchdog
    # kills the whole process group when the time is up.
    expired = threading.Event()

    def _expire() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    watchdog = threading.Timer(timeout, _expire) if timeout is not None else None
    with proc:
        if watchdog:
            watchdog.start()
        try:
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                lines.append(line)
                parser.feed(line)
                out.write(raw)
                out.flush()
            rc = proc.wait()
        finally:
            if watchdog:
                watchdog.cancel()
    if expired.is_set():
        raise PlaybookError(f"ansible-playbook did not finish within {timeout:g}s (last task: {parser.task})")
    if rc == 0:
        return RunResult(parser.recap, lines, parser.statuses)
    raise _failure(parser, rc, lines)


def _failure(parser: _Parser, rc: int, lines: list[str]) -> PlaybookError:
    """The first host that failed (or was unreachable) in the recap, with its task and reason."""
    bad = [h for h, c in parser.recap.items() if c.get("failed", 0) or c.get("unreachable", 0)]
    for host in [*bad, *parser.failures]:
        if host in parser.failures:
            task, reason = parser.failures[host]
            detail = f": {reason}" if reason else ""
            return PlaybookError(f"ansible: host `{host}` failed at task `{task}`{detail}", host, task)
    last = next((line for line in reversed(lines) if line.strip()), "no output")
    return PlaybookError(f"ansible-playbook exited with {rc}: {last.strip()}")
