"""Browser test helpers: Chromium's launch arguments and driving the demo page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.async_api import Browser, Page

from bench.browser import CHROMIUM, CHROMIUM_ARGS  # one launch list for tests and benchmarks

__all__ = ["CALL_UP", "CHROMIUM", "CHROMIUM_ARGS", "demo_state", "join", "start_call"]


CALL_UP = """() => {
  const d = window.turnkitDemo, v = document.getElementById("remote-video");
  return d.state === "connected" && d.stats !== null && d.stats.localCandidateType !== null
    && d.stats.framesDecoded > 0 && v.videoWidth > 0;
}"""


async def join(page: Page, room: str, relay_only: bool = True) -> None:
    await page.fill("#room", room)
    if relay_only != await page.is_checked("#relay-only"):
        await page.click("label.switch")  # the toggle is a styled label, as a user clicks it
    assert await page.is_checked("#relay-only") == relay_only
    await page.click("#join")


async def demo_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(
        "() => { const { pc, ...rest } = window.turnkitDemo; return JSON.parse(JSON.stringify(rest)); }"
    )
    return state


async def start_call(
    browser: Browser, base_url: str, token: Callable[[str], str], room: str, timeout_ms: float
) -> list[Page]:
    """alice and bob each open the demo page; alice joins `room` and waits alone, then bob joins:
    both pages' calls are up with remote video."""
    pages = []
    for sub in ("alice", "bob"):
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{base_url}/?token={token(sub)}")
        pages.append(page)
    alice, bob = pages
    await join(alice, room)
    await alice.wait_for_function("() => window.turnkitDemo.state === 'waiting'", timeout=timeout_ms)
    await join(bob, room)
    for page in pages:
        await page.wait_for_function(CALL_UP, timeout=timeout_ms, polling=250)
    return pages
