"""TURN node loss (issue 12 item 4): a Chromium call relayed through node 1 of a two-node region moves
to node 2 by an ICE restart once node 1's coturn is gone and node health marks it failing.

Two real coturn processes (127.0.0.1 and 127.0.0.2, same ports, as a region's nodes share them), the
real signaling server reading the real health file, two headless Chromium pages running the demo page
with /static/turnkit-client.js. The recovery time is printed, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from tests.daemons import Coturn, free_port, start_coturn
from tests.helpers.browser import demo_state, start_call
from tests.helpers.signaling import toml_text
from tests.signaling.callstack import Restartable
from turnkit import config as config_mod
from turnkit import health, keyring, nodes
from turnkit.health import NodeHealth

WAIT_MS = 30_000
NODES = ("127.0.0.1", "127.0.0.2")

#: The selected candidate pair's local candidate: type and the TURN server URL it was allocated on.
SELECTED = """async () => {
  const pc = window.turnkitDemo.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  report.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId); });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId);
  return { type: local.candidateType, url: local.url || null, state: pc.iceConnectionState };
}"""


async def until_on_node(page: Page, address: str, timeout: float) -> dict[str, object]:
    """Poll until ICE is up with the selected local candidate a relay allocated on `address`."""
    deadline = time.monotonic() + timeout
    while True:
        selected = await page.evaluate(SELECTED)
        if (
            selected is not None
            and selected["type"] == "relay"
            and selected["state"] in ("connected", "completed")
            and f"{address}:" in str(selected["url"])
        ):
            return dict(selected)
        if time.monotonic() > deadline:
            state = await demo_state(page)
            pytest.fail(f"not relayed through {address} in {timeout}s: selected={selected} page={state}")
        await asyncio.sleep(0.1)


def start_node(cfg: config_mod.Config, index: int, secret: str, workdir: Path) -> Coturn:
    """The region's node `index` on its own loopback address, with the region's shared ports."""
    node = nodes.region_nodes(cfg, "lab")[index]
    assert node.hostname == NODES[index]
    only_here = {"coturn_listening_ips": [node.hostname], "coturn_relay_ips": [node.hostname], "coturn_verbose": True}
    return start_coturn(cfg, [secret], workdir, extra=only_here, node=node, ports=(cfg.ports.listening, cfg.ports.tls))


@contextlib.contextmanager
def two_node_stack(tmp: Path) -> Iterator[tuple[Restartable, list[Coturn], Path]]:
    turn_secret, jwt_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    port, listening, tls = free_port(), free_port(), free_port()
    workdir = tmp / "signaling"
    workdir.mkdir(parents=True)
    text = toml_text(
        {
            "project": {"domain": "turn.example.test", "secrets_file": "turnkit.secrets.json", "state_dir": ".turnkit"},
            "ports": {"listening": listening, "tls": tls},
            "signaling": {"host": "127.0.0.1", "port": port, "default_region": "lab"},
            # A local region's node N listens on 127.0.0.N with the shared ports.
            "regions.lab": {"provider": "local", "allow_loopback_peers": True, "nodes": len(NODES)},
        }
    )
    (workdir / "turnkit.toml").write_text(text)
    ring = keyring.Keyring((keyring.new_secret(int(time.time()), primary=True, token=turn_secret),))
    keyring.save(workdir / "turnkit.secrets.json", ring)
    cfg = config_mod.load(workdir / "turnkit.toml")
    health_file = health.path_for(cfg, {})
    now = int(time.time())
    # Node 2 is marked failing at first, so the call starts on node 1.
    health.write_file(
        health_file, {"lab/turn-1": NodeHealth(True, now), "lab/turn-2": NodeHealth(False, now, ("udp",))}
    )
    turns: list[Coturn] = []
    stack = Restartable.on(port, workdir / "turnkit.toml", jwt_secret)
    try:
        for i in range(len(NODES)):
            turns.append(start_node(cfg, i, turn_secret, tmp / f"coturn{i + 1}"))
        stack.start()
        yield stack, turns, health_file
    finally:
        stack.stop_quietly()
        for node in turns:
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(10)


INBOUND = """async () => {
  const report = await window.turnkitDemo.pc.getStats();
  let v = null, pair = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") v = s;
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
  });
  return { frames: v ? v.framesDecoded || 0 : 0, packets: v ? v.packetsReceived : 0, pairBytes: pair ? pair.bytesReceived : 0 };
}"""


async def inbound(page: Page) -> dict[str, int]:
    return {k: int(v) for k, v in (await page.evaluate(INBOUND)).items()}


async def advances(page: Page, timeout: float = 20.0) -> None:
    """Decoded remote video frames increase (the decoder may first wait for a key frame on the new path)."""
    first = await inbound(page)
    deadline = time.monotonic() + timeout
    while (now := await inbound(page))["frames"] <= first["frames"]:
        assert time.monotonic() < deadline, f"remote video does not advance after the move: {first} → {now}"
        await asyncio.sleep(0.25)


async def test_call_moves_to_a_healthy_node_when_its_turn_node_dies(browser: Browser, tmp_path: Path) -> None:
    with two_node_stack(tmp_path) as (stack, turns, health_file):
        pages = await start_call(browser, stack.base_url, stack.token, "node-loss", WAIT_MS)
        for page in pages:
            await until_on_node(page, NODES[0], WAIT_MS / 1000)

        # Node 1 dies; the probe marks it failing (and node 2, repaired, passing).
        now = int(time.time())
        health.write_file(
            health_file, {"lab/turn-1": NodeHealth(False, now, ("udp",)), "lab/turn-2": NodeHealth(True, now)}
        )
        lost = time.monotonic()
        turns[0].proc.send_signal(signal.SIGKILL)
        turns[0].proc.wait(10)
        for page in pages:
            await until_on_node(page, NODES[1], 60.0)
        recovered = time.monotonic() - lost
        for page in pages:
            await advances(page)
            await advances(page)  # and again: it keeps going
            state = await demo_state(page)
            assert state["state"] == "connected" and state["errors"] == []
            configured = await page.evaluate("() => window.turnkitDemo.pc.getConfiguration().iceServers")
            urls = [u for server in configured for u in server["urls"]]
            assert urls and all(NODES[1] in u for u in urls), (urls, state, await page.evaluate(SELECTED))
        assert "ALLOCATE processed, success" in turns[1].log_text()
        # The side that made the first offer restarted ICE; the other answered with fresh servers.
        offerer = [p for p in pages if (await demo_state(p))["offerer"]]
        assert len(offerer) == 1 and (await demo_state(offerer[0]))["iceRestarts"] >= 1
        print(f"\n[ice restart] call recovered through node 2 {recovered:.1f}s after node 1 was killed")
