"""The servers benchmarks run against: turnkit signaling (memory or Redis backend), redis-server,
and the Node.js reference servers in bench/ (npm ci'd on first use). All on free 127.0.0.1 ports."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Procs, free_port, wait_http, wait_tcp
from turnkit import keyring

#: HS256 secret shared by the servers and load.js (≥ 32 bytes, as RFC 7518 §3.2 asks).
JWT_SECRET = "bench-secret-for-turnkit-benchmarks-only"
#: bench/: package.json, package-lock.json, the reference servers and the load client.
NODE_DIR = Path(__file__).resolve().parent
LOAD = NODE_DIR / "load.js"

#: turnkit.toml for the benchmark server. The per-connection rate limit is lifted far above the
#: closed-loop load (it still runs on every frame); the reference servers have none at all.
_TOML = """\
[project]
domain = "turn.example.test"
secrets_file = "turnkit.secrets.json"
state_dir = ".turnkit"

[ports]
listening = {listening}
tls = {tls}

[signaling]
host = "127.0.0.1"
port = {port}
default_region = "local"
rate_limit = 1000000.0
rate_burst = 1000000
{redis}
[regions.local]
provider = "local"
allow_loopback_peers = true
"""


def npm_ci() -> None:
    """Install the pinned Node packages (package-lock.json) into bench/node_modules unless they are there."""
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    argv = ["npm", "ci", "--no-audit", "--no-fund", "--silent"]
    done = subprocess.run(argv, cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci in {NODE_DIR} exited {done.returncode}: {done.stderr[-1500:]}")


@dataclass(frozen=True)
class Server:
    """A started server: its process, where clients connect, and which load-client protocol it speaks."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    proto: str  # load.js protocol: socketio | turnkit

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.proto == "socketio" else f"ws://127.0.0.1:{self.port}/ws"


def start_reference(procs: Procs, kind: str, pin: int | None) -> Server:
    """`socketio` (the classic demo app's server) or `ws` (the bare one-core ceiling)."""
    script = {"socketio": "socketio-server.js", "ws": "ws-server.js"}[kind]
    npm_ci()
    port = free_port()
    proc = procs.start(f"ref-{kind}-{port}", ["node", str(NODE_DIR / script)], pin=pin, env={"PORT": str(port)})
    wait_tcp(port, proc)
    return Server(f"reference-{kind}", proc, port, "socketio" if kind == "socketio" else "turnkit")


def write_config(
    workdir: Path,
    port: int,
    redis_url: str | None = None,
    turn: tuple[int, int] = (3478, 5349),
    ring: keyring.Keyring | None = None,
) -> Path:
    """turnkit.toml + keyring (`ring`, or a new one) for one signaling server in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis = f'redis_url = "{redis_url}"\n' if redis_url else ""
    path = workdir / "turnkit.toml"
    path.write_text(_TOML.format(listening=turn[0], tls=turn[1], port=port, redis=redis))
    keyring.save(workdir / "turnkit.secrets.json", ring or keyring.init(int(time.time())))
    return path


def start_turnkit(
    procs: Procs,
    workdir: Path,
    pin: int | None,
    redis_url: str | None = None,
    turn: tuple[int, int] = (3478, 5349),
    ring: keyring.Keyring | None = None,
) -> Server:
    """`turnkit signaling serve` on a free port with the benchmark JWT secret; ICE URLs name the `turn` ports."""
    port = free_port()
    config = write_config(workdir / f"signaling-{port}", port, redis_url, turn, ring)
    argv = [str(Path(sys.executable).parent / "turnkit"), "signaling", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--config", str(config)]
    env = {"TURNKIT_JWT_SECRET": JWT_SECRET}
    proc = procs.start(f"turnkit-{port}", argv, pin=pin, env=env, cwd=config.parent)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{procs.log_tail(f'turnkit-{port}')}") from None
    return Server("turnkit" + ("-redis" if redis_url else ""), proc, port, "turnkit")


def start_redis(procs: Procs, workdir: Path, pin: int | None) -> tuple[str, subprocess.Popen[bytes]]:
    """A throwaway redis-server (no persistence); returns its URL and process."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir), "--daemonize", "no"]
    proc = procs.start(f"redis-{port}", argv, pin=pin)
    wait_tcp(port, proc)
    return f"redis://127.0.0.1:{port}/0", proc
