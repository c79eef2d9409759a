"""Node health: the document probes write and signaling reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnkit import config, health
from turnkit.health import NodeHealth
from turnkit.nodes import Node

A = Node("turn-1", "eu", "a.example.test")
B = Node("turn-2", "eu", "b.example.test")


def test_roundtrip_merge_and_filter(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    health.write_file(path, {"eu/turn-1": NodeHealth(False, 10, ("relay/udp",))})
    health.write_file(path, {"us/turn-1": NodeHealth(True, 11)})  # another region's run keeps eu's entry
    read = health.read_file(path)
    assert read == {"eu/turn-1": NodeHealth(False, 10, ("relay/udp",)), "us/turn-1": NodeHealth(True, 11)}
    assert health.healthy([A, B], read) == [B]  # never probed counts as healthy


@pytest.mark.parametrize("text", ["", "[]", '{"nodes": {"x": {"ok": true}}}', "{nope"])
def test_malformed_reads_as_no_information(tmp_path: Path, text: str) -> None:
    path = tmp_path / "h.json"
    path.write_text(text)
    assert health.read_file(path) == {}
    assert health.read_file(tmp_path / "absent.json") == {}


def test_path_for_env_then_config_then_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(health.ENV_VAR, raising=False)
    (tmp_path / "turnkit.toml").write_text("")
    assert health.path_for(config.load(tmp_path / "turnkit.toml")) == tmp_path / ".turnkit" / "health.json"
    (tmp_path / "turnkit.toml").write_text('[signaling]\nhealth_file = "h/health.json"\n')
    cfg = config.load(tmp_path / "turnkit.toml")
    assert health.path_for(cfg) == tmp_path / "h" / "health.json"
    monkeypatch.setenv(health.ENV_VAR, "/var/lib/turnkit/health.json")
    assert health.path_for(cfg) == Path("/var/lib/turnkit/health.json")
