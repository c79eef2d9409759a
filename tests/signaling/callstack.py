"""A real call stack for end-to-end tests: coturn + `turnkit signaling serve` on loopback, and JWTs for it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from tests.daemons import Coturn, free_port, local_config, start_coturn, stop_process
from turnkit import keyring

#: Generous: the stack must come up on a loaded 2-core machine.
START_TIMEOUT = 30.0

#: Every setting the stack relies on; a test's `settings` are merged into these tables.
_BASE: dict[str, dict[str, object]] = {
    "project": {"domain": "turn.example.test", "secrets_file": "turnkit.secrets.json", "state_dir": ".turnkit"},
    "ports": {},
    "signaling": {"host": "127.0.0.1", "default_region": "local"},
    "regions.local": {"provider": "local", "allow_loopback_peers": True},
}


@dataclass
class Stack:
    """A running coturn and signaling server sharing one TURN secret; `token()` mints client JWTs."""

    coturn: Coturn
    port: int
    jwt_secret: str = field(repr=False)
    config: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?token={token}"

    def token(self, sub: str, ttl: int = 900) -> str:
        now = int(time.time())
        return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl}, self.jwt_secret, algorithm="HS256")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def verbose_coturn(tmp: Path, turn_secret: str) -> Iterator[Coturn]:
    """The rendered test coturn (loopback peers allowed) with `verbose`, so its log names each allocation."""
    (tmp / "coturn").mkdir(parents=True, exist_ok=True)
    server = start_coturn(local_config(tmp / "coturn"), [turn_secret], tmp / "coturn", extra={"coturn_verbose": True})
    try:
        yield server
    finally:
        server.stop()


def allocations_for(log: str, user: str) -> list[str]:
    """Verbose coturn log lines recording a successful ALLOCATE by the TURN REST user `<expiry>:<user>`."""
    pattern = re.compile(rf"user <\d+:{re.escape(user)}>.*ALLOCATE processed, success")
    return [line for line in log.splitlines() if pattern.search(line)]


def _toml_value(value: object) -> str:
    return json.dumps(value)  # booleans, numbers and plain strings are spelled alike in JSON and TOML


def config_text(turn: Coturn, port: int, settings: Mapping[str, Mapping[str, object]]) -> str:
    """turnkit.toml whose `local` region's ICE URLs point at the running coturn's ports."""
    tables = {name: dict(values) for name, values in _BASE.items()}
    tables["ports"].update(listening=turn.port, tls=turn.tls_port)
    tables["signaling"]["port"] = port
    for name, values in settings.items():
        tables.setdefault(name, {}).update(values)
    return "\n".join(
        f"[{name}]\n" + "".join(f"{key} = {_toml_value(v)}\n" for key, v in values.items())
        for name, values in tables.items()
    )


def write_config(
    workdir: Path, turn: Coturn, port: int, turn_secret: str, settings: Mapping[str, Mapping[str, object]]
) -> Path:
    """turnkit.toml for the stack, plus a keyring whose primary is coturn's shared secret."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "turnkit.toml"
    path.write_text(config_text(turn, port, settings))
    ring = keyring.Keyring((keyring.new_secret(int(time.time()), primary=True, token=turn_secret),))
    keyring.save(workdir / "turnkit.secrets.json", ring)
    return path


def server_command(config: Path, port: int) -> list[str]:
    turnkit = Path(sys.executable).parent / "turnkit"
    return [str(turnkit), "signaling", "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"signaling server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"signaling server not healthy after {START_TIMEOUT}s:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def call_stack(tmp: Path, settings: Mapping[str, Mapping[str, object]] | None = None) -> Iterator[Stack]:
    """Start coturn (loopback peers allowed) and the signaling server on free loopback ports.

    `settings` adds or overrides turnkit.toml keys per table, e.g. `{"project": {"ttl": 60}}`.
    """
    turn_secret, jwt_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with verbose_coturn(tmp, turn_secret) as turn:
        port = free_port()
        config = write_config(tmp / "signaling", turn, port, turn_secret, settings or {})
        log = tmp / "signaling" / "server.log"
        env = {**_base_env(), "TURNKIT_JWT_SECRET": jwt_secret}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                server_command(config, port),
                cwd=config.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_healthy(proc, f"http://127.0.0.1:{port}", log)
            yield Stack(turn, port, jwt_secret, config, log)
        finally:
            stop_process(proc)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TURNKIT_")}


@dataclass
class Restartable:
    """coturn plus a `turnkit signaling serve` that can be restarted on its port."""

    port: int
    config: Path
    log: Path
    env: dict[str, str]
    jwt_secret: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                server_command(self.config, self.port),
                cwd=self.config.parent,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_healthy(self.proc, f"http://127.0.0.1:{self.port}", self.log)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0

    def token(self, sub: str) -> str:
        now = int(time.time())
        return jwt.encode({"sub": sub, "iat": now, "exp": now + 900}, self.jwt_secret, algorithm="HS256")
