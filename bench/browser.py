"""Section 5b: call setup between two headless Chromium pages (the demo page, relay only) vs the in-page floor."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
from typing import Any

import jwt
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from bench import profile, stack, turn
from bench.common import Ctx
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, percentile, ratio
from turnkit import keyring

#: Room names of this process: a room is never reused (its members stay parked for `resume_window` after they
#: close, so a second run through the same names, e.g. the profile after the measured calls, would find it full).
ROOMS = itertools.count()

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
]
TIMEOUT_MS = 30_000
SETUP = Target("browser call setup p50 ÷ in-page floor (second join → both connected)", "<=", 1.2, "×", "issue 13")

#: Timestamps (ms since the epoch, so two pages compare) of this page's first `join-room` frame and of its
#: peer connection reaching `connected`; the demo page itself is not changed.
INSTRUMENT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const bench = (window.__bench = { joinSent: null, connected: null });
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (bench.joinSent === null && typeof data === "string" && data.includes('"join-room"')) bench.joinSent = now();
    return send.call(this, data);
  };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState === "connected" && bench.connected === null) bench.connected = now();
      });
    }
  };
})();
"""

#: The candidate types of a connection's selected pair (its transport's selectedCandidatePairId).
SELECTED = """
async (pc) => {
  const stats = await pc.getStats();
  for (const [, t] of stats) {
    const pair = t.type === "transport" && stats.get(t.selectedCandidatePairId);
    if (pair) return [stats.get(pair.localCandidateId).candidateType, stats.get(pair.remoteCandidateId).candidateType];
  }
  return [];
}
"""
#: The same for the demo page's connection.
PAIR = f"() => ({SELECTED})(window.turnkitDemo.pc)"


#: Two peer connections in one page with the same ICE servers, relay only, exchanging descriptions and
#: candidates directly (no signaling hop); media is acquired before the clock starts, as the demo page does
#: before it sends `join-room`. Returns ms to both connected and the selected pair's candidate types.
FLOOR = """
async (iceServers) => {
  const cfg = { iceServers, iceTransportPolicy: "relay" };
  const media = [await navigator.mediaDevices.getUserMedia({ video: true, audio: true }),
                 await navigator.mediaDevices.getUserMedia({ video: true, audio: true })];
  const t0 = performance.now();
  const a = new RTCPeerConnection(cfg), b = new RTCPeerConnection(cfg);
  const connected = (pc) => new Promise((done, fail) => {
    const check = () => pc.connectionState === "connected" ? done() : pc.connectionState === "failed" ? fail(new Error("failed")) : null;
    pc.addEventListener("connectionstatechange", check);
    check();
  });
  [a, b].forEach((pc, i) => media[i].getTracks().forEach((t) => pc.addTrack(t, media[i])));
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  await Promise.all([connected(a), connected(b)]);
  const ms = performance.now() - t0;
  const types = await (SELECTED_TYPES)(a);
  a.close(); b.close(); media.forEach((m) => m.getTracks().forEach((t) => t.stop()));
  return { ms, types };
}
""".replace("SELECTED_TYPES", SELECTED)


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 900}, stack.JWT_SECRET, algorithm="HS256")


def ice_servers(base: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"{base}/api/ice-servers", headers={"Authorization": f"Bearer {token('floor')}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        servers: list[dict[str, Any]] = json.load(resp)["iceServers"]
    return servers


async def _page(browser: Browser, base: str, sub: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context()
    await context.add_init_script(INSTRUMENT)
    page = await context.new_page()
    await page.goto(f"{base}/?token={token(sub)}")
    return context, page


async def _join(page: Page, room: str) -> None:
    await page.fill("#room", room)
    if not await page.is_checked("#relay-only"):
        await page.click("label.switch")
    await page.click("#join")


async def one_call(browser: Browser, base: str, n: int) -> tuple[float, float, bool]:
    """(ms from the first join-room to both connected, ms from the second join-room, both ends relayed)."""
    (ca, a), (cb, b) = await _page(browser, base, f"a{n}"), await _page(browser, base, f"b{n}")
    try:
        room = f"browser-{next(ROOMS)}"  # never reused: a left member stays parked for the resume window
        await _join(a, room)
        await a.wait_for_function("() => window.turnkitDemo.state === 'waiting'", timeout=TIMEOUT_MS, polling=5)
        await _join(b, room)
        for page in (a, b):
            await page.wait_for_function("() => window.__bench.connected !== null", timeout=TIMEOUT_MS, polling=5)
        ta, tb = await a.evaluate("() => window.__bench"), await b.evaluate("() => window.__bench")
        end = max(ta["connected"], tb["connected"])
        pairs = [await a.evaluate(PAIR), await b.evaluate(PAIR)]
        relayed = pairs == [["relay", "relay"], ["relay", "relay"]]
        return end - ta["joinSent"], end - tb["joinSent"], relayed
    finally:
        await ca.close()
        await cb.close()


async def floor_call(browser: Browser, base: str, servers: list[dict[str, Any]]) -> tuple[float, bool]:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{base}/")
        result = await page.evaluate(FLOOR, servers)
        return float(result["ms"]), result["types"] == ["relay", "relay"]
    finally:
        await context.close()


async def _run(base: str, count: int) -> tuple[list[tuple[float, float, bool]], list[tuple[float, bool]]]:
    servers = ice_servers(base)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await one_call(browser, base, -1)  # warm-up: codecs, first TURN allocations
            await floor_call(browser, base, servers)
            calls: list[tuple[float, float, bool]] = []
            floors: list[tuple[float, bool]] = []
            for i in range(count):  # alternated
                calls.append(await one_call(browser, base, i))
                floors.append(await floor_call(browser, base, servers))
            return calls, floors
        finally:
            await browser.close()


def _profile(ctx: Ctx, server: stack.Server, base: str, count: int) -> str:
    """py-spy of the signaling server over `count` more calls (and floors), after the measured ones."""
    out = ctx.workdir / "browser.prof"
    start = time.perf_counter()
    try:
        text = profile.while_running(server.proc.pid, lambda: asyncio.run(_run(base, count)), out, None)
    except RuntimeError as exc:
        return f"Profile not taken: {exc}"
    busy = profile.parse_collapsed(text)[2] / 200
    what = (
        f"the signaling server over {count} more calls ({busy:.2f} s of samples in {time.perf_counter() - start:.1f} s:"
        " the server is idle most of the call setup)"
    )
    return profile.summary(text, what, "signaling/")


def bench(ctx: Ctx) -> Section:
    count = ctx.count(20, 2)
    ring = keyring.init(int(time.time()))
    coturn = turn.start(ctx.procs, ctx.workdir / "browser-coturn", list(ring.accepted))
    server = stack.start_turnkit(ctx.procs, ctx.workdir, None, turn=(coturn.port, coturn.tls_port), ring=ring)
    base = f"http://127.0.0.1:{server.port}"
    calls, floors = asyncio.run(_run(base, count))
    first, second = [c[0] for c in calls], [c[1] for c in calls]
    floor = [f[0] for f in floors]
    relayed, floor_relayed = sum(c[2] for c in calls), sum(f[1] for f in floors)

    def row(name: str, values: list[float], relay: str) -> tuple[str, ...]:
        return (name, fmt(median(values)), fmt(percentile(values, 90)), fmt(max(values)), relay)

    rows = (
        row("demo pages: first join-room → both connected", first, f"{relayed}/{len(calls)}"),
        row("demo pages: second join-room → both connected", second, f"{relayed}/{len(calls)}"),
        row("floor: two connections in one page, no signaling", floor, f"{floor_relayed}/{len(floors)}"),
    )
    method = f"""\
Two headless Chromium pages ({CHROMIUM}, Playwright, fake camera and microphone) load the demo page from
`turnkit signaling serve` and join one room with **relay only** on; ICE servers with TURN credentials come from
`all-users`, and the relay is a local coturn started from turnkit-rendered config. Timestamps are taken in the
pages (an init script records when the first `join-room` frame is sent and when the RTCPeerConnection reaches
`connected`, in epoch ms, so the two pages compare); the demo page itself is unchanged. The first page joins, the
harness waits until it shows `waiting` (polling every 5 ms) and the second joins; the second join is where the
call starts (all-users → offer → answer → candidates over signaling). **Floor:** the same browser, the same ICE
servers (from `/api/ice-servers`), two RTCPeerConnections in one page exchanging descriptions and candidates
directly, media acquired before the clock as the demo page does before it joins. {count} calls, alternated with
the floor, after one warm-up of each; nothing pinned. "relay" counts calls whose selected pair was relay↔relay
on both sides."""
    p50, p50_floor = median(second), median(floor)
    verdict = Verdict(SETUP, ratio(p50, p50_floor), f"{fmt(p50)} vs {fmt(p50_floor)} ms")
    return Section(
        "browser",
        "5b. Browser call setup",
        method,
        tables=[Table(("interval", "p50 ms", "p90 ms", "max ms", "relay↔relay"), rows)],
        verdicts=[verdict],
        notes=[_profile(ctx, server, base, ctx.count(5, 1))] if ctx.profile or verdict.met is False else [],
    )
