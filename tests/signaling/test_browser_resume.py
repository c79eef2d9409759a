"""The demo page (through /static/turnkit-client.js) keeps its call across a signaling server restart:
both pages resume their sessions (same peer ids), and remote video keeps flowing through coturn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.daemons import free_port
from tests.signaling.callstack import _wait_healthy, server_command, verbose_coturn, write_config
from tests.signaling.test_browser import CALL_UP, CHROMIUM_ARGS, demo_state, join

WAIT_MS = 30_000


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


@contextlib.contextmanager
def restartable_stack(tmp: Path) -> Iterator[Restartable]:
    turn_secret, jwt_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with verbose_coturn(tmp, turn_secret) as turn:
        port = free_port()
        config = write_config(tmp / "signaling", turn, port, turn_secret, {})
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURNKIT_")}
        stack = Restartable(
            port, config, tmp / "signaling" / "server.log", {**env, "TURNKIT_JWT_SECRET": jwt_secret}, jwt_secret
        )
        stack.start()
        try:
            yield stack
        finally:
            if stack.proc is not None and stack.proc.poll() is None:
                stack.proc.kill()
                stack.proc.wait(10)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def frames(page: Page) -> int:
    return int(await page.evaluate("() => window.turnkitDemo.stats ? window.turnkitDemo.stats.framesDecoded : 0"))


async def test_call_survives_a_signaling_restart(browser: Browser, tmp_path: Path) -> None:
    with restartable_stack(tmp_path) as stack:
        pages = []
        for sub in ("alice", "bob"):
            page = await (await browser.new_context()).new_page()
            await page.goto(f"http://127.0.0.1:{stack.port}/?token={stack.token(sub)}")
            pages.append(page)
        alice, bob = pages
        await join(alice, "restart-call")
        await alice.wait_for_function("() => window.turnkitDemo.state === 'waiting'", timeout=WAIT_MS)
        await join(bob, "restart-call")
        for page in pages:
            await page.wait_for_function(CALL_UP, timeout=WAIT_MS, polling=250)
        ids = [(await demo_state(p))["you"] for p in pages]

        started = time.monotonic()
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(stack.start)
        back = time.monotonic()
        for page in pages:
            await page.wait_for_function(
                "() => window.turnkitDemo.resumes >= 1 && window.turnkitDemo.signaling === 'open'",
                timeout=WAIT_MS,
                polling=100,
            )
        resumed = time.monotonic()
        before = [await frames(p) for p in pages]
        await asyncio.sleep(2.0)
        after = [await frames(p) for p in pages]
        for page, you, b, a in zip(pages, ids, before, after, strict=True):
            state = await demo_state(page)
            assert state["you"] == you, "the page came back under another peer id"
            assert state["state"] == "connected" and state["errors"] == []
            assert a > b, f"remote video stopped: {b} → {a} frames"
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/metrics", timeout=5) as resp:
            assert 'turnkit_signaling_resumes_total{outcome="ok"} 2.0' in resp.read().decode()
        print(
            f"\n[browser] signaling down {back - started:.2f}s; both pages resumed "
            f"{(resumed - back) * 1000:.0f} ms after the restarted server was healthy"
        )
