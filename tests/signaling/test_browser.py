"""The demo call page in real headless Chromium, calling through a real coturn relay (issue 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.helpers.browser import CALL_UP, demo_state, join
from tests.signaling.callpeer import CallPeer
from tests.signaling.callstack import Stack, allocations_for, call_stack

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CALL_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with call_stack(tmp_path_factory.mktemp("browser-call")) as running:
        yield running


async def open_page(browser: Browser, stack: Stack, sub: str, token: str | None = None) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 760})
    page = await context.new_page()
    await page.goto(f"{stack.base_url}/?token={token or stack.token(sub)}")
    return page


async def wait_for(page: Page, predicate: str, stack: Stack, what: str) -> None:
    """Wait for a JS predicate; on timeout fail with the page's state and the server log, not just 'timeout'."""
    try:
        await page.wait_for_function(predicate, timeout=CALL_TIMEOUT_MS, polling=250)
    except PlaywrightTimeout:
        state = await demo_state(page)
        pytest.fail(f"{what}: not reached; page state {json.dumps(state)}\nserver log:\n{stack.log_text()[-2000:]}")


async def call(browser: Browser, stack: Stack, caller: str, callee: str, room: str) -> tuple[Page, Page]:
    """`caller` opens the page and waits alone in `room`; `callee` joins: both calls are up with remote video."""
    first, second = await open_page(browser, stack, caller), await open_page(browser, stack, callee)
    await join(first, room)
    await wait_for(first, "() => window.turnkitDemo.state === 'waiting'", stack, f"{caller} alone in the room")
    await join(second, room)
    for page, name in ((first, caller), (second, callee)):
        await wait_for(page, CALL_UP, stack, f"{name}'s call with remote video")
    return first, second


async def test_two_browsers_call_through_coturn_relay(browser: Browser, stack: Stack) -> None:
    alice, bob = await call(browser, stack, "alice", "bob", "relay-call")
    assert "token=" not in alice.url  # the page moves the bearer token out of the address bar

    ARTIFACTS.mkdir(exist_ok=True)
    await alice.screenshot(path=str(ARTIFACTS / "browser-call-relay.png"))
    for page in (alice, bob):
        state = await demo_state(page)
        assert state["errors"] == []
        assert state["stats"]["localCandidateType"] == "relay"
        assert state["stats"]["remoteCandidateType"] == "relay"
        urls = [u for server in state["iceServers"] for u in server["urls"]]
        assert f"turn:127.0.0.1:{stack.coturn.port}?transport=udp" in urls
        assert await page.evaluate("() => window.turnkitDemo.pc.getConfiguration().iceTransportPolicy") == "relay"
        assert await page.evaluate("() => document.getElementById('remote-video').videoWidth") > 0
    assert allocations_for(stack.coturn.log_text(), "alice"), "coturn logged no allocation for alice"
    assert allocations_for(stack.coturn.log_text(), "bob"), "coturn logged no allocation for bob"


async def test_controls_and_hang_up(browser: Browser, stack: Stack) -> None:
    alice, bob = await call(browser, stack, "carol", "dave", "hangup-call")

    await bob.click("#mute")
    await bob.click("#camera")
    tracks = await bob.evaluate(
        "() => window.turnkitDemo.pc.getSenders().map(s => [s.track.kind, s.track.enabled]).sort()"
    )
    assert tracks == [["audio", False], ["video", False]]
    assert await bob.text_content("#mute") == "Unmute"
    await bob.click("#mute")
    assert await bob.evaluate("() => window.turnkitDemo.muted") is False

    await bob.click("#hangup")
    await wait_for(
        alice,
        "() => window.turnkitDemo.state === 'waiting' && window.turnkitDemo.pc === null",
        stack,
        "carol sees the hang-up",
    )
    assert (await demo_state(bob))["state"] == "idle"
    assert await alice.evaluate("() => document.getElementById('remote-video').srcObject") is None
    assert (await demo_state(alice))["stats"] is None

    await join(bob, "hangup-call")  # calling again after hanging up: fresh camera, socket and connection
    for page, name in ((alice, "carol"), (bob, "dave")):
        await wait_for(page, CALL_UP, stack, f"{name}'s second call")


async def test_refused_token_is_explained(browser: Browser, stack: Stack) -> None:
    page = await open_page(browser, stack, "eve", token="not-a-jwt")
    await join(page, "refused")
    await wait_for(page, "() => window.turnkitDemo.state === 'error'", stack, "refusal shown")
    state = await demo_state(page)
    assert len(state["errors"]) == 1
    assert state["errors"][0].startswith("Signaling refused the token: ")
    assert await page.is_visible("#error")


async def test_full_room_error_is_shown(browser: Browser, stack: Stack) -> None:
    async with CallPeer(stack.ws_url(stack.token("p1"))) as p1, CallPeer(stack.ws_url(stack.token("p2"))) as p2:
        await p1.join("full-room")
        await p2.join("full-room")
        page = await open_page(browser, stack, "mallory")
        await join(page, "full-room")
        await wait_for(page, "() => window.turnkitDemo.state === 'error'", stack, "room-full shown")
        state = await demo_state(page)
        assert len(state["errors"]) == 1
        assert "(room-full, in join-room)" in state["errors"][0]
        assert await page.text_content("#status-text") == "Room is full"


async def test_browser_calls_aiortc_peer(browser: Browser, stack: Stack) -> None:
    page = await open_page(browser, stack, "gina")
    await join(page, "mixed-call")
    await wait_for(page, "() => window.turnkitDemo.state === 'waiting'", stack, "gina alone in the room")
    async with CallPeer(stack.ws_url(stack.token("hal")), send_video=True) as hal:
        await hal.join("mixed-call")  # the newcomer offers: aiortc -> browser
        await wait_for(page, CALL_UP, stack, "gina sees hal's video")
        assert await hal.wait_frames() > 0  # and the browser's camera reaches aiortc
        await hal.wait_open()
        assert hal.selected_pair()[0] == "relay"
        state = await demo_state(page)
        assert state["stats"]["localCandidateType"] == "relay"
        assert state["peer"] == hal.you
    await wait_for(page, "() => window.turnkitDemo.state === 'waiting'", stack, "gina sees hal leave")


@pytest.fixture(scope="module")
def short_ttl_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """TURN credentials of 60 s that the server renews 50 s early: a push ~10 s after joining."""
    settings = {"project": {"ttl": 60}, "signaling": {"refresh_margin": 50}}
    with call_stack(tmp_path_factory.mktemp("short-ttl"), settings) as running:
        yield running


async def test_pushed_ice_servers_reach_the_live_peer_connection(browser: Browser, short_ttl_stack: Stack) -> None:
    stack = short_ttl_stack
    _, bob = await call(browser, stack, "ivy", "jon", "refresh-call")
    first = await demo_state(bob)

    await wait_for(bob, f"() => window.turnkitDemo.expiresAt > {first['expiresAt']}", stack, "an ice-servers push")
    pushed = await demo_state(bob)
    usernames = await bob.evaluate(
        "() => window.turnkitDemo.pc.getConfiguration().iceServers.map(s => s.username).filter(Boolean)"
    )
    assert usernames == [server["username"] for server in pushed["iceServers"] if "username" in server]
    assert usernames != [server["username"] for server in first["iceServers"] if "username" in server]
    assert pushed["state"] == "connected"


async def test_candidates_before_the_offer_are_queued(browser: Browser, stack: Stack) -> None:
    page = await open_page(browser, stack, "kim")
    await join(page, "early-candidates")
    await wait_for(page, "() => window.turnkitDemo.state === 'waiting'", stack, "kim alone in the room")
    async with CallPeer(stack.ws_url(stack.token("lee")), send_video=True, candidates_first=True) as lee:
        await lee.join("early-candidates")  # sends its relay candidates, then an offer without them
        await wait_for(page, CALL_UP, stack, "kim's call from early candidates")
        state = await demo_state(page)
        assert state["queuedCandidates"] >= 1
        assert state["errors"] == []
        assert state["stats"]["remoteCandidateType"] == "relay"
        await lee.wait_open()
