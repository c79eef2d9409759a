"""The NATed browser call through a deployed lab region, and the lab's table (`make lab`, bench/lab.py, tests/lab).

Two homes behind symmetric NAT boxes (`turnkit.lab.nat`) each run headless Chromium (the Debian
package, started by Playwright through a wrapper that enters the home's namespace); the browsers
trust pebble's root through their own NSS database, resolve names through the lab's DNS server
(the homes' resolv.conf) and open the demo page over HTTPS through NGINX on the signaling host. A call is two fresh
pages joining one room with the page's default policy (`all`); its setup time is taken in the
pages (bench/browser.py's init script): the second `join-room` frame → both connections up.

`python -m bench.labcall --config lab-demo/turnkit.toml` (root, a deployed lab region,
`TURNKIT_JWT_SECRET` in the environment) makes one call and prints the table `make lab` shows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

from bench.browser import CHROMIUM, CHROMIUM_ARGS, INSTRUMENT
from turnkit import config as config_mod
from turnkit.lab import nat
from turnkit.lab.topology import BRIDGE_IP
from turnkit.provision.lab import SIGNALING_HOST, LabProvider, ssh_key

CALL_TIMEOUT_MS = 60_000
#: How long the hung-up pages get to send their deallocations before they close.
HANG_UP_S = 0.5
REGION = "lab"

#: Both sides connected, the selected pair known, and remote video actually decoded and shown.
CALL_UP = """() => {
  const d = window.turnkitDemo, v = document.getElementById("remote-video");
  return d.state === "connected" && d.stats !== null && d.stats.localCandidateType !== null
    && d.stats.framesDecoded > 0 && v.videoWidth > 0;
}"""

#: Keep only stun: URLs in every RTCPeerConnection the page makes (the "no TURN" baseline).
STUN_ONLY = """(() => {
  const Native = window.RTCPeerConnection;
  const stunOnly = (config) => ({
    ...config,
    iceServers: ((config && config.iceServers) || [])
      .map((s) => ({ urls: [].concat(s.urls).filter((u) => u.startsWith("stun:")) }))
      .filter((s) => s.urls.length > 0),
  });
  // Also on ICE restarts: the page's watchdog hands fresh servers to setConfiguration().
  const nativeSet = Native.prototype.setConfiguration;
  Native.prototype.setConfiguration = function (config) { return nativeSet.call(this, stunOnly(config)); };
  window.RTCPeerConnection = function (config, ...rest) { return new Native(stunOnly(config), ...rest); };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""

#: nft matches each NAT box drops from its home, by call mode ("udp-blocked": no UDP but DNS queries to
#: the lab's resolver, no plain TURN/TCP: of turnkit's ICE servers only turns: on 5349 gets out).
BLOCKED: dict[str, tuple[str, ...]] = {
    "udp-blocked": (f"meta l4proto udp ip daddr != {BRIDGE_IP}", "udp dport != 53", "tcp dport 3478"),
}

#: Records the type of every candidate any RTCPeerConnection of the page gathers (`window.__gathered`), across
#: ICE restarts (getStats() shows only the current generation, which may still be gathering).
GATHERED = """(() => {
  const Native = window.RTCPeerConnection;
  window.__gathered = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    pc.addEventListener("icecandidate", (e) => {
      const type = e.candidate && e.candidate.type;
      if (type && !window.__gathered.includes(type)) window.__gathered.push(type);
    });
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""


# -- one browser per home ----------------------------------------------------------------------


def prepare_profile(home: Path, namespace: str, ca: Path) -> Path:
    """A HOME with an NSS database trusting `ca`, and the wrapper Playwright launches; returns it."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    if not (nssdb / "cert9.db").exists():  # -N on an existing database would prompt for its password
        subprocess.run(
            ["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"],
            check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "turnkit-lab-acme", "-t", "C,,", "-i", str(ca)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    wrapper = home / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} env HOME={home} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def token(secret: str, sub: str, ttl: int = 900) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


async def open_page(page: Page, url: str, attempts: int = 4) -> None:
    """page.goto until the page's script runs (`window.turnkitDemo`), again when Chromium reports
    ERR_NETWORK_CHANGED: a browser started in a home namespace whose NAT just came up can see its
    interfaces settle during the first navigation, or while it loads the page's module imports (only
    that error; anything else fails with the requests that failed)."""
    failed: list[str] = []

    def note(request: Any) -> None:
        failed.append(f"{request.url}: {request.failure}")

    page.on("requestfailed", note)
    try:
        for attempt in range(attempts):
            failed.clear()
            try:
                await page.goto(url)
                await page.wait_for_function("() => window.turnkitDemo !== undefined", timeout=15_000)
                return
            except PlaywrightError as exc:
                changed = "ERR_NETWORK_CHANGED" in str(exc) or any("ERR_NETWORK_CHANGED" in f for f in failed)
                if not changed or attempt == attempts - 1:
                    raise RuntimeError(f"the demo page did not start: {exc}; failed requests: {failed}") from None
                await asyncio.sleep(1.0)
    finally:
        page.remove_listener("requestfailed", note)


async def demo_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(
        "() => { const { pc, ...rest } = window.turnkitDemo; return JSON.parse(JSON.stringify(rest)); }"
    )
    return state


async def gathered(page: Page) -> list[str]:
    """The candidate types (`host`, `srflx`, `relay`) the page gathered so far (needs GATHERED), sorted."""
    types: list[str] = await page.evaluate("() => [...window.__gathered].sort()")
    return types


@dataclass(frozen=True)
class Homes:
    """Two browsers, each in its home behind its own NAT, and where the demo page is."""

    browsers: list[Browser]
    url: str
    secret: str

    async def page(self, k: int, sub: str, init_scripts: Sequence[str] = ()) -> tuple[BrowserContext, Page]:
        context = await self.browsers[k].new_context()
        for script in init_scripts:
            await context.add_init_script(script)
        page = await context.new_page()
        await open_page(page, f"{self.url}?token={token(self.secret, sub)}")
        return context, page


@asynccontextmanager
async def homes(provider: LabProvider, secret: str, workdir: Path, mode: str = "all") -> AsyncIterator[Homes]:
    """NAT boxes and homes up (re-ruled for `mode`), one Chromium in each; the homes stay for `lab.down`."""
    spec = provider.lab_spec()
    topo = spec.topology
    ca = provider.ca_file()
    if ca is None:
        raise RuntimeError(f"lab region `{provider.region}` has no ACME root yet: deploy it first")
    async with async_playwright() as pw:
        browsers: list[Browser] = []
        try:
            for k in (0, 1):
                home = nat.Home(k, spec.lab)
                nat.up(topo, home, drop=BLOCKED.get(mode, ()))
                wrapper = prepare_profile(workdir / f"home{k}", home.home_ns, ca)
                browsers.append(await pw.chromium.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS))
            yield Homes(browsers, f"https://{spec.hosts[0].hostname}/", secret)  # the signaling host: server_name
        finally:
            for browser in browsers:
                await browser.close()


# -- one call ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call: setup time (second join-room → both connected) and the caller's selected pair."""

    setup_ms: float
    local: str
    remote: str
    protocol: str

    @property
    def pair(self) -> str:
        return f"{self.local} ↔ {self.remote} ({self.protocol})"

    @property
    def relayed(self) -> bool:
        return "relay" in (self.local, self.remote)


async def call(h: Homes, room: str) -> Call:
    """Home 0 joins, waits for `waiting`, home 1 joins; both must show decoded remote video."""
    (ca, a), (cb, b) = await h.page(0, f"{room}-a", [INSTRUMENT]), await h.page(1, f"{room}-b", [INSTRUMENT])
    try:
        await a.fill("#room", room)
        await a.click("#join")
        await a.wait_for_function("() => window.turnkitDemo.state === 'waiting'", timeout=CALL_TIMEOUT_MS, polling=5)
        await b.fill("#room", room)
        await b.click("#join")
        for page in (a, b):
            await page.wait_for_function(CALL_UP, timeout=CALL_TIMEOUT_MS, polling=50)
        ta, tb = await a.evaluate("() => window.__bench"), await b.evaluate("() => window.__bench")
        stats = (await demo_state(a))["stats"]
        protocol = stats["relayProtocol"] or stats["localProtocol"] or "?"
        setup = max(ta["connected"], tb["connected"]) - tb["joinSent"]
        return Call(setup, stats["localCandidateType"], stats["remoteCandidateType"], protocol)
    finally:
        await hang_up(a, b)
        await ca.close()
        await cb.close()


async def hang_up(*pages: Page) -> None:
    """Each page hangs up as its user would (its RTCPeerConnection closes, and Chromium releases its TURN
    allocations: a UDP one otherwise lives on in the relay until its lifetime ends, and drains wait on it)."""
    for page in pages:
        with contextlib.suppress(PlaywrightError):
            await page.evaluate("() => { const b = document.getElementById('hangup'); if (!b.disabled) b.click(); }")
    await asyncio.sleep(HANG_UP_S)


async def calls(provider: LabProvider, secret: str, count: int, workdir: Path) -> list[Call]:
    """`count` calls between the two NATed homes, one after the other (one browser per home for all)."""
    async with homes(provider, secret, workdir) as h:
        return [await call(h, f"lab-{i}") for i in range(count)]


# -- the table `make lab` prints ----------------------------------------------------------------


def ssh(provider: LabProvider, ip: str, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`command` on a lab host as the region's SSH user, with the region's key; `stdin` is its input
    (the way to hand it anything secret: never in the command line)."""
    key = ssh_key(provider.cfg, provider.region)
    argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    return subprocess.run(
        [*argv, f"{provider.spec.ssh_user}@{ip}", command],
        capture_output=True, text=True, timeout=60, input=stdin,
    )  # fmt: skip


#: What each kind of host must run (signaling instances are listed from systemd itself).
UNITS = {"turn": "coturn.service", "signaling": "nginx.service turnkit-probe.timer 'turnkit-signaling@*.service'"}


def services(provider: LabProvider) -> dict[str, str]:
    """Host name → `unit=state …` as systemd on that host reports it."""
    spec = provider.lab_spec()
    out = {}
    for h in spec.hosts:
        kind = "signaling" if h.name == SIGNALING_HOST else "turn"
        cmd = f"systemctl list-units --all --no-legend --plain --type=service,timer {UNITS[kind]}"
        res = ssh(provider, spec.topology.host(h.name).ip, cmd)
        rows = [line.split() for line in res.stdout.splitlines() if line.strip()]
        units = [f"{r[0].removesuffix('.service')}={r[2]}" for r in rows if len(r) >= 3]
        out[h.name] = " ".join(units) if res.returncode == 0 and units else f"ssh failed: {res.stderr.strip()[-80:]}"
    return out


def probe(config: Path, ca: Path | None) -> dict[str, str]:
    """Node name → `passed/total checks` (+ the failed ones) from `turnkit probe --region lab --json`."""
    argv = [sys.executable, "-m", "turnkit", "probe", "--region", REGION, "--config", str(config), "--json"]
    argv += ["--no-record", *(["--ca-file", str(ca)] if ca else [])]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    try:
        results = json.loads(res.stdout)["results"]
    except (ValueError, KeyError):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["status"] != "skip":
            out.setdefault(r["node"], []).append(r)
    return {
        node: f"{sum(r['ok'] for r in rs)}/{len(rs)} checks pass"
        + "".join(f", {r['check']}/{r['transport']} FAILED" for r in rs if not r["ok"])
        for node, rs in out.items()
    }


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def report(provider: LabProvider, config: Path, one: Call | None) -> str:
    spec = provider.lab_spec()
    units, verdicts = services(provider), probe(config, provider.ca_file())
    rows = [("host", "name", "address", "services", "probe")]
    for h in spec.hosts:
        rows.append((h.name, h.hostname, spec.topology.host(h.name).ip, units[h.name], verdicts.get(h.name, "-")))
    call_line = (
        f"NATed browser call (symmetric NAT both sides, policy all): selected pair {one.pair}, "
        f"setup {one.setup_ms:.0f} ms (second join-room → both connected)"
        if one
        else "NATed browser call: not run"
    )
    secret_file = config.parent / "jwt.secret"  # where `make lab` keeps it
    secret = f'"$(cat {secret_file})"' if secret_file.exists() else "<the deployed JWT secret>"
    return "\n".join(
        [
            table(rows),
            "",
            call_line,
            "",
            f"open https://{spec.hosts[0].hostname}/?token=<JWT> from this machine (/etc/hosts already names the lab),",
            f"trusting {provider.ca_file()} (pebble's root) in the browser; a token valid for an hour:",
            f"  TURNKIT_JWT_SECRET={secret} {sys.executable} -m bench.labcall --token",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.labcall", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("turnkit.toml"))
    parser.add_argument("--token", action="store_true", help="print a demo-page token (1 h) and exit")
    args = parser.parse_args(argv)
    secret = os.environ.get("TURNKIT_JWT_SECRET", "")
    if not secret:
        print("error: TURNKIT_JWT_SECRET is not set (the deployed signaling service's JWT secret)", file=sys.stderr)
        return 2
    if args.token:
        print(token(secret, "lab-visitor", ttl=3600))
        return 0
    provider = LabProvider(config_mod.load(args.config), REGION)
    with tempfile.TemporaryDirectory(prefix="turnkit-labcall-") as tmp:
        try:
            one: Call | None = asyncio.run(calls(provider, secret, 1, Path(tmp)))[0]
        except (PlaywrightError, RuntimeError) as exc:
            print(f"error: the NATed call failed: {str(exc).splitlines()[0]}", file=sys.stderr)
            one = None
    print(report(provider, args.config, one))
    return 0 if one is not None and one.relayed else 1


if __name__ == "__main__":
    sys.exit(main())
