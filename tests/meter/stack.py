"""Real daemons for metering tests: a statsdb Redis, a TLS central Redis, coturn with statsdb, the meter."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.daemons import free_port, stop_process, wait_port
from turnkit import pki

STATSDB_PASSWORD = "statsdb0123456789abcdef"
CENTRAL_USER = "meter-turn-1"
CENTRAL_PASSWORD = "central0123456789abcdef"


@dataclass
class RedisServer:
    port: int
    args: list[str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", *self.args], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def statsdb_redis(workdir: Path) -> RedisServer:
    port = free_port()
    args = [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--requirepass",
        STATSDB_PASSWORD,
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    server = RedisServer(port, args, workdir)
    server.start()
    return server


def central_redis(workdir: Path) -> tuple[RedisServer, pki.CertFiles]:
    """TLS-only Redis with AOF (fsync always) and an ACL user for the node, as on a signaling host."""
    workdir.mkdir(parents=True, exist_ok=True)
    certs = pki.make_ca_and_cert(workdir / "certs", ["localhost", "127.0.0.1"], dt.datetime.now(dt.UTC), 30)
    port = free_port()
    acl = workdir / "users.acl"
    acl.write_text(
        # Not `user default off`: Redis 7.0.15 then replays the AOF's MULTI/EXEC as that user, gets NOPERM and
        # drops the data at restart (docs/metering.md). An unguessable password keeps the default user unusable.
        f"user default on >{secrets.token_hex(32)} ~* &* +@all\n"
        f"user {CENTRAL_USER} on >{CENTRAL_PASSWORD} ~turnkit:usage:* +eval +hincrby +set +hgetall +hget +scan +ping +hello +auth +client\n"
    )
    args = [
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key), "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "no", "--aclfile", str(acl),
        "--dir", str(workdir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
    ]  # fmt: skip
    server = RedisServer(port, args, workdir)
    server.start()
    return server, certs


def central_url(server: RedisServer) -> str:
    return f"rediss://{CENTRAL_USER}:{CENTRAL_PASSWORD}@127.0.0.1:{server.port}/0"


@dataclass
class MeterProc:
    """`turnkit meter run` as a plain process (what systemd runs on a node)."""

    project: Path
    env: dict[str, str]
    ca: Path
    buffer: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: list[int] = field(default_factory=list)
    metrics_port: int = field(default_factory=free_port)

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "turnkit", "meter", "run", "--node", "turn-1", "--region", "local",
             "--buffer", str(self.buffer), "--ca-file", str(self.ca), "--metrics-port", str(self.metrics_port)],
            cwd=self.project, env=self.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.starts.append(self.proc.pid)
        self.wait_subscribed(len(self.starts))

    def wait_subscribed(self, times: int, timeout: float = 30.0) -> None:
        """Until the log says the `times`-th start subscribed to statsdb (a cold start takes seconds here)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.read_text().count("subscribed to statsdb events") >= times:
                return
            time.sleep(0.1)
        raise TimeoutError(f"meter did not subscribe:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def turnkit(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnkit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def usage_json(cwd: Path, env: dict[str, str], ca: Path, *args: str) -> dict[str, Any]:
    out = turnkit(cwd, env, "usage", "--json", "--ca-file", str(ca), *args)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def meter_env(statsdb: RedisServer, central: RedisServer) -> dict[str, str]:
    return {
        **os.environ,
        "TURNKIT_STATSDB_URL": f"redis://127.0.0.1:{statsdb.port}/0",
        "TURNKIT_STATSDB_PASSWORD": STATSDB_PASSWORD,
        "TURNKIT_METER_CENTRAL_URL": central_url(central),
    }
