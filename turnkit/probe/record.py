"""Where a probe run leaves its mark: the node health file and, when configured, Redis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from turnkit import health
from turnkit.config import Config
from turnkit.errors import TurnkitError, WriteError
from turnkit.health import NodeHealth
from turnkit.probe import history, report
from turnkit.probe.result import CheckResult


class RecordError(TurnkitError):
    """Health could not be published (Redis unreachable, file not writable)."""


def history_path(cfg: Config) -> Path:
    return cfg.state_path / history.FILE_NAME


def write_health_file(path: Path, new: Mapping[str, NodeHealth]) -> None:
    try:
        health.write_file(path, new)
    except WriteError as exc:
        raise RecordError(f"node health: {exc}") from None


def write_health_redis(url: str, new: Mapping[str, NodeHealth]) -> None:
    """Merge into the JSON document at `health.REDIS_KEY` (same format as the file)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            raw = client.get(health.REDIS_KEY)
            old = health.from_json(raw.decode() if isinstance(raw, bytes) else "") if raw else {}
            client.set(health.REDIS_KEY, health.to_json(health.merge(old, new)))
        finally:
            client.close()
    except redis.RedisError as exc:
        raise RecordError(f"redis: cannot publish node health: {type(exc).__name__}: {exc}") from None


def publish(cfg: Config | None, results: Sequence[CheckResult], now: int, history_file: Path | None = None) -> None:
    """Append the run to the history and publish the latest health of every configured node probed."""
    path = history_file or (history_path(cfg) if cfg else None)
    if path is not None:
        history.append(path, now, results)
    if cfg is None:
        return
    verdicts = report.node_health(results, now)
    if verdicts:
        write_health_file(health.path_for(cfg), verdicts)
        if cfg.signaling.redis_url:
            write_health_redis(cfg.signaling.redis_url, verdicts)
