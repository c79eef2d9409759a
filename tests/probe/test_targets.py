"""Targets: ICE URLs and configured nodes become endpoints; the plan table picks checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import daemons
from turnkit.errors import InputError
from turnkit.nodes import region_nodes
from turnkit.probe import runner, targets
from turnkit.probe.checks import FORBIDDEN_PEERS, peers_for
from turnkit.probe.result import Endpoint, Transport


@pytest.mark.parametrize(
    ("url", "host", "port", "transport", "scheme"),
    [
        ("turn:turn-1.eu.example.test:3478?transport=udp", "turn-1.eu.example.test", 3478, Transport.UDP, "turn"),
        ("turn:198.51.100.7?transport=tcp", "198.51.100.7", 3478, Transport.TCP, "turn"),
        ("turns:turn.example.test:443?transport=tcp", "turn.example.test", 443, Transport.TLS, "turns"),
        ("turns:turn.example.test", "turn.example.test", 5349, Transport.TLS, "turns"),
        ("stun:[::1]:3479", "::1", 3479, Transport.UDP, "stun"),
    ],
)
def test_parse_url(url: str, host: str, port: int, transport: Transport, scheme: str) -> None:
    ep = targets.parse_url(url)
    assert (ep.host, ep.port, ep.transport) == (host, port, transport)
    assert ep.scheme == ("stun" if scheme == "stun" else "turn")
    assert ep.node == (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") and ep.region == ""
    assert targets.parse_url(ep.url) == ep  # round-trips


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://turn.example.test", "url `http://turn.example.test`: expected stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]"),
        ("turn:host:99999", "url `turn:host:99999`: port must be 1..65535, got '99999'"),
        ("turn:host:34x", "url `turn:host:34x`: port must be 1..65535, got '34x'"),
        ("turn:host:3478?transport=sctp", "url `turn:host:3478?transport=sctp`: query must be transport=udp|tcp, got 'transport=sctp'"),
        ("turns:host?transport=udp", "url `turns:host?transport=udp`: query must be transport=tcp, got 'transport=udp'"),
    ],
)  # fmt: skip
def test_bad_urls_are_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        targets.parse_url(url)
    assert str(info.value) == message


def test_loopback_url_only_tests_loopback_peers() -> None:
    assert targets.parse_url("turn:127.0.0.1:3478").loopback_only
    assert not targets.parse_url("turn:turn.example.test:3478").loopback_only


def test_node_endpoints_use_configured_ports(tmp_path: Path) -> None:
    cfg = daemons.local_config(tmp_path, toml="[ports]\nlistening = 3479\ntls = 5350\n")
    eps = targets.node_endpoints(cfg, region_nodes(cfg, "local"))
    assert [(e.node, e.port, e.transport) for e in eps] == [
        ("turn-1", 3479, Transport.UDP),
        ("turn-1", 3479, Transport.TCP),
        ("turn-1", 5350, Transport.TLS),
    ]
    assert all(e.loopback_only and e.loopback_allowed and e.expected_ip == "127.0.0.1" for e in eps)


def test_label_gives_urls_the_configured_node(tmp_path: Path) -> None:
    cfg = daemons.local_config(tmp_path, allow_loopback_peers=False)
    nodes = {n.hostname: n for n in region_nodes(cfg, "local")}
    [ep, other] = targets.label(
        [targets.parse_url("turn:127.0.0.1:3478"), targets.parse_url("stun:198.51.100.9")], cfg, nodes
    )
    assert (ep.region, ep.node, ep.loopback_only, ep.loopback_allowed) == ("local", "turn-1", True, False)
    assert (other.region, other.node) == ("", "198.51.100.9:3478")


def test_peer_policy() -> None:
    remote = Endpoint("eu", "turn-1", "turn.example.test", 3478, Transport.UDP)
    assert peers_for(remote, FORBIDDEN_PEERS) == (list(FORBIDDEN_PEERS), [])
    hardened_local = Endpoint("local", "turn-1", "127.0.0.1", 3478, Transport.UDP, loopback_only=True)
    assert peers_for(hardened_local, FORBIDDEN_PEERS) == (
        ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"],
        [],
    )
    dev_local = Endpoint("local", "turn-1", "127.0.0.1", 3478, Transport.UDP, loopback_only=True, loopback_allowed=True)
    assert peers_for(dev_local, FORBIDDEN_PEERS) == ([], ["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"])


def test_forbidden_set_covers_the_pentest_list() -> None:
    for peer in (
        "0.0.0.0",
        "169.254.169.254",
        "10.255.255.255",
        "172.31.255.255",
        "100.64.0.0",
        "198.19.255.255",
        "255.255.255.255",
        "::ffff:127.0.0.1",
    ):
        assert peer in FORBIDDEN_PEERS


def test_plan_runs_node_checks_once_over_udp() -> None:
    eps = [targets.parse_url(u) for u in ("turn:h?transport=udp", "turn:h?transport=tcp", "turns:h", "stun:other")]
    pairs = [(e.transport.value, e.scheme, c) for e, c in runner.plan(eps)]
    assert [c for t, s, c in pairs if t == "udp" and s == "turn"] == [
        "stun",
        "unauth",
        "allocate",
        "relay",
        "hardening",
        "expired",
    ]
    assert [c for t, s, c in pairs if t == "tcp"] == ["stun", "allocate", "relay"]
    assert [c for t, s, c in pairs if t == "tls"] == ["allocate", "relay"]
    assert [c for t, s, c in pairs if s == "stun"] == ["stun"]
    assert [c for _, _, c in pairs if c == "relay"] == ["relay"] * 3
    assert {c for _, _, c in ((e.transport, e.scheme, c) for e, c in runner.plan(eps, only=["relay"]))} == {"relay"}


def test_ice_server_urls() -> None:
    doc = {"iceServers": [{"urls": ["stun:h:3478"]}, {"urls": "turn:h:3478", "username": "u", "credential": "p"}]}
    assert targets.ice_server_urls(doc) == [("stun:h:3478", None, None), ("turn:h:3478", "u", "p")]
    with pytest.raises(InputError, match="signaling answer: no `iceServers` list"):
        targets.ice_server_urls({"servers": []})


def test_plan_runs_a_check_once_per_server_and_transport() -> None:
    eps = [targets.parse_url(u) for u in ("stun:h:3478", "turn:h:3478?transport=udp", "turn:h:3479?transport=udp")]
    stun_runs = [(e.port, e.scheme) for e, c in runner.plan(eps) if c == "stun"]
    assert stun_runs == [(3478, "stun"), (3479, "turn")]
