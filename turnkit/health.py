"""Node health as the latest probe left it: written by `turnkit probe`, read by signaling.

File format (JSON): {"version": 1, "nodes": {"<region>/<node>": {"ok": bool, "checked_at": unix,
"failed": ["check", ...], "draining": true}}}. A node absent from the file counts as healthy (never
probed yet). `draining` (set by `turnkit drain`, absent when false) outlives probe runs: only
`mark_draining` sets or clears it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
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
    draining: bool = False


def key(node: Node) -> str:
    return f"{node.region}/{node.name}"


def _entry(h: NodeHealth) -> dict[str, Any]:
    entry: dict[str, Any] = {"ok": h.ok, "checked_at": h.checked_at, "failed": list(h.failed)}
    return entry | ({"draining": True} if h.draining else {})


def to_json(health: Mapping[str, NodeHealth]) -> str:
    nodes = {k: _entry(h) for k, h in sorted(health.items())}
    return json.dumps({"version": FORMAT_VERSION, "nodes": nodes}, indent=2) + "\n"


def from_json(text: str) -> dict[str, NodeHealth]:
    """Parse a health document; anything malformed reads as no information (all healthy)."""
    try:
        doc: Any = json.loads(text)
        return {
            k: NodeHealth(bool(v["ok"]), int(v["checked_at"]), tuple(v.get("failed", ())), v.get("draining") is True)
            for k, v in doc["nodes"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def merge(old: Mapping[str, NodeHealth], new: Mapping[str, NodeHealth]) -> dict[str, NodeHealth]:
    """Latest result per node: a run over one region keeps the other regions' entries, and a
    probe result keeps the node's draining mark."""
    kept = {k: replace(h, draining=old[k].draining) if k in old else h for k, h in new.items()}
    return {**old, **kept}


def mark_draining(old: Mapping[str, NodeHealth], node_key: str, draining: bool, now: int) -> dict[str, NodeHealth]:
    """Set or clear one node's draining mark (a never-probed node gets a passing entry)."""
    current = old.get(node_key, NodeHealth(True, now))
    return {**old, node_key: replace(current, draining=draining)}


def healthy(nodes: Iterable[Node], health: Mapping[str, NodeHealth]) -> list[Node]:
    """Nodes neither marked failing by the latest probe nor draining."""
    return [n for n in nodes if (h := health.get(key(n), NodeHealth(True, 0))).ok and not h.draining]


def serving(nodes: Iterable[Node], health: Mapping[str, NodeHealth]) -> list[Node]:
    """Nodes not draining (failing or not): what signaling falls back to when none is healthy."""
    return [n for n in nodes if not health.get(key(n), NodeHealth(True, 0)).draining]


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


def write_draining(path: Path, node_key: str, draining: bool, now: int) -> None:
    atomic_write(path, to_json(mark_draining(read_file(path), node_key, draining, now)))
