"""Operations on a deployed lab fleet, through the same Ansible-over-SSH path every remote region uses.

In this order, on the module's one deployed fleet (tests/lab/conftest.py `fleet`):

1. a second `turnkit deploy` with nothing changed: Ansible reports changed=0, coturn keeps its PID;
2. bytes relayed through a TURN node from this machine are metered on the node (statsdb → meter →
   the signaling host's TLS usage store) and `turnkit usage --json` reports them within ±2 %;
3. a config change that needs a coturn restart drains the node first: while an allocation lives the
   node is marked draining where signaling reads health and coturn keeps its PID; once it ends,
   coturn restarts, the node passes the probe and is handed out again;
4. the same change sets a tiny `[quotas] user_monthly_gb`: the signaling service on the signaling host
   reads the usage store with its read-only user, so a user metered in 2. gets STUN only
   (`"turn": "quota-exceeded"`) over HTTPS and WebSocket through NGINX, and a fresh user still gets TURN.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aioice.turn as turn
import httpx
import jwt
import pytest
import websockets

from tests.helpers.cli import sourced
from tests.lab.conftest import JWT_SECRET, LabSite
from tests.turnclient import Inbox
from turnkit import __version__, config, credentials, keyring

pytestmark = pytest.mark.timeout(1800)

SIGNALING = "198.18.0.10"
TURN_1 = "198.18.0.11"
TURN_2 = "198.18.0.12"
PAYLOAD = 1000
PACKETS = 3000  # 3 MB each way
TOLERANCE = 0.02
HEALTH_FILE = "/var/lib/turnkit/health.json"  # %S/turnkit/health.json of turnkit-signaling@.service
#: The users metered in 2. (and pushed over the quota set in 3.).
METERED = (f"ops-ann-{os.getpid()}", f"ops-ben-{os.getpid()}")
#: Under what each metered user relayed (3 MB each way), above what the browser calls of test_fleet.py
#: relay; set only by the config change of 3., so test_fleet.py runs before any quota exists.
QUOTA_GB = 0.002
SERVER_NAME = "call.example.test"


# -- helpers ----------------------------------------------------------------------------------


def deploy_cmd(site: LabSite) -> list[str]:
    return [sys.executable, "-m", "turnkit", "deploy", "--region", "lab", "--json", "--config", str(site.config)]


def deploy_env() -> dict[str, str]:
    return {**os.environ, "TURNKIT_JWT_SECRET": JWT_SECRET}


def deploy(site: LabSite) -> tuple[dict[str, Any], str]:
    out = subprocess.run(
        deploy_cmd(site), cwd=site.root, capture_output=True, text=True, timeout=1500, env=deploy_env(),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout), out.stderr


def coturn_pid(site: LabSite, ip: str) -> str:
    pid = site.ssh(ip, "systemctl show -p MainPID --value coturn").stdout.strip()
    assert pid not in ("", "0"), f"coturn is not running on {ip}"
    return pid


def node_health(site: LabSite) -> dict[str, Any]:
    """The health document the signaling instances read (on the signaling host)."""
    out = site.ssh(SIGNALING, f"if sudo test -e {HEALTH_FILE}; then sudo cat {HEALTH_FILE}; else echo {{}}; fi")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def draining(site: LabSite, node: str) -> bool:
    nodes = node_health(site).get("nodes", {})
    return bool(nodes.get(f"lab/{node}", {}).get("draining"))


def secret(site: LabSite) -> str:
    return keyring.load(config.load(site.config).secrets_path).primary.value


async def allocate(site: LabSite, user: str, server: str = TURN_1) -> tuple[Any, Inbox]:
    """A UDP allocation on `server` with a credential signaling would issue to `user`."""
    cred = credentials.issue(user, secret(site), int(time.time()), 600)
    transport, inbox = await asyncio.wait_for(
        turn.create_turn_endpoint(
            Inbox, server_addr=(server, 3478), username=cred.username, password=cred.password, transport="udp"
        ),
        15,
    )
    return transport, inbox


def usage_env(site: LabSite) -> dict[str, str]:
    """What deploy wrote for `turnkit usage`: the read-only user's URL and the lab's CA (0600)."""
    path = site.root / ".turnkit/regions/lab/meter/usage.env"
    assert path.stat().st_mode & 0o077 == 0
    return {**os.environ, **sourced(path)}


def usage_command(site: LabSite) -> list[str]:
    return [sys.executable, "-m", "turnkit", "usage", "--region", "lab", "--by", "user", "--since", "1d", "--json",
            "--config", str(site.config)]  # fmt: skip


def usage_of(site: LabSite, user: str, timeout: float = 120.0) -> dict[str, Any]:
    """The user's row once both directions are in (the meter ships every [meter] flush_interval)."""
    deadline = time.monotonic() + timeout
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = subprocess.run(usage_command(site), cwd=site.root, capture_output=True, text=True, timeout=60,
                             env=usage_env(site), stdin=subprocess.DEVNULL)  # fmt: skip
        assert out.returncode == 0, out.stderr
        row = next((r for r in json.loads(out.stdout)["rows"] if r["key"] == user), {})
        expected = PACKETS * PAYLOAD * (1 - TOLERANCE)
        if row.get("sessions") and row.get("bytes_up", 0) >= expected and row.get("bytes_down", 0) >= expected:
            return row
        time.sleep(2)
    return row


# -- 1. a no-op redeploy ----------------------------------------------------------------------


def test_a_second_deploy_with_nothing_changed_changes_nothing(fleet: LabSite) -> None:
    pids = {ip: coturn_pid(fleet, ip) for ip in (TURN_1, TURN_2)}
    report, stderr = deploy(fleet)
    changed = [line for line in stderr.splitlines() if line.startswith("changed:")]
    assert report["ok"] is True
    assert report["ansible_changed"] == 0, changed
    assert {ip: coturn_pid(fleet, ip) for ip in (TURN_1, TURN_2)} == pids


#: The venv's turnkit version, as the wheelhouse check on the host asks it.
VENV_VERSION = "sudo /opt/turnkit/venv/bin/python -c 'import importlib.metadata as m; print(m.version(\"turnkit\"))'"


def test_a_deploy_puts_back_what_drifted_on_a_node(fleet: LabSite) -> None:
    """What the cheap no-change checks must not hide (docs/ansible.md): a secret file whose mode was
    loosened and a venv that lost turnkit are both put back by the next deploy, without a coturn restart."""
    pids = {ip: coturn_pid(fleet, ip) for ip in (TURN_1, TURN_2)}
    assert fleet.ssh(TURN_1, "sudo chmod 0644 /etc/turnkit/meter.env").returncode == 0
    gone = fleet.ssh(TURN_1, "sudo /opt/turnkit/venv/bin/python -m pip uninstall -y -q turnkit")
    assert gone.returncode == 0, gone.stderr
    assert fleet.ssh(TURN_1, VENV_VERSION).returncode != 0
    report, stderr = deploy(fleet)
    assert report["ok"] is True
    assert report["ansible_changed"] >= 2, stderr[-3000:]
    assert fleet.ssh(TURN_1, "sudo stat -c %a /etc/turnkit/meter.env").stdout.strip() == "600"
    assert fleet.ssh(TURN_1, VENV_VERSION).stdout.strip() == __version__
    assert fleet.ssh(TURN_1, "systemctl is-active turnkit-meter").stdout.strip() == "active"
    assert {ip: coturn_pid(fleet, ip) for ip in (TURN_1, TURN_2)} == pids


# -- 2. metering through a TURN node ----------------------------------------------------------


async def relay_both_ways(site: LabSite, users: tuple[str, str]) -> None:
    """Each user sends PACKETS × PAYLOAD bytes to the other's relayed address (both on turn-1), then
    both allocations are closed (coturn publishes the session totals at deallocation)."""
    ta, _ = await allocate(site, users[0])
    tb, _ = await allocate(site, users[1])
    try:
        ra, rb = ta.get_extra_info("sockname"), tb.get_extra_info("sockname")
        assert ra[0] == TURN_1 and rb[0] == TURN_1  # the relay peer is a lab address
        tb.sendto(b"b" * PAYLOAD, ra)  # permissions and channels both ways first
        ta.sendto(b"a" * PAYLOAD, rb)
        await asyncio.sleep(0.5)
        for i in range(1, PACKETS):
            ta.sendto(b"a" * PAYLOAD, rb)
            tb.sendto(b"b" * PAYLOAD, ra)
            if i % 10 == 0:  # paced: a loaded 2-core host drops UDP bursts
                await asyncio.sleep(0.005)
        await asyncio.sleep(1.0)
    finally:
        ta.close()
        tb.close()
    await asyncio.sleep(1.0)


async def test_usage_reports_the_bytes_relayed_through_a_lab_node(fleet: LabSite) -> None:
    users = METERED
    await relay_both_ways(fleet, users)
    expected = PACKETS * PAYLOAD
    for user in users:
        row = await asyncio.to_thread(usage_of, fleet, user)
        assert abs(row.get("bytes_up", 0) - expected) <= expected * TOLERANCE, row
        assert abs(row.get("bytes_down", 0) - expected) <= expected * TOLERANCE, row
        assert row["sessions"] == 1, row
    # The meter's secrets stay in root-only files on the node, never in a unit's command line.
    for path in ("/etc/turnkit/meter.env", "/etc/redis/redis-turnkit-statsdb.conf", "/etc/turnserver.conf"):
        mode = fleet.ssh(TURN_1, f"sudo stat -c %a {path}").stdout.strip()
        assert mode in ("600", "640"), (path, mode)
    argv = fleet.ssh(TURN_1, "ps -eo args").stdout
    assert "PASSWORD" not in argv and "rediss://" not in argv


# -- 3. a config change that restarts coturn drains the node first ----------------------------


def bearer(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 600}, JWT_SECRET, algorithm="HS256")


def lab_tls(site: LabSite) -> ssl.SSLContext:
    ca = site.provider().ca_file()
    assert ca is not None
    return ssl.create_default_context(cafile=str(ca))


def ice_servers(site: LabSite, sub: str = "ops") -> dict[str, Any]:
    """`GET /api/ice-servers` for `sub`, through NGINX on the signaling host, as a browser asks."""
    answer = httpx.get(
        f"https://{SERVER_NAME}/api/ice-servers",
        headers={"Authorization": f"Bearer {bearer(sub)}"}, verify=lab_tls(site), timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def turn_urls(servers: list[dict[str, Any]]) -> list[str]:
    return [u for s in servers for u in s["urls"] if u.startswith(("turn:", "turns:"))]


def ice_hostnames(site: LabSite) -> set[str]:
    """The TURN hosts the signaling service hands out right now."""
    return {u.split(":")[1] for u in turn_urls(ice_servers(site)["iceServers"])}


@pytest.fixture
def restart_deploy(fleet: LabSite) -> Iterator[subprocess.Popen[str]]:
    """A deploy with `[coturn] max_bps` set (coturn reads it only at start), running in the background.
    It also sets a tiny user quota (for 4.): the signaling instances restart with it, one at a time."""
    with open(fleet.config, "a") as fh:
        fh.write(f"\n[coturn]\nmax_bps = 4000000\ndrain_timeout = 600\n\n[quotas]\nuser_monthly_gb = {QUOTA_GB}\n")
    proc = subprocess.Popen(
        deploy_cmd(fleet), cwd=fleet.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=deploy_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


async def relayed(sender: Any, to: Any, inbox: Inbox, payload: bytes, attempts: int = 5) -> None:
    """`payload` goes through the relay and arrives (UDP: sent again if lost; fails if it never arrives)."""
    for _ in range(attempts):
        sender.sendto(payload, to)
        try:
            while (await asyncio.wait_for(inbox.queue.get(), 2))[0] != payload:
                pass
            return
        except TimeoutError:
            continue
    raise AssertionError(f"{payload!r} was never relayed")


async def wait_for(what: str, check: Any, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(2)


async def test_a_restarting_config_change_drains_the_node_first(
    fleet: LabSite, restart_deploy: subprocess.Popen[str]
) -> None:
    pid = coturn_pid(fleet, TURN_1)
    ta, _ = await allocate(fleet, "ops-live-a")
    tb, inbox_b = await allocate(fleet, "ops-live-b")
    ra, rb = ta.get_extra_info("sockname"), tb.get_extra_info("sockname")
    try:
        tb.sendto(b"permission", ra)  # permissions both ways, so ta -> rb reaches tb
        await relayed(ta, rb, inbox_b, b"first")
        await wait_for("turn-1 marked draining", lambda: draining(fleet, "turn-1") or restart_deploy.poll() is not None)
        assert restart_deploy.poll() is None, restart_deploy.communicate()[1][-4000:]
        hostname = fleet.provider().nodes()[0].hostname
        for i in range(3):  # the deploy waits: the node stays marked, coturn keeps its PID and the relay
            assert draining(fleet, "turn-1")
            assert not draining(fleet, "turn-2")  # its restart waits its turn: never two nodes out at once
            assert hostname not in ice_hostnames(fleet)
            assert coturn_pid(fleet, TURN_1) == pid
            await relayed(ta, rb, inbox_b, f"still relayed {i}".encode())
            assert restart_deploy.poll() is None
            await asyncio.sleep(2)
    finally:
        ta.close()  # the allocations end: the drain's count reaches 0
        tb.close()
    stdout, stderr = await asyncio.to_thread(restart_deploy.communicate, timeout=1500)
    assert restart_deploy.returncode == 0, stderr[-4000:]
    assert json.loads(stdout)["ok"] is True
    assert "lab/turn-1: probe passed after the restart; back in service" in stderr
    assert coturn_pid(fleet, TURN_1) != pid
    assert not draining(fleet, "turn-1")
    assert hostname in ice_hostnames(fleet)


# -- 4. quotas apply on the remote signaling host ---------------------------------------------


async def ws_ice_servers(site: LabSite, sub: str) -> dict[str, Any]:
    """The WebSocket `ice-servers` reply for `sub`, through NGINX (TLS, the page's Origin, a bearer token)."""
    async with websockets.connect(
        f"wss://{SERVER_NAME}/ws", ssl=lab_tls(site), origin=websockets.Origin(f"https://{SERVER_NAME}"), proxy=None,
        additional_headers={"Authorization": f"Bearer {bearer(sub)}"}, open_timeout=10,
    ) as ws:  # fmt: skip
        await ws.send(json.dumps({"type": "ice-servers"}))
        async with asyncio.timeout(10):
            while (msg := json.loads(await ws.recv()))["type"] != "ice-servers":
                pass
    reply: dict[str, Any] = msg
    return reply


async def test_a_user_over_quota_gets_stun_only_from_the_remote_signaling_host(fleet: LabSite) -> None:
    over, fresh = METERED[0], f"ops-fresh-{os.getpid()}"
    out = subprocess.run(usage_command(fleet), cwd=fleet.root, capture_output=True, text=True, timeout=60,
                         env=usage_env(fleet), stdin=subprocess.DEVNULL)  # fmt: skip
    assert out.returncode == 0, out.stderr
    row = next((r for r in json.loads(out.stdout)["rows"] if r["key"] == over), {})
    assert row.get("bytes_down", 0) > QUOTA_GB * 1e9, row  # what 2. relayed to the user's client alone

    doc = await asyncio.to_thread(ice_servers, fleet, over)
    assert doc.get("turn") == "quota-exceeded", doc
    assert turn_urls(doc["iceServers"]) == [] and not any("credential" in s for s in doc["iceServers"])
    assert [u for s in doc["iceServers"] for u in s["urls"]], doc  # STUN is still offered
    reply = await ws_ice_servers(fleet, over)
    assert reply.get("turn") == "quota-exceeded", reply
    assert turn_urls(reply["iceServers"]) == []

    doc = await asyncio.to_thread(ice_servers, fleet, fresh)
    assert doc.get("turn") in (None, "ok") and turn_urls(doc["iceServers"]), doc
    reply = await ws_ice_servers(fleet, fresh)
    assert turn_urls(reply["iceServers"]), reply

    # The reader's URL has a password: a root-only environment file (checked with grep on the host, so
    # the password never reaches this test's output), never a command line.
    env_file = "/etc/turnkit/signaling.env"
    assert fleet.ssh(SIGNALING, f"sudo stat -c %a:%U {env_file}").stdout.strip() == "600:root"
    for line in (f"^TURNKIT_METER_CENTRAL_URL=rediss://usage:[0-9a-f]*@{SERVER_NAME}:[0-9]*/0$",
                 "^TURNKIT_METER_CENTRAL_CA=/etc/turnkit/usage-store-ca.pem$"):  # fmt: skip
        assert fleet.ssh(SIGNALING, f"sudo grep -q '{line}' {env_file}").returncode == 0, line
    assert "rediss://" not in fleet.ssh(SIGNALING, "ps -eo args").stdout
