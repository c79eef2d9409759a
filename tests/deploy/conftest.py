"""A local region on free loopback ports, run through the real CLI; always taken down afterwards."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemons import free_port
from turnkit import config as config_mod
from turnkit import localstack


@dataclass(frozen=True)
class Site:
    """A directory with a turnkit.toml for a local region, and the ports it chose."""

    root: Path
    listening: int
    tls: int
    signaling: int
    statsdb: int = 0
    central: int = 0
    metrics: int = 0

    @property
    def config(self) -> Path:
        return self.root / "turnkit.toml"

    def load(self) -> config_mod.Config:
        return config_mod.load(self.config)

    def cli(
        self, *args: str, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=self.root, timeout=timeout, env=env)


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env=env,
    )


def write_site(root: Path, nodes: int = 1) -> Site:
    listening, tls, signaling = free_port(), free_port(), free_port()
    relay = random.randrange(20000, 60000, 200)
    statsdb, central, metrics = consecutive_free_ports(nodes), free_port(), free_port()
    (root / "turnkit.toml").write_text(
        f'[project]\nname = "demo"\ndomain = "turn.example.test"\nttl = 600\n\n'
        f"[ports]\nlistening = {listening}\ntls = {tls}\nrelay_min = {relay}\nrelay_max = {relay + 199}\n\n"
        f"[signaling]\nport = {signaling}\ninstances = 1\n\n"
        f'[regions.local]\nprovider = "local"\nnodes = {nodes}\nallow_loopback_peers = true\n\n'
        # Node N's statsdb is statsdb_port + N - 1: the second one is probed free too.
        f"[meter]\nstatsdb_port = {statsdb}\ncentral_port = {central}\nmetrics_port = {metrics}\n"
        "flush_interval = 1.0\n"
    )
    return Site(root, listening, tls, signaling, statsdb, central, metrics)


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    while True:
        first = free_port()
        if first + count <= 65535 and all(port_free(first + i) for i in range(1, count)):
            return first


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = write_site(tmp_path)
    try:
        yield s
    finally:
        localstack.down(s.load(), "local", lambda _: None)


@pytest.fixture
def site2(tmp_path: Path) -> Iterator[Site]:
    """Two coturn nodes (127.0.0.1 and 127.0.0.2, same ports)."""
    s = write_site(tmp_path, nodes=2)
    try:
        yield s
    finally:
        localstack.down(s.load(), "local", lambda _: None)
