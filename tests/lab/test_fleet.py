"""`turnkit deploy --region lab`, then two browsers behind symmetric NATs call through the relays.

One lab is provisioned and deployed for the module (the slow part) and destroyed afterwards,
also after a failure, with a check that nothing is left on the machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from bench import labcall
from bench.procs import free_port
from tests.lab.conftest import JWT_SECRET, LabSite
from turnkit.lab import daemon
from turnkit.lab.sh import LabError

#: A cold deploy (apt on every host, the wheelhouse, certificates) takes minutes on 2 busy cores.
pytestmark = pytest.mark.timeout(1800)

SIGNALING_IP = "198.18.0.10"


def test_systemd_runs_every_service_and_restarts_a_killed_instance(fleet: LabSite) -> None:
    for ip in ("198.18.0.11", "198.18.0.12"):
        assert fleet.ssh(ip, "systemctl is-active coturn").stdout.split() == ["active"]
    units = "nginx turnkit-signaling@8080 turnkit-signaling@8081 turnkit-probe.timer"
    assert fleet.ssh("198.18.0.10", f"systemctl is-active {units}").stdout.split() == ["active"] * 4
    # What the timer fires: the sandboxed probe (a dynamic user) must succeed and leave node_exporter its textfile.
    started = fleet.ssh("198.18.0.10", "sudo systemctl start turnkit-probe.service")
    assert started.returncode == 0, started.stderr
    result = fleet.ssh("198.18.0.10", "systemctl show -p Result --value turnkit-probe.service").stdout.strip()
    assert result == "success"
    prom = fleet.ssh("198.18.0.10", "cat /var/lib/prometheus/node-exporter/turnkit_probe.prom").stdout
    assert "turnkit_probe_" in prom

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
    # and it serves again (Type=exec: `active` comes before the new process listens)
    ready = "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8080/readyz\", timeout=2)'"
    for _ in range(120):
        if fleet.ssh("198.18.0.10", ready).returncode == 0:
            break
        time.sleep(0.5)
    assert fleet.ssh("198.18.0.10", ready).returncode == 0


def test_teardown_finds_a_helper_whose_pidfile_was_lost(tmp_path: Path) -> None:
    """A lab helper whose pidfile no longer names it (overwritten, deleted) is still found and stopped by
    its working directory, and a second helper refuses an address already taken instead of trusting it."""
    port = free_port()
    services = tmp_path / "services"
    helper = daemon.Daemon(
        "apt", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)], ("127.0.0.1", port)
    )
    pid = helper.start(services)
    (services / "apt.pid").write_text("1\n")  # the record is lost; the process is not
    with pytest.raises(LabError, match=f"127.0.0.1:{port} is already in use"):
        helper.start(services)
    assert daemon.stop_all(services, ["apt"], {"apt": "http.server"}) == []
    assert daemon.in_dir(services) == [pid]
    shutil.rmtree(services)  # also once the directory is gone
    assert daemon.stop_in_dir(services) == [pid]
    assert daemon.in_dir(services) == []


# -- NGINX in front of the signaling instances -----------------------------------------------

#: Runs on the signaling host (python3, stdin): one WebSocket upgrade through NGINX (TLS, server_name, the
#: page's Origin, a bearer token) from each of several loopback source networks, kept open while the
#: instances' accepted-connection counters are read. NGINX balances with `ip_hash` (a client network
#: sticks to one instance), so each connection comes from its own 127.0.K.1.
SPREAD = """
import base64, json, os, socket, ssl, time, urllib.request
NAME, TOKENS, PORTS = {name!r}, {tokens!r}, {ports!r}
def metrics(port):
    for _ in range(120):  # an instance may still be starting (restarted by systemd a moment ago)
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{{port}}/metrics", timeout=10).read().decode()
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"instance {{port}} never answered /metrics")
def accepted():
    out = {{}}
    for port in PORTS:
        text = metrics(port)
        out[port] = sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("turnkit_signaling_connections_accepted_total "))
    return out
before, ctx, held, statuses = accepted(), ssl.create_default_context(), [], []
for k, token in enumerate(TOKENS):
    raw = socket.create_connection(("127.0.0.1", 443), timeout=10, source_address=(f"127.0.{{k}}.1", 0))
    s = ctx.wrap_socket(raw, server_hostname=NAME)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\\r\\nHost: {{NAME}}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
               f"Sec-WebSocket-Key: {{key}}\\r\\nSec-WebSocket-Version: 13\\r\\nOrigin: https://{{NAME}}\\r\\n"
               f"Authorization: Bearer {{token}}\\r\\n\\r\\n").encode())
    statuses.append(s.recv(4096).split(b"\\r\\n")[0].decode())
    held.append(s)
after = accepted()
print(json.dumps({{"statuses": statuses, "accepted": {{p: after[p] - before[p] for p in PORTS}}}}))
"""


def test_nginx_spreads_websocket_connections_over_the_signaling_instances(fleet: LabSite) -> None:
    cfg = fleet.provider().cfg
    ports = [cfg.signaling.port + i for i in range(cfg.signaling.instances)]
    assert len(ports) >= 2
    tokens = [labcall.token(JWT_SECRET, f"spread-{k}") for k in range(12)]
    script = SPREAD.format(name=cfg.signaling.server_name, tokens=tokens, ports=ports)
    res = labcall.ssh(fleet.provider(), SIGNALING_IP, "python3 -", stdin=script)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert all(re.match(r"HTTP/1\.1 101\b", s) for s in out["statuses"]), out["statuses"]
    accepted = {int(p): n for p, n in out["accepted"].items()}
    assert sum(accepted.values()) == len(tokens)  # every upgrade reached exactly one instance
    assert all(accepted[p] > 0 for p in ports), accepted  # and every instance got some


# -- browsers behind symmetric NAT (bench/labcall.py: the runner `make lab` and bench/lab.py use) --


#: How long the STUN-only call gets to connect (it must not).
STUN_ONLY_WAIT_S = 20.0


async def test_without_turn_the_natted_browsers_cannot_connect(fleet: LabSite, tmp_path: Path) -> None:
    # The page does not give up on a failed call: its watchdog fetches fresh ICE servers and restarts
    # ICE, so there is no final error to wait for. Give the call many times what a relayed one needs
    # (they connect in under a second here: p90 < 1 s in docs/benchmarks.md § 6), then check that
    # nothing ever got through.
    async with labcall.homes(fleet.provider(), JWT_SECRET, tmp_path) as homes:
        scripts = [labcall.STUN_ONLY, labcall.GATHERED]
        pages = [(await homes.page(k, who, scripts))[1] for k, who in enumerate(("ann", "ben"))]
        for page in pages:
            await page.fill("#room", "nat-stun-only")
            await page.click("#join")
        await asyncio.sleep(STUN_ONLY_WAIT_S)
        for page in pages:
            state = await labcall.demo_state(page)
            assert state["state"] != "connected"
            assert state["stats"] is None or state["stats"]["framesDecoded"] == 0
            urls = [u for s in state["iceServers"] for u in s["urls"]]
            assert any(u.startswith("turn:") for u in urls)  # turnkit offered TURN; the page kept only STUN
            # Each browser did reach the STUN server through its NAT and learned its mapped address:
            # the call fails because symmetric NAT maps each destination to a new port, not for want of STUN.
            assert await labcall.gathered(page) == ["host", "srflx"]


@pytest.mark.parametrize("mode", ["all", "udp-blocked"])
async def test_the_natted_browsers_connect_through_a_relay(fleet: LabSite, mode: str, tmp_path: Path) -> None:
    async with labcall.homes(fleet.provider(), JWT_SECRET, tmp_path, mode) as homes:
        call = await labcall.call(homes, f"nat-{mode}")  # waits until both pages decode remote video
    assert call.relayed, call
    assert call.setup_ms > 0
    if mode == "udp-blocked":
        assert call.local == "relay" and call.protocol == "tls", call
    else:  # UDP gets out: the relay is reached the way TURN prefers (RFC 8656 §3.1), not over TCP
        assert call.protocol == "udp", call
