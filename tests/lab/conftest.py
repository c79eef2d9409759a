"""A lab region in a temporary project, driven through the real CLI; torn down even after a failure.

These tests need root, Linux and the lab's Debian packages (`make setup`); a missing one is a
failure with the reason, never a skip. Only one lab runs per machine (it owns 198.18.0.1), so:

- one deployed fleet (`fleet`, package scope) serves test_fleet.py and test_operations.py: it is
  deployed once (the slow part: minutes cold) and destroyed after the last lab test;
- the tests that provision a lab of their own (`lab_site`, function scope) run before any test that
  uses the fleet (`pytest_collection_modifyitems` below), whatever order the files were given in;
- the tests that change the fleet (test_operations.py: a config change restarts coturn and sets a
  quota) run after those that only use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.lab import project_toml
from turnkit import config as config_mod
from turnkit.lab import lab
from turnkit.provision.lab import LabProvider

#: The signaling JWT secret of the deployed fleet (tests mint their tokens with it).
JWT_SECRET = "lab-test-jwt-secret-0123456789abcdef"


@dataclass(frozen=True)
class LabSite:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "turnkit.toml"

    def provider(self) -> LabProvider:
        return LabProvider(config_mod.load(self.config), "lab")

    def spec(self) -> lab.LabSpec:
        return self.provider().lab_spec()

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "turnkit", *args, "--config", str(self.config)],
            cwd=self.root, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ssh(self, ip: str, command: str) -> subprocess.CompletedProcess[str]:
        """Run `command` on a lab host as the region's SSH user, with the region's key."""
        key = self.root / ".turnkit/regions/lab/ssh/id_ed25519"
        return subprocess.run(
            ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", f"admin@{ip}", command],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def make_site(root: Path, nodes: int = 2, allow_lab_peers: bool = False) -> LabSite:
    root.mkdir(parents=True, exist_ok=True)
    (root / "turnkit.toml").write_text(project_toml("labtest", nodes, allow_lab_peers))
    return LabSite(root)


def teardown(site: LabSite) -> list[str]:
    """Destroy through the CLI, then whatever is still on the machine (empty when clean)."""
    site.cli("destroy", "--region", "lab", "--yes")
    return lab.leftovers(site.spec())


@pytest.fixture
def lab_site(tmp_path: Path) -> Iterator[LabSite]:
    site = make_site(tmp_path / "project")
    try:
        yield site
    finally:
        left = teardown(site)
        assert left == [], f"lab leftovers after destroy: {left}"


#: Modules whose tests change the deployed fleet: they run after every other user of `fleet`.
MUTATES_FLEET = frozenset({"test_operations.py"})


def _lab_rank(item: pytest.Item) -> int:
    """0: provisions its own lab; 1: uses the fleet; 2: changes the fleet."""
    if "lab_site" in getattr(item, "fixturenames", ()):
        return 0
    return 2 if item.path.name in MUTATES_FLEET else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the lab's users (this hook sees every collected item, lab or not): the slots held by
    tests/lab items that use a lab are refilled with the same items, `lab_site` ones first, then the fleet's
    readers, then the modules that change it, each group in collection order; every other item
    keeps its place."""
    here = Path(__file__).parent
    slots = [
        i
        for i, item in enumerate(items)
        if item.path.is_relative_to(here) and {"lab_site", "fleet"} & set(getattr(item, "fixturenames", ()))
    ]  # other directories have fixtures of their own named `fleet` (tests/ops: local coturn nodes)
    ordered = sorted((items[i] for i in slots), key=_lab_rank)  # stable: collection order within a group
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSite]:
    """2 TURN hosts + the signaling host, deployed once for every lab test that uses it (the slow part:
    minutes cold), destroyed after the last lab test, also after a failure, with a check that nothing is
    left on the machine."""
    site = make_site(tmp_path_factory.mktemp("lab-fleet") / "project", allow_lab_peers=True)
    try:
        assert site.cli("secret", "init").returncode == 0
        env = {**os.environ, "TURNKIT_JWT_SECRET": JWT_SECRET}
        out = subprocess.run(
            [sys.executable, "-m", "turnkit", "deploy", "--region", "lab", "--json", "--config", str(site.config)],
            cwd=site.root, capture_output=True, text=True, timeout=1500, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-4000:]
        report = json.loads(out.stdout)
        assert report["ok"] is True
        assert [(n["name"], n["ok"]) for n in report["nodes"]] == [("turn-1", True), ("turn-2", True)]
        yield site
    finally:
        left = teardown(site)
        assert left == [], f"lab leftovers after destroy: {left}"
