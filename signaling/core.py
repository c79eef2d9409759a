"""What a signaling process loads at startup: secrets, JWT keys, node health, the backend and the hub.

`load()` is the one costly step (files, environment); everything it builds is transport-free and
handed to the HTTP routes and the WebSocket connections by the server lifecycle (`signaling.app`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from signaling import auth
from signaling.auth import Verifier
from signaling.backends import Backend
from signaling.backends.memory import MemoryBackend
from signaling.hub import Hub, Limits
from signaling.ice import FileHealth, HealthSource, IceProvider, SharedHealth
from signaling.keysource import KeySource
from signaling.metrics import Metrics, Stats
from turnkit import health as turnkit_health
from turnkit import keyring
from turnkit.config import Config


@dataclass(frozen=True)
class Core:
    """The loaded parts of one signaling process."""

    keys: KeySource
    verifier: Verifier
    ice: IceProvider
    backend: Backend
    hub: Hub
    metrics: Metrics


def load(
    cfg: Config,
    env: Mapping[str, str],
    limits: Limits,
    stats: Stats,
    loop: asyncio.AbstractEventLoop,
    instance: str | None = None,
) -> Core:
    """Read secrets and keys, pick the backend; raises TurnkitError on bad setup. Starts nothing.
    `instance` (the port) names the in-memory backend's resume state file; None keeps none."""
    secrets_path = keyring.path_for(cfg.secrets_path, env) or cfg.secrets_path
    keys = KeySource(secrets_path)
    verifier = auth.load_verifier(cfg, env)
    # Same place `turnkit probe` publishes to: Redis when configured, else the health file.
    health: HealthSource
    backend: Backend
    if cfg.signaling.redis_url:
        from signaling.backends.redis import RedisBackend

        shared = SharedHealth()
        health, backend = (
            shared,
            RedisBackend(cfg.signaling.redis_url, shared, window=float(cfg.signaling.resume_window)),
        )
    else:
        state = cfg.state_path / f"signaling-{instance}.resume.json" if instance else None
        health, backend = FileHealth(turnkit_health.path_for(cfg, env)), MemoryBackend(state)

    def count_credential() -> None:
        stats.credentials += 1

    ice = IceProvider(cfg, keys, health, on_issue=count_credential)
    hub = Hub(limits, ice, backend, stats, loop)

    def gauges() -> dict[str, tuple[str, float]]:
        return {
            "connections": ("Open WebSocket connections.", len(hub.peers)),
            "rooms": ("Rooms with members on this process.", len(hub.view.rooms)),
            "ice_push_timers": ("Pending ICE server pushes (at most one per connection).", len(hub.pushes)),
        }

    return Core(keys, verifier, ice, backend, hub, Metrics(stats, gauges))
