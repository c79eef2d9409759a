"""Fixtures for the signaling server: a real redis-server, in-process servers on free ports, Chromium.

The helpers they are built from (configs, tokens, clients, subprocess servers) are in
tests/helpers/signaling.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from signaling.app import SignalingServer
from tests.daemons import free_port
from tests.helpers.browser import CHROMIUM_ARGS
from tests.helpers.signaling import JWT_SECRET, RedisProc, Running, StartServer, redis_running, write_config


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProc]:
    with redis_running(tmp_path / "redis") as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None for the in-memory backend, else the URL of a fresh redis-server."""
    if request.param == "memory":
        yield None
        return
    with redis_running(tmp_path / "redis") as server:
        yield server.url


@pytest.fixture
def start_server(tmp_path: Path) -> StartServer:
    """`async with start_server(redis_url, signaling={...}, project={...}) as running:` an in-process server."""

    @contextlib.asynccontextmanager
    async def start(
        redis_url: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        server_kw: Mapping[str, Any] | None = None,
        **tables: Mapping[str, object] | None,
    ) -> AsyncIterator[Running]:
        sig = dict(tables.pop("signaling", None) or {})
        if redis_url:
            sig["redis_url"] = redis_url
        directory = workdir or tmp_path / f"srv-{free_port()}"
        directory.mkdir(parents=True, exist_ok=True)
        cfg = write_config(directory, signaling=sig, **tables)
        server = SignalingServer(
            cfg,
            env={"TURNKIT_JWT_SECRET": JWT_SECRET, **(env or {})},
            host="127.0.0.1",
            port=0,
            **(server_kw or {}),
        )
        await server.startup()
        try:
            yield Running(server, cfg)
        finally:
            await server.shutdown()

    return start


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium (never a downloaded browser), closed after the test."""
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
