"""The order of a fleet rotation: nodes accept the staged secret before it issues; a failed push promotes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemons import local_config
from turnkit import keyring
from turnkit.deploy import DeployError, rollout, staged_secret


def test_nodes_get_the_staged_secret_before_it_becomes_primary(tmp_path: Path) -> None:
    cfg = local_config(tmp_path)
    old = keyring.init(100)
    ring = keyring.rotate(old, 200, stage=True)
    keyring.save(cfg.secrets_path, ring)
    new = staged_secret(ring)
    assert new is not None
    seen: list[tuple[str, str, list[str]]] = []

    def snapshot(who: str) -> None:
        current = keyring.load(cfg.secrets_path)
        seen.append((who, current.primary.id, sorted(current.accepted)))

    promoted = rollout(cfg, lambda: snapshot("nodes"), lambda: snapshot("signaling"), lambda _: None)
    assert promoted == new.id
    both = sorted([old.primary.value, new.value])
    assert seen == [("nodes", old.primary.id, both), ("signaling", new.id, both)]
    assert staged_secret(keyring.load(cfg.secrets_path)) is None


def test_a_failed_push_promotes_nothing(tmp_path: Path) -> None:
    cfg = local_config(tmp_path)
    ring = keyring.rotate(keyring.init(100), 200, stage=True)
    keyring.save(cfg.secrets_path, ring)

    def fail() -> None:
        raise DeployError("ansible: host `turn-2` failed at task `Restart coturn`")

    with pytest.raises(DeployError):
        rollout(cfg, fail, lambda: None, lambda _: None)
    assert keyring.load(cfg.secrets_path) == ring


def test_without_a_staged_secret_only_nodes_are_pushed(tmp_path: Path) -> None:
    cfg = local_config(tmp_path)
    keyring.save(cfg.secrets_path, keyring.init(100))
    calls: list[str] = []
    assert rollout(cfg, lambda: calls.append("nodes"), lambda: calls.append("signaling"), lambda _: None) is None
    assert calls == ["nodes"]
