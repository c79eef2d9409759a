"""Checks against a real coturn: all pass, then one breakage at a time fails the right check for the right reason."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from pathlib import Path

import pytest

from tests import daemons
from tests.helpers.probe import Project, endpoints, minted
from turnkit import pki
from turnkit.probe import runner
from turnkit.probe.checks import Options
from turnkit.probe.result import CheckResult, Endpoint, Failure, Status, Transport

LOOPBACK_PEERS = ("127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1")


def by_key(results: list[CheckResult]) -> dict[tuple[str, str], CheckResult]:
    return {(r.check, r.transport.value): r for r in results}


async def probe(server: daemons.Coturn, secret: str, loopback_allowed: bool = True, **kw: object) -> dict:
    options = Options(timeout=10.0, forbidden_peers=LOOPBACK_PEERS, ca_file=str(server.certs.ca))
    options = Options(**{**options.__dict__, **kw})  # type: ignore[arg-type]
    return by_key(await runner.run(endpoints(server, loopback_allowed), minted(secret), options))


async def test_all_checks_pass_over_udp_tcp_tls(project: Project, coturn: daemons.Coturn) -> None:
    results = await probe(coturn, project.secret)
    assert sorted(results) == sorted(
        [
            ("stun", "udp"), ("unauth", "udp"), ("allocate", "udp"), ("relay", "udp"), ("hardening", "udp"),
            ("expired", "udp"), ("stun", "tcp"), ("allocate", "tcp"), ("relay", "tcp"), ("allocate", "tls"),
            ("relay", "tls"),
        ]
    )  # fmt: skip
    failed = {k: r.reason for k, r in results.items() if not r.ok}
    assert failed == {}
    # The local region relays to loopback on purpose: the hardening check says so instead of failing.
    hardening = results[("hardening", "udp")]
    assert hardening.status is Status.SKIP
    assert (
        hardening.reason
        == "local region allows loopback peers (skipped 127.0.0.1, 127.255.255.254, ::1, ::ffff:127.0.0.1)"
    )
    assert {k for k, r in results.items() if r.status is Status.PASS} == set(results) - {("hardening", "udp")}
    for transport in ("udp", "tcp", "tls"):
        relay = results[("relay", transport)].details
        assert relay["loss"] == 0.0 and relay["packets"] == 10
        assert 0 < relay["rtt_p50"] <= relay["rtt_max"]
        assert relay["relayed"].startswith("127.0.0.1:") and relay["relayed_public"] is False
    assert results[("relay", "udp")].details["relayed_matches_external"] is True
    assert results[("stun", "udp")].details["reflexive"].startswith("127.0.0.1:")
    assert results[("unauth", "udp")].details == {"code": 401}
    assert results[("expired", "udp")].details == {"code": 401}
    assert 89 < results[("allocate", "tls")].details["cert_days"] <= 90


async def test_wrong_secret_fails_allocation_with_401(project: Project, coturn: daemons.Coturn) -> None:
    results = await probe(coturn, "not-the-secret")
    for key in [("allocate", "udp"), ("allocate", "tcp"), ("allocate", "tls"), ("relay", "udp"), ("relay", "tls")]:
        assert results[key].failure is Failure.UNAUTHORIZED, key
        assert results[key].reason == "allocate: 401 Unauthorized", key
    # What needs no credential still works: the failure points at the secret, not the node.
    assert results[("stun", "udp")].ok and results[("unauth", "udp")].ok


async def test_stopped_coturn_is_refused(project: Project, coturn: daemons.Coturn) -> None:
    coturn.stop()
    results = await probe(coturn, project.secret)
    assert results[("stun", "udp")].failure is Failure.REFUSED  # ICMP port unreachable, no need to wait
    assert results[("stun", "udp")].reason == "binding 1: connection refused"
    assert results[("allocate", "tcp")].failure is Failure.REFUSED
    assert results[("allocate", "tcp")].reason == "connect: connection refused"
    assert results[("allocate", "tls")].failure is Failure.REFUSED
    assert all(not r.ok for k, r in results.items() if k != ("hardening", "udp"))


async def test_silent_server_times_out_naming_the_step(project: Project) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:  # takes the packets, never answers
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        ep = Endpoint("local", "turn-1", "127.0.0.1", port, Transport.UDP, loopback_only=True)
        [result] = await runner.run([ep], minted(project.secret), Options(timeout=1.0), only=["stun"])
    assert result.failure is Failure.TIMEOUT
    assert result.reason == "binding 1: no answer within 1s"


async def test_expired_certificate_fails_tls(project: Project) -> None:
    server = project.start(cert_days=0)
    try:
        results = await probe(server, project.secret)
    finally:
        server.stop()
    tls = results[("allocate", "tls")]
    assert tls.failure is Failure.TLS
    assert tls.reason == "TLS: certificate has expired"
    assert tls.details["cert_days"] <= 0
    assert results[("allocate", "udp")].ok and results[("allocate", "tcp")].ok


async def test_certificate_from_another_ca_fails_tls(project: Project, coturn: daemons.Coturn, tmp_path: Path) -> None:
    other = pki.make_ca_and_cert(
        tmp_path / "other", ["127.0.0.1"], dt.datetime.now(dt.UTC), ca_name="someone else's CA"
    )
    results = await probe(coturn, project.secret, ca_file=str(other.ca))
    tls = results[("allocate", "tls")]
    assert tls.failure is Failure.TLS
    assert tls.reason == "TLS: self-signed certificate in certificate chain"  # the chain ends in a CA we do not trust
    assert 89 < tls.details["cert_days"] <= 90  # still reported, for the expiry alert


async def test_loopback_peers_allowed_fails_hardening(project: Project, coturn: daemons.Coturn) -> None:
    """A node that should be hardened but relays to loopback: the hardening check must fail."""
    results = await probe(coturn, project.secret, loopback_allowed=False)
    hardening = results[("hardening", "udp")]
    assert hardening.failure is Failure.ALLOWED
    assert hardening.reason == "relay allowed forbidden peer(s): 127.0.0.1, 127.255.255.254"
    assert hardening.details["skipped"] == ["::1", "::ffff:127.0.0.1"]  # IPv6 peers only on IPv6 allocations


async def test_hardened_coturn_refuses_loopback_peers_with_403(project: Project) -> None:
    server = project.start(loopback=False)
    try:
        results = await probe(server, project.secret, loopback_allowed=False)
    finally:
        server.stop()
    hardening = results[("hardening", "udp")]
    assert hardening.status is Status.PASS
    assert hardening.details["refused"] == ["127.0.0.1", "127.255.255.254"]
    # ...which is why a hardened node on loopback cannot relay between its own relays.
    assert results[("relay", "udp")].failure is Failure.FORBIDDEN
    assert results[("relay", "udp")].reason == "channel bind: 403 Forbidden IP"


async def test_relay_port_range_in_use_fails_allocation(project: Project) -> None:
    """The whole relay range (one port) is taken by another socket: coturn cannot open a relay.

    Only allocations are probed: coturn retries the bind for a while per failed allocation, and
    a burst of them (the relay check opens two each) can delay its answers past the timeout.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", daemons.free_port(socket.SOCK_DGRAM)))
        port = squatter.getsockname()[1]
        server = project.start(extra={"coturn_min_port": port, "coturn_max_port": port})
        try:
            options = Options(timeout=20.0, ca_file=str(server.certs.ca))
            results = by_key(
                await runner.run(endpoints(server), minted(project.secret), options, only=["stun", "allocate"])
            )
        finally:
            server.stop()
    for transport in ("udp", "tcp", "tls"):
        assert results[("allocate", transport)].failure is Failure.OTHER
        assert results[("allocate", transport)].reason == "allocate: 508 Cannot create socket"
    assert results[("stun", "udp")].ok and results[("stun", "tcp")].ok


@pytest.mark.parametrize("packets", [3])
async def test_packets_option_sets_round_trip_count(project: Project, coturn: daemons.Coturn, packets: int) -> None:
    results = await probe(coturn, project.secret, packets=packets)
    assert results[("relay", "udp")].details["packets"] == packets


async def test_relayed_address_not_the_nodes_public_ip_fails_relay(project: Project, coturn: daemons.Coturn) -> None:
    """E.g. a cloud node whose coturn lacks `external-ip`: browsers would get an unreachable relay address."""
    [udp, *_] = endpoints(coturn)
    misconfigured = dataclasses.replace(udp, expected_ip="127.0.0.2")
    [allocate, relay] = await runner.run(
        [misconfigured], minted(project.secret), Options(timeout=10.0), only=["allocate", "relay"]
    )
    assert allocate.ok and allocate.details["relayed_matches_external"] is False
    assert relay.failure is Failure.OTHER
    assert relay.reason == f"relayed address {relay.details['relayed']} is not the node's public IP 127.0.0.2"
    assert relay.details["loss"] == 0.0  # the relay itself works; the address it advertises is wrong


def test_error_reason_loses_control_characters() -> None:
    """coturn 4.6.1 ends its 437 reason phrase with a NUL; reports must not carry it."""
    import aioice.stun as stun

    from turnkit.probe import client

    response = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.ERROR)
    response.attributes["ERROR-CODE"] = (437, "Mismatched allocation: wrong transaction ID\x00")
    assert client.error_code(stun.TransactionFailed(response)) == (437, "Mismatched allocation: wrong transaction ID")
