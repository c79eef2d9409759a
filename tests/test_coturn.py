"""The rendered coturn config against the real turnserver: auth, rotation, and live deny rules."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import aioice.stun as stun
import aioice.turn as turn
import pytest

from tests import turnclient
from tests.daemons import coturn_running, local_config
from turnkit import config, credentials, keyring, render

BAD_CONFIG_MARKERS = ("Bad configuration format", "unknown option", "CONFIG ERROR", "Cannot find config file")


def turnkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "turnkit", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def issue(cwd: Path, user: str = "alice") -> tuple[str, str]:
    out = turnkit(cwd, "creds", "issue", "--user", user, "--ttl", "600")
    assert out.returncode == 0, out.stderr
    server = json.loads(out.stdout)["iceServers"][-1]
    return server["username"], server["credential"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    local_config(tmp_path)
    assert turnkit(tmp_path, "secret", "init").returncode == 0
    return tmp_path


def accepted(project: Path) -> list[str]:
    return keyring.load(config.load(project / "turnkit.toml").secrets_path).accepted


def test_rendered_config_is_accepted_without_warnings_about_format(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    with coturn_running(cfg, accepted(project), project / "c1") as server:
        log = server.log_text()
    assert "Version Coturn-4.6" in log
    for marker in BAD_CONFIG_MARKERS:
        assert marker not in log, f"coturn complained: {marker}"


async def test_relay_round_trip_with_cli_issued_credentials(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    username, password = issue(project)
    with coturn_running(cfg, accepted(project), project / "c1") as server:
        assert await turnclient.round_trip(server.port, username, password) == b"hello-from-1"


async def test_expired_and_wrong_secret_get_401(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    ring = keyring.load(cfg.secrets_path)
    expired = credentials.issue("alice", ring.primary.value, int(time.time()) - 3600, 60)
    forged = credentials.issue("alice", "not-the-secret", int(time.time()), 600)
    with coturn_running(cfg, ring.accepted, project / "c1") as server:
        assert await turnclient.allocation_error(server.port, expired.username, expired.password) == 401
        assert await turnclient.allocation_error(server.port, forged.username, forged.password) == 401


async def test_rotate_keeps_old_credentials_until_prune(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    old_user, old_pass = issue(project)
    assert turnkit(project, "secret", "rotate").returncode == 0
    new_user, new_pass = issue(project)
    assert len(accepted(project)) == 2
    with coturn_running(cfg, accepted(project), project / "c1") as server:
        assert await turnclient.allocation_error(server.port, old_user, old_pass) is None
        assert await turnclient.allocation_error(server.port, new_user, new_pass) is None
    assert turnkit(project, "secret", "prune", "--grace", "0").returncode == 0
    assert len(accepted(project)) == 1
    with coturn_running(cfg, accepted(project), project / "c2") as server:
        assert await turnclient.allocation_error(server.port, old_user, old_pass) == 401
        assert await turnclient.allocation_error(server.port, new_user, new_pass) is None


async def test_hardened_config_refuses_loopback_peer(tmp_path: Path) -> None:
    cfg = local_config(tmp_path, allow_loopback_peers=False)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    with coturn_running(cfg, ["k1"], tmp_path / "c") as server:
        assert "allow-loopback-peers" not in server.conf.read_text()
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "127.0.0.1") == 403
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "10.1.2.3") == 403


async def test_test_only_switch_allows_loopback_peer(tmp_path: Path) -> None:
    cfg = local_config(tmp_path, allow_loopback_peers=True)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    with coturn_running(cfg, ["k1"], tmp_path / "c") as server:
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "127.0.0.1") is None
        # Every other special-purpose range stays denied even in the local region.
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "10.1.2.3") == 403


#: RFC 6156 §4.1.1 REQUESTED-ADDRESS-FAMILY, which aioice lacks: first byte 0x01 IPv4, 0x02 IPv6.
_FAMILY_ATTRIBUTE = (0x0017, "REQUESTED-ADDRESS-FAMILY", stun.pack_unsigned, stun.unpack_unsigned)
stun.ATTRIBUTES_BY_NAME.setdefault(_FAMILY_ATTRIBUTE[1], _FAMILY_ATTRIBUTE)
stun.ATTRIBUTES_BY_TYPE.setdefault(_FAMILY_ATTRIBUTE[0], _FAMILY_ATTRIBUTE)


class _FamilyClient(turn.TurnClientUdpProtocol):
    """A TURN client that asks for a relayed address of one family (no refresh: the test is short)."""

    family = 4

    async def connect(self) -> tuple[str, int]:
        request = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
        request.attributes["LIFETIME"] = self.lifetime
        request.attributes["REQUESTED-TRANSPORT"] = turn.UDP_TRANSPORT
        request.attributes["REQUESTED-ADDRESS-FAMILY"] = (1 if self.family == 4 else 2) << 24
        response, _ = await self.request_with_retry(request)
        self.relayed_address = response.attributes["XOR-RELAYED-ADDRESS"]
        return self.relayed_address


async def permission_errors(
    port: int, username: str, password: str, family: int, peers: list[str]
) -> dict[str, int | None]:
    """One allocation of `family` through coturn on [::1]; CreatePermission for each peer (nothing
    is sent to a peer). peer → STUN error code, None when permitted."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: type("C", (_FamilyClient,), {"family": family})(("::1", port), username, password, 600, 500),
        remote_addr=("::1", port),
    )
    out: dict[str, int | None] = {}
    try:
        relayed = await asyncio.wait_for(client.connect(), 10)
        assert ipaddress.ip_address(relayed[0]).version == family
        for peer in peers:
            request = stun.Message(message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST)
            request.attributes["XOR-PEER-ADDRESS"] = (peer, 9)
            try:
                await asyncio.wait_for(client.request_with_retry(request), 10)
                out[peer] = None
            except stun.TransactionFailed as exc:
                out[peer] = turnclient.error_code(exc)
    finally:
        transport.close()
    return out


#: The issue's examples: IPv4 loopback and cloud metadata hidden in IPv6 forms.
EMBEDDED_IPV4 = [
    "::127.0.0.1", "::169.254.169.254", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::",
    "2002:a9fe:a9fe::", "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "::1", "::",
]  # fmt: skip
#: Global unicast addresses a relay may reach (CreatePermission only: no packet goes to them).
PERMITTED = {4: ["1.1.1.1"], 6: ["2606:4700:4700::1111", "2a00:1450:4001::1"]}


def representatives(family: int) -> list[str]:
    """First, middle and last address of every denied range of `family`."""
    out = []
    for cidr in render.DENIED_PEER_NETWORKS:
        net = ipaddress.ip_network(cidr)
        if net.version == family:
            out += [str(net[0]), str(net[net.num_addresses // 2]), str(net[-1])]
    return out


@pytest.mark.parametrize("family", [6, 4])
async def test_ipv6_loopback_relay_denies_every_special_purpose_range(tmp_path: Path, family: int) -> None:
    """coturn on listening-ip=::1 / relay-ip=::1 (and 127.0.0.1 for IPv4 allocations), production deny list."""
    cfg = local_config(tmp_path, allow_loopback_peers=False)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    extra = {"coturn_listening_ips": ["::1", "127.0.0.1"], "coturn_relay_ips": ["::1", "127.0.0.1"]}
    denied = representatives(family) + (EMBEDDED_IPV4 if family == 6 else ["169.254.169.254"])
    with coturn_running(cfg, ["k1"], tmp_path / "c", extra=extra) as server:
        conf = server.conf.read_text().splitlines()
        assert "listening-ip=::1" in conf and "relay-ip=::1" in conf
        assert not [line for line in conf if line == "denied-peer-ip=::" or line.startswith("denied-peer-ip=::-")]
        result = await permission_errors(server.port, cred.username, cred.password, family, denied + PERMITTED[family])
    assert {peer: code for peer, code in result.items() if peer in denied and code != 403} == {}
    assert {peer: result[peer] for peer in PERMITTED[family]} == dict.fromkeys(PERMITTED[family])


@pytest.mark.parametrize(("ranges", "family"), [(["::"], 6), (["::-::ffff:ffff"], 4)], ids=["lone", "range"])
async def test_unspecified_bound_denies_every_peer_on_coturn_4_6_1(
    tmp_path: Path, ranges: list[str], family: int
) -> None:
    """Why `peer_ranges` never uses `::` as a bound: on 4.6.1 it is open-ended and blocks global peers."""
    cfg = local_config(tmp_path, allow_loopback_peers=False)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    extra = {"coturn_listening_ips": ["::1", "127.0.0.1"], "coturn_relay_ips": ["::1", "127.0.0.1"],
             "coturn_denied_peer_ranges": ranges}  # fmt: skip
    with coturn_running(cfg, ["k1"], tmp_path / "c", extra=extra) as server:
        result = await permission_errors(server.port, cred.username, cred.password, family, PERMITTED[family])
    assert result == dict.fromkeys(PERMITTED[family], 403)
    assert render.peer_ranges(["::/128"]) == [] and render.peer_ranges(["::/96"])[:3] == ["::1", "::2-::3", "::4-::7"]


async def test_local_region_reaches_ipv6_loopback_but_no_other_special_range(tmp_path: Path) -> None:
    cfg = local_config(tmp_path, allow_loopback_peers=True)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    extra = {"coturn_listening_ips": ["::1", "127.0.0.1"], "coturn_relay_ips": ["::1", "127.0.0.1"]}
    with coturn_running(cfg, ["k1"], tmp_path / "c", extra=extra) as server:
        conf = server.conf.read_text().splitlines()
        assert "denied-peer-ip=::2-::3" in conf and "denied-peer-ip=::1" not in conf and "denied-peer-ip=::" not in conf
        result = await permission_errors(
            server.port, cred.username, cred.password, 6, ["::1", "::2", "::127.0.0.1", "::ffff:127.0.0.1", "fe80::1"]
        )
    assert result == {"::1": None, "::2": 403, "::127.0.0.1": 403, "::ffff:127.0.0.1": 403, "fe80::1": 403}
