"""Signaling test helpers: configs and tokens, a real redis-server, a WebSocket client speaking
SIGNALING.md frames, and `turnkit signaling serve` as a subprocess (the fixtures live in
tests/signaling/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from websockets.asyncio.client import ClientConnection, connect

from signaling.app import SignalingServer
from tests.daemons import free_port, stop_process, wait_port
from turnkit import config as config_mod
from turnkit import keyring

JWT_SECRET = "test-jwt-secret-that-is-long-enough-for-hs256"
TIMEOUT = 15.0


def toml_value(value: object) -> str:
    """TOML for strings, numbers, booleans, arrays and inline tables."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans are spelled alike in JSON and TOML


def toml_text(tables: Mapping[str, Mapping[str, object]]) -> str:
    """A TOML document from {table: {key: value}}."""
    return "\n".join(
        f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
        for name, values in tables.items()
    )


def write_config(tmp: Path, **tables: Mapping[str, object] | None) -> config_mod.Config:
    """turnkit.toml in `tmp` with a `local` region and a fresh keyring; `tables` override/extend it
    (None removes a table, e.g. `regions__local=None`)."""
    base: dict[str, dict[str, object]] = {
        "project": {"domain": "turn.example.test"},
        "signaling": {"host": "127.0.0.1"},
        "regions.local": {"provider": "local", "allow_loopback_peers": True},
    }
    for name, values in tables.items():
        if values is None:
            base.pop(name.replace("__", "."), None)
        else:
            base.setdefault(name.replace("__", "."), {}).update(values)
    path = tmp / "turnkit.toml"
    path.write_text(toml_text(base))
    cfg = config_mod.load(path)
    if not cfg.secrets_path.exists():
        keyring.save(cfg.secrets_path, keyring.init(int(time.time())))
    return cfg


def make_token(sub: str = "alice", secret: str = JWT_SECRET, ttl: int = 300, alg: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, **claims}, secret, algorithm=alg)


@dataclass
class RedisProc:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def redis_running(workdir: Path, port: int | None = None) -> Iterator[RedisProc]:
    """A throwaway redis-server on loopback, no persistence; on `port` to restart one on the same port,
    else on a free one."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*cmd, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = RedisProc(proc, port)
    try:
        wait_port(port, timeout=TIMEOUT)
        yield server
    finally:
        server.stop()


class Client:
    """A test WebSocket client speaking SIGNALING.md frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        msg = json.loads(frame)
        assert isinstance(msg, dict)
        return msg

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.recv(timeout)
        assert msg["type"] == kind, msg
        return msg

    async def join(self, room: str) -> dict[str, Any]:
        await self.send(type="join-room", room=room)
        return await self.expect("all-users")

    async def closed_code(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; the close code it sent."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        assert self.ws.close_code is not None or self.ws.state.name == "CLOSED"
        return self.ws.close_code


@dataclass
class Running:
    server: SignalingServer
    cfg: config_mod.Config

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, token: str | None = None, **query: str) -> str:
        params = {**({"token": token} if token else {}), **query}
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        return f"ws://127.0.0.1:{self.port}/ws" + (f"?{qs}" if qs else "")

    @contextlib.asynccontextmanager
    async def client(self, sub: str = "alice", **kw: Any) -> AsyncIterator[Client]:
        async with connect(self.ws_url(make_token(sub)), **kw) as ws:
            yield Client(ws)


StartServer = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def turnkit_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "turnkit"), *args]


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TURNKIT_")}, **extra}


@contextlib.contextmanager
def serving(
    cfg: config_mod.Config, log: Path, port: int | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`turnkit signaling serve` as a subprocess, healthy on a free port."""
    port = port or free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            turnkit_command("signaling", "serve", "--config", str(cfg.path), "--port", str(port)),
            env=clean_env(TURNKIT_JWT_SECRET=JWT_SECRET),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(port, timeout=30)
        yield proc, port
    finally:
        stop_process(proc)  # SIGTERM first: a test may read the log of a clean shutdown


@contextlib.asynccontextmanager
async def client(port: int, sub: str) -> AsyncIterator[Client]:
    async with connect(f"ws://127.0.0.1:{port}/ws?token={make_token(sub)}") as ws:
        yield Client(ws)
