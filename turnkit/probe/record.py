"""Where a probe run leaves its mark: the node health file and, when configured, Redis."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def update_health_redis(url: str, change: Callable[[dict[str, NodeHealth]], dict[str, NodeHealth]]) -> None:
    """Apply `change` to the JSON document at `health.REDIS_KEY` (same format as the file).

    WATCH/MULTI: two writers (probes of two regions, a drain) never lose each other's entries.
    `url` may be a Sentinel URL (`turnkit.redisurl`), like the signaling service's.
    """
    import redis

    from turnkit.redisurl import RedisUrlError, sync_client

    try:
        client = sync_client(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            with client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(health.REDIS_KEY)
                        raw = pipe.get(health.REDIS_KEY)
                        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
                        old = health.from_json(text) if text else {}
                        pipe.multi()
                        pipe.set(health.REDIS_KEY, health.to_json(change(old)))
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue
        finally:
            client.close()
    except RedisUrlError as exc:
        raise RecordError(f"redis: {exc}") from None
    except redis.RedisError as exc:
        raise RecordError(f"redis: cannot publish node health: {type(exc).__name__}: {exc}") from None


def write_health_redis(url: str, new: Mapping[str, NodeHealth]) -> None:
    """Merge `new` into the Redis health document."""
    update_health_redis(url, lambda old: health.merge(old, new))


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
