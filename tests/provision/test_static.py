"""The static provider only reads hosts from turnkit.toml: nothing to create, nothing to destroy."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_cli
from turnkit import config as config_mod
from turnkit.nodes import Node
from turnkit.provision import provider_for

TOML = """
[regions.us]
provider = "static"
nodes = 2
[[regions.us.hosts]]
address = "turn-1.us.example.test"
public_ip = "198.51.100.7"
private_ip = "10.0.0.7"
[[regions.us.hosts]]
name = "edge"
address = "198.51.100.8"
"""


def test_static_region_plans_keeps_and_never_destroys(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text(TOML)
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    provider = provider_for(cfg, "us")
    assert [str(a) for a in provider.plan()] == [
        "keep host turn-1 (turn-1.us.example.test)",
        "keep host edge (198.51.100.8)",
    ]
    seen: list[str] = []
    assert provider.apply(seen.append) == [
        Node("turn-1", "us", "turn-1.us.example.test", "198.51.100.7", "10.0.0.7"),
        Node("edge", "us", "198.51.100.8", "198.51.100.8", None),
    ]
    assert seen == ["static region `us`: 2 host(s) from turnkit.toml"]
    assert provider.destroy_plan() == []

    out = run_cli("destroy", "--region", "us", cwd=tmp_path, stdin="")
    assert (out.returncode, out.stdout.strip()) == (0, "destroyed 0 resource(s) of region `us`")
    plan = run_cli("plan", "--region", "us", cwd=tmp_path)
    assert plan.stdout.splitlines()[0] == "region `us` is up to date"
