"""The provider registry is the one place that knows region kinds; the node reader never returns []."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from turnkit import config as config_mod
from turnkit import nodes
from turnkit.config import Region
from turnkit.errors import ConfigError, NotProvisioned
from turnkit.provision import PROVIDERS, Provider, provider_class

PACKAGE = Path(__file__).resolve().parents[2] / "turnkit"


def test_registry_matches_the_config_schema() -> None:
    kinds = typing.get_args(Region.model_fields["provider"].annotation)
    assert sorted(PROVIDERS) == sorted(kinds)
    for kind in PROVIDERS:
        assert issubclass(provider_class(kind), Provider)


def test_no_provider_names_are_compared_outside_provision() -> None:
    pattern = re.compile(
        r"""provider\s*[!=]=|provider\s+(not\s+)?in\b|[!=]=\s*["'](aws|static|local|lab)["']|\b_RESOLVERS\b|\bDEPLOYERS\b"""
        r"""|getattr\(provider"""
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "provision" not in path.parts and path.name != "config.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_unknown_and_unprovisioned_regions_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    with pytest.raises(NotProvisioned) as info:
        nodes.region_nodes(cfg, "eu")
    assert str(info.value) == "region `eu`: not provisioned yet (run `turnkit provision --region eu`)"
    with pytest.raises(ConfigError) as unknown:
        nodes.region_nodes(cfg, "mars")
    assert str(unknown.value) == "turnkit.toml: regions.mars: no such region (known: eu)"


def test_status_of_an_unprovisioned_region_is_an_error(tmp_path: Path) -> None:
    from tests.helpers.cli import run_cli

    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    out = run_cli("status", "--region", "eu", "--json", cwd=tmp_path)
    assert (out.returncode, out.stdout, out.stderr.strip()) == (
        2,
        "",
        "error: region `eu`: not provisioned yet (run `turnkit provision --region eu`)",
    )
    every = run_cli("status", "--json", cwd=tmp_path)
    assert (every.returncode, every.stdout.strip()) == (0, "[]")
    assert every.stderr.strip() == "region `eu`: not provisioned yet (run `turnkit provision --region eu`)"


def test_every_provider_imports_without_a_home_directory() -> None:
    """signaling/origins.py asks every provider class for `runs_here`; its service user has no home."""
    import subprocess
    import sys

    script = (
        "import os, pwd\n"
        "os.environ.pop('HOME', None)\n"
        "def no_user(uid): raise KeyError(uid)\n"
        "pwd.getpwuid = no_user\n"
        "from turnkit.provision import PROVIDERS, provider_class\n"
        "print(sorted(k for k in PROVIDERS if provider_class(k).runs_here))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "['local']", "")
