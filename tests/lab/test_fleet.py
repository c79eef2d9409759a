"""`turnkit deploy --region lab`, then two browsers behind symmetric NATs call through the relays.

One lab is provisioned and deployed for the module (the slow part) and destroyed afterwards,
also after a failure, with a check that nothing is left on the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright

from tests.helpers.browser import CHROMIUM_ARGS
from tests.lab import browsers
from tests.lab.conftest import JWT_SECRET, LabSite
from turnkit.lab import nat

#: A cold deploy (apt on every host, the wheelhouse, certificates) takes minutes on 2 busy cores.
pytestmark = pytest.mark.timeout(1800)

CALL_TIMEOUT_MS = 60_000
#: "udp-blocked": no UDP and no plain TURN/TCP (3478) out of the homes, so only turns: (5349) is left.
BLOCKED = {"udp-blocked": ("meta l4proto udp", "tcp dport 3478")}


def test_systemd_runs_every_service_and_restarts_a_killed_instance(fleet: LabSite) -> None:
    for ip in ("198.18.0.11", "198.18.0.12"):
        assert fleet.ssh(ip, "systemctl is-active coturn").stdout.split() == ["active"]
    units = "nginx turnkit-signaling@8080 turnkit-signaling@8081 turnkit-probe.timer"
    assert fleet.ssh("198.18.0.10", f"systemctl is-active {units}").stdout.split() == ["active"] * 4

    show = "systemctl show -p MainPID --value turnkit-signaling@8080"
    before = fleet.ssh("198.18.0.10", show).stdout.strip()
    assert fleet.ssh("198.18.0.10", f"sudo kill -9 {before}").returncode == 0
    after = before
    for _ in range(60):  # Restart= brings it back; wait for the new main process
        after = fleet.ssh(
            "198.18.0.10", f"systemctl is-active turnkit-signaling@8080 >/dev/null && {show}"
        ).stdout.strip()
        if after not in ("", "0", before):
            break
        time.sleep(0.5)
    assert after not in ("", "0", before)


# -- browsers behind symmetric NAT ------------------------------------------------------------


def _token(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 900}, JWT_SECRET, algorithm="HS256")


async def _state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(
        "() => { const { pc, ...rest } = window.turnkitDemo; return JSON.parse(JSON.stringify(rest)); }"
    )
    return state


async def _open(page: Page, url: str, attempts: int = 4) -> None:
    """page.goto, again when Chromium reports ERR_NETWORK_CHANGED: a browser started in a home namespace
    whose NAT just came up can see its interfaces settle during the first navigation (only that error)."""
    for attempt in range(attempts):
        try:
            await page.goto(url)
            return
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)


@pytest.fixture
async def call_pages(fleet: LabSite, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Page]]:
    """Two pages in two homes behind their own NATs, joined to one room (policy `all`)."""
    mode: str = request.param
    provider = fleet.provider()
    spec = provider.lab_spec()
    topo = spec.topology
    homes = [nat.Home(k, spec.lab) for k in (0, 1)]
    for home in homes:
        nat.up(topo, home, drop=BLOCKED.get(mode, ()))
    names = {h.hostname: topo.host(h.name).ip for h in spec.hosts}
    ca = provider.ca_file()
    assert ca is not None
    async with async_playwright() as pw:
        pages = []
        for home, who in zip(homes, ("ann", "ben"), strict=True):
            wrapper = browsers.prepare_profile(tmp_path / f"home{home.k}", home.home_ns, Path(ca))
            args = [*CHROMIUM_ARGS, f"--host-resolver-rules={browsers.resolver_rules(names)}"]
            browser = await pw.chromium.launch(executable_path=str(wrapper), args=args)
            page = await (await browser.new_context()).new_page()
            if mode == "stun-only":
                await page.add_init_script(browsers.STUN_ONLY)
            await _open(page, f"https://{spec.hosts[0].hostname}/?token={_token(who)}")  # server_name
            pages.append(page)
        for page in pages:
            await page.fill("#room", f"nat-{mode}")
            await page.click("#join")
        yield pages


@pytest.mark.parametrize("call_pages", ["stun-only"], indirect=True)
async def test_without_turn_the_natted_browsers_cannot_connect(call_pages: list[Page]) -> None:
    # The page does not give up on a failed call: its watchdog fetches fresh ICE servers and restarts
    # ICE, so there is no final error to wait for. Give the call the time a relayed one needs (they
    # connect in seconds), then check that nothing ever got through.
    await asyncio.sleep(CALL_TIMEOUT_MS / 1000)
    for page in call_pages:
        state = await _state(page)
        assert state["state"] != "connected"
        assert state["stats"] is None or state["stats"]["framesDecoded"] == 0
        urls = [u for s in state["iceServers"] for u in s["urls"]]
        assert any(u.startswith("turn:") for u in urls)  # turnkit offered TURN; the page kept only STUN


@pytest.mark.parametrize("call_pages", ["all", "udp-blocked"], indirect=True)
async def test_the_natted_browsers_connect_through_a_relay(
    call_pages: list[Page], request: pytest.FixtureRequest
) -> None:
    for page in call_pages:
        await page.wait_for_function(browsers.CALL_UP, timeout=CALL_TIMEOUT_MS, polling=250)
    udp_blocked = "udp-blocked" in request.node.name
    for page in call_pages:
        stats = (await _state(page))["stats"]
        assert stats["localCandidateType"] == "relay" or stats["remoteCandidateType"] == "relay", stats
        assert await page.evaluate("() => document.getElementById('remote-video').videoWidth") > 0
        if udp_blocked:
            assert stats["localCandidateType"] == "relay" and stats["relayProtocol"] == "tls", stats
