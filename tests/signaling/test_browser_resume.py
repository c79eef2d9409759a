"""The demo page (through /static/turnkit-client.js) keeps its call across a signaling server restart:
both pages resume their sessions (same peer ids), and remote video keeps flowing through coturn."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from playwright.async_api import Browser, Page

from tests.daemons import free_port
from tests.helpers.browser import demo_state, start_call
from tests.signaling.callstack import Restartable, verbose_coturn, write_config

WAIT_MS = 30_000


@contextlib.contextmanager
def restartable_stack(tmp: Path) -> Iterator[Restartable]:
    turn_secret, jwt_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with verbose_coturn(tmp, turn_secret) as turn:
        port = free_port()
        stack = Restartable.on(port, write_config(tmp / "signaling", turn, port, turn_secret, {}), jwt_secret)
        stack.start()
        try:
            yield stack
        finally:
            stack.stop_quietly()


async def frames(page: Page) -> int:
    return int(await page.evaluate("() => window.turnkitDemo.stats ? window.turnkitDemo.stats.framesDecoded : 0"))


async def test_call_survives_a_signaling_restart(browser: Browser, tmp_path: Path) -> None:
    with restartable_stack(tmp_path) as stack:
        pages = await start_call(browser, stack.base_url, stack.token, "restart-call", WAIT_MS)
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
