"""The provider interface: plan → actions, apply → nodes, destroy, and the current nodes."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from turnkit import nodes as nodes_mod
from turnkit.config import Config
from turnkit.errors import ConfigError, TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.nodes import Node, state_file

Verb = Literal["create", "update", "delete", "keep"]
Progress = Callable[[str], None]


class ProvisionError(TurnkitError):
    """A provisioning step failed; the text names the region and the step."""


@dataclass(frozen=True)
class Action:
    """One planned change: `create security-group turnkit-demo-eu (3478/udp, …)`."""

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


class Provider(Protocol):
    """What `plan`, `provision`, `destroy` and `deploy` need from a region's provider."""

    def plan(self) -> list[Action]:
        """What `apply` would do, read-only."""
        ...

    def apply(self, progress: Progress) -> list[Node]:
        """Converge the region to the config; returns its nodes (and records them)."""
        ...

    def destroy_plan(self) -> list[Action]:
        """What `destroy` would remove, read-only."""
        ...

    def destroy(self, progress: Progress) -> list[Action]:
        """Remove exactly what turnkit created for the region."""
        ...

    def nodes(self) -> list[Node]:
        """The region's nodes as last recorded."""
        ...


def write_nodes(cfg: Config, region: str, nodes: Sequence[Node]) -> None:
    """Record provisioned nodes atomically where `turnkit.nodes.region_nodes` reads them."""
    atomic_write(state_file(cfg, region), json.dumps([n.to_dict() for n in nodes], indent=2) + "\n")


def read_nodes(cfg: Config, region: str) -> list[Node]:
    """Recorded nodes, or none when the region was never provisioned."""
    try:
        return nodes_mod.region_nodes(cfg, region)
    except ConfigError:
        if state_file(cfg, region).exists():
            raise
        return []


def forget_nodes(cfg: Config, region: str) -> None:
    state_file(cfg, region).unlink(missing_ok=True)


def quiet(_: str) -> None:
    """A progress sink that drops messages."""
