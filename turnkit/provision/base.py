"""The provider interface: everything that differs between region kinds lives behind `Provider`.

A provider owns one region of its kind: where its nodes come from (`nodes`), what would change
(`diff`, computed once and shown by `plan`, executed by `apply`), how it is torn down (`destroy`),
how its nodes get configured (`deploy`), what runs there (`status`) and which CA its TLS chains
to (`ca_file`). Code outside `turnkit.provision` asks the provider and never the provider's name.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypedDict, TypeVar

from turnkit.config import Config, Region
from turnkit.errors import ConfigError, InputError, NotProvisioned, TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.nodes import Node
from turnkit.progress import Progress

if TYPE_CHECKING:
    from turnkit.deploy import Report

Verb = Literal["create", "update", "delete", "keep"]
Found = TypeVar("Found")


class ProvisionError(TurnkitError):
    """A provisioning step failed; the text names the region and the step, `code` the cloud's error code."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Action:
    """One planned (or performed) change: `create security-group turnkit-demo-eu (3478/udp, …)`."""

    verb: Verb
    kind: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        tail = f" ({self.detail})" if self.detail else ""
        return f"{self.verb} {self.kind} {self.name}{tail}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def changes(actions: Sequence[Action]) -> list[Action]:
    """Actions that would change something (everything but `keep`)."""
    return [a for a in actions if a.verb != "keep"]


@dataclass(frozen=True)
class Diff(Generic[Found]):
    """What `apply` would do (`actions`) and what the provider found while working that out."""

    actions: list[Action]
    found: Found


class FleetOptions(TypedDict, total=False):
    """How Ansible reaches a region's machines when that differs from turnkit.toml (`deploy.Fleet` fields)."""

    #: The SSH key the provider made for the region (default: `ssh_public_key` without `.pub`).
    private_key: Path
    #: A machine of its own for NGINX and signaling (default: the region's first TURN node).
    signaling_node: Node


class Provider(ABC, Generic[Found]):
    """Base of every provider; a subclass is registered by name in `turnkit.provision.PROVIDERS`."""

    #: True when the region's services run on this machine (probes then ask about loopback peers only).
    runs_here: ClassVar[bool] = False
    #: True when the nodes exist only in the controller's state dir (the signaling host gets a copy).
    records_nodes: ClassVar[bool] = False

    def __init__(self, cfg: Config, region: str) -> None:
        self.cfg, self.region = cfg, region
        self.spec: Region = cfg.region(region)
        self._diff: Diff[Found] | None = None

    # -- what every provider implements -------------------------------------------------------

    @abstractmethod
    def nodes(self) -> list[Node]:
        """The region's nodes; `NotProvisioned` (one line) when there are none yet."""

    @abstractmethod
    def _compute_diff(self) -> Diff[Found]:
        """Read-only: look at what exists and list the actions that converge it to the config."""

    @abstractmethod
    def _execute(self, diff: Diff[Found], progress: Progress) -> list[Node]:
        """Carry out `diff`; returns the region's nodes."""

    def destroy_plan(self) -> list[Action]:
        """What `destroy` would remove, read-only."""
        return []

    def destroy(self, progress: Progress) -> list[Action]:
        """Remove exactly what turnkit created for the region; returns what was actually removed."""
        return []

    # -- shared behaviour, overridden where a kind differs --------------------------------------

    def diff(self) -> Diff[Found]:
        """The diff, computed once per provider object (plan and apply share it)."""
        if self._diff is None:
            self._diff = self._compute_diff()
        return self._diff

    def plan(self) -> list[Action]:
        """What `apply` would do, read-only."""
        return self.diff().actions

    def apply(self, progress: Progress) -> list[Node]:
        """Converge the region to the config (executing the diff `plan` showed); returns its nodes."""
        diff = self.diff()
        self._diff = None  # executed: the next plan looks again
        return self._execute(diff, progress)

    def deploy(self, report: Report, progress: Progress) -> None:
        """Configure the nodes: by default over SSH with the shipped Ansible playbook."""
        from turnkit import deploy

        deploy.over_ssh(self, report, progress)

    def fleet_options(self) -> FleetOptions:
        """What `deploy.over_ssh` and `turnkit inventory` need beyond the nodes and turnkit.toml."""
        return {}

    def status(self) -> dict[str, dict[str, Any]]:
        """Extra status columns per node name (e.g. the pid of a local process)."""
        return {}

    def ca_file(self) -> Path | None:
        """The CA the nodes' TLS certificates chain to, when it is not a public one."""
        return None

    def stop(self, progress: Progress) -> list[str]:
        """Stop the region's processes on this machine (`turnkit down`); only local kinds can."""
        raise InputError(
            f"--region: `down` stops a local region; use `turnkit destroy --region {self.region}`, got {self.region!r}"
        )


# -- nodes recorded by provisioning (cloud kinds) ----------------------------------------------


def state_file(cfg: Config, region: str) -> Path:
    """Where provisioning records a cloud region's nodes."""
    return cfg.state_path / "regions" / region / "nodes.json"


def record_nodes(cfg: Config, region: str, nodes: Sequence[Node]) -> None:
    """Record provisioned nodes atomically where `recorded_nodes` reads them."""
    atomic_write(state_file(cfg, region), json.dumps([n.to_dict() for n in nodes], indent=2) + "\n")


def recorded_nodes(cfg: Config, region: str) -> list[Node]:
    """The nodes provisioning recorded; `NotProvisioned` when it never ran."""
    path = state_file(cfg, region)
    try:
        return [Node(**item) for item in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        raise NotProvisioned(
            f"region `{region}`: not provisioned yet (run `turnkit provision --region {region}`)"
        ) from None
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(f"{path}: corrupt node state") from None


def forget_nodes(cfg: Config, region: str) -> None:
    state_file(cfg, region).unlink(missing_ok=True)
