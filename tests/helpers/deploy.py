"""Deploy test helpers: a local region's site on free loopback ports, and process liveness."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.daemons import free_port
from tests.helpers.cli import run_cli
from turnkit import config as config_mod
from turnkit import localstack


def alive(pid: int) -> bool:
    """Any thread of the process still runs (an exited, unreaped zombie does not count)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return False
    for task in tasks.iterdir():
        try:
            if (task / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
                return True
        except OSError:
            continue
    return False


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


@contextlib.contextmanager
def local_site(root: Path, nodes: int = 1) -> Iterator[Site]:
    """A site for `nodes` coturn nodes, its local region always taken down afterwards."""
    site = write_site(root, nodes)
    try:
        yield site
    finally:
        localstack.down(site.load(), "local", lambda _: None)


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
