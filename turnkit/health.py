"""Node health as the latest probe left it: written by `turnkit probe`, read by signaling.

File format (JSON): {"version": 1, "nodes": {"<region>/<node>": {"ok": bool, "checked_at": unix,
"failed": ["check", ...]}}}. A node absent from the file counts as healthy (never probed yet).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnkit.config import Config
from turnkit.fsutil import atomic_write
from turnkit.nodes import Node

FORMAT_VERSION = 1
REDIS_KEY = "turnkit:health"
#: Overrides the file location for both writer and reader (systemd units point it at their shared StateDirectory).
ENV_VAR = "TURNKIT_HEALTH_FILE"


@dataclass(frozen=True)
class NodeHealth:
    ok: bool
    checked_at: int
    failed: tuple[str, ...] = field(default=())


def key(node: Node) -> str:
    return f"{node.region}/{node.name}"


def to_json(health: Mapping[str, NodeHealth]) -> str:
    nodes = {k: {"ok": h.ok, "checked_at": h.checked_at, "failed": list(h.failed)} for k, h in sorted(health.items())}
    return json.dumps({"version": FORMAT_VERSION, "nodes": nodes}, indent=2) + "\n"


def from_json(text: str) -> dict[str, NodeHealth]:
    """Parse a health document; anything malformed reads as no information (all healthy)."""
    try:
        doc: Any = json.loads(text)
        return {
            k: NodeHealth(bool(v["ok"]), int(v["checked_at"]), tuple(v.get("failed", ())))
            for k, v in doc["nodes"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def merge(old: Mapping[str, NodeHealth], new: Mapping[str, NodeHealth]) -> dict[str, NodeHealth]:
    """Latest result per node: a run over one region keeps the other regions' entries."""
    return {**old, **new}


def healthy(nodes: Iterable[Node], health: Mapping[str, NodeHealth]) -> list[Node]:
    """Nodes not marked failing by the latest probe."""
    return [n for n in nodes if health.get(key(n), NodeHealth(True, 0)).ok]


def path_for(cfg: Config, env: Mapping[str, str] | None = None) -> Path:
    """Where probes write and signaling reads node health: $TURNKIT_HEALTH_FILE, `signaling.health_file`,
    else `<state_dir>/health.json`."""
    override = (os.environ if env is None else env).get(ENV_VAR)
    if override:
        return Path(override)
    configured = cfg.signaling.health_file
    return cfg.resolve(configured) if configured else cfg.state_path / "health.json"


def read_file(path: Path) -> dict[str, NodeHealth]:
    try:
        return from_json(path.read_text(encoding="utf-8"))
    except OSError:
        return {}


def write_file(path: Path, new: Mapping[str, NodeHealth]) -> None:
    atomic_write(path, to_json(merge(read_file(path), new)))
