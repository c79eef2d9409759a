"""A real call stack for end-to-end tests: coturn + `turnkit signaling serve` on loopback, and JWTs for it."""

from __future__ import annotations

import contextlib
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
from tests.helpers.signaling import clean_env, toml_text
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
        return client_token(self.jwt_secret, sub, ttl)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def client_token(jwt_secret: str, sub: str, ttl: int = 900) -> str:
    """An HS256 client JWT for `sub`, valid for `ttl` seconds."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl}, jwt_secret, algorithm="HS256")


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


def config_text(turn: Coturn, port: int, settings: Mapping[str, Mapping[str, object]]) -> str:
    """turnkit.toml whose `local` region's ICE URLs point at the running coturn's ports."""
    tables = {name: dict(values) for name, values in _BASE.items()}
    tables["ports"].update(listening=turn.port, tls=turn.tls_port)
    tables["signaling"]["port"] = port
    for name, values in settings.items():
        tables.setdefault(name, {}).update(values)
    return toml_text(tables)


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
        server = Restartable.on(port, config, jwt_secret)
        server.start()
        try:
            yield Stack(turn, port, jwt_secret, config, server.log)
        finally:
            server.stop_quietly()


@dataclass
class Restartable:
    """`turnkit signaling serve` on a fixed port, so a test can stop it and start it again there."""

    port: int
    config: Path
    log: Path
    env: dict[str, str]
    jwt_secret: str = field(repr=False)
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def on(cls, port: int, config: Path, jwt_secret: str) -> Restartable:
        """The server for `config` on `port`, not started yet; it logs to server.log beside the config."""
        return cls(port, config, config.parent / "server.log", clean_env(TURNKIT_JWT_SECRET=jwt_secret), jwt_secret)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        _wait_healthy(self.proc, self.base_url, self.log)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0

    def stop_quietly(self) -> None:
        """Teardown: SIGTERM, then SIGKILL; nothing asserted (the test may have stopped it already)."""
        if self.proc is not None:
            stop_process(self.proc)

    def token(self, sub: str) -> str:
        return client_token(self.jwt_secret, sub)
