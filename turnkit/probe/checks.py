"""The probe checks: one small async function per check kind, each closing what it opens.

A check returns its details on success and raises `CheckFailed` / `CheckSkipped` (or lets a
network error escape, which the runner classifies). `Probe.at(step)` names the step in progress
so every failure says which step failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aioice import stun

from turnkit import clock, credentials
from turnkit.probe import client
from turnkit.probe.client import Address, Session
from turnkit.probe.result import CheckFailed, CheckSkipped, Credential, Endpoint, Failure, Transport

#: What the public TURN pentest tools scan for (RFC 6890 special-purpose ranges, cloud metadata,
#: IPv4-mapped loopback for CVE-2026-27624). IPv6 entries are only asked on IPv6 allocations.
FORBIDDEN_PEERS: tuple[str, ...] = (
    "0.0.0.0", "127.0.0.1", "127.255.255.254",
    "10.0.0.0", "10.255.255.255", "172.16.0.0", "172.31.255.255", "192.168.0.0", "192.168.255.255",
    "100.64.0.0", "100.127.255.255", "169.254.169.254", "198.18.0.0", "198.19.255.255",
    "240.0.0.1", "255.255.255.255",
    "::1", "::ffff:127.0.0.1",
)  # fmt: skip

PING = b"turnkit-probe "
PRIME = b"turnkit-prime"


@dataclass(frozen=True)
class Options:
    """Knobs of a probe run; tests narrow `forbidden_peers` to loopback addresses."""

    timeout: float = 5.0
    concurrency: int = 32
    packets: int = 10
    packet_timeout: float = 1.0
    max_loss: float = 0.2
    forbidden_peers: tuple[str, ...] = FORBIDDEN_PEERS
    ca_file: str | None = None


CredentialSource = Callable[[Endpoint, str], Credential | None]

#: Lifetime of the credentials a probe mints for itself (RFC 8656 allocations outlive a run anyway).
CREDENTIAL_TTL = 600


def probe_user(endpoint: Endpoint, check: str) -> str:
    """The TURN REST user id a probe check runs as (coturn logs and quotas see it)."""
    return f"turnkit-probe-{check}-{endpoint.transport.value}"


def minting(secret: str, now: Callable[[], int], user: Callable[[Endpoint, str], str] = probe_user) -> CredentialSource:
    """Mint a fresh TURN REST credential per check and transport from the primary secret, as `user(endpoint, check)`."""

    def source(endpoint: Endpoint, check: str) -> Credential:
        cred = credentials.issue(user(endpoint, check), secret, now(), CREDENTIAL_TTL)
        return Credential(cred.username, cred.password, secret)

    return source


@dataclass
class Probe:
    """Everything one check needs: the endpoint, credentials, TLS context, and the step it is at."""

    endpoint: Endpoint
    check: str
    options: Options
    credential_for: CredentialSource
    ssl_context: ssl.SSLContext | None = None
    step: str = "start"
    sessions: list[Session] = field(default_factory=list)

    def at(self, step: str) -> None:
        self.step = step

    def credential(self) -> Credential | None:
        return self.credential_for(self.endpoint, self.check)

    async def open(self, cred: Credential | None, details: dict[str, Any] | None = None) -> Session:
        """Connect (step `connect`); for TLS record the certificate's days left in `details`."""
        ep = self.endpoint
        self.at("connect")
        try:
            session = await client.open_session(ep.host, ep.port, ep.transport, cred, self.ssl_context, ep.server_name)
        except ssl.SSLCertVerificationError as exc:
            extra: dict[str, Any] = {}
            cert = await _maybe(client.fetch_certificate(ep.host, ep.port, ep.server_name))
            if cert is not None:
                extra["cert_days"] = client.cert_days_left(cert, clock.now())
            raise CheckFailed(Failure.TLS, f"TLS: {exc.verify_message}", **extra) from None
        self.sessions.append(session)
        if session.peer_cert is not None and details is not None:
            details["cert_days"] = client.cert_days_left(session.peer_cert, clock.now())
        return session

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
        self.sessions.clear()


async def _maybe(coro: Awaitable[bytes | None]) -> bytes | None:
    try:
        return await asyncio.wait_for(coro, 2.0)
    except (OSError, TimeoutError):
        return None


def _need_credential(probe: Probe) -> Credential:
    cred = probe.credential()
    if cred is None:
        raise CheckSkipped("no TURN credential for this endpoint")
    return cred


def _addr(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def check_stun(probe: Probe) -> dict[str, Any]:
    """STUN Binding (RFC 8489 §5): the reflexive address and the round-trip time over 3 requests."""
    details: dict[str, Any] = {}
    session = await probe.open(None, details)
    rtts = []
    mapped: Address = ("", 0)
    for i in range(3):
        probe.at(f"binding {i + 1}")
        start = time.perf_counter()
        mapped = await session.binding()
        rtts.append(time.perf_counter() - start)
    return details | {"reflexive": _addr(mapped), "rtt_p50": statistics.median(rtts), "rtt_max": max(rtts)}


async def _allocate_expecting_401(probe: Probe, cred: Credential | None, what: str) -> dict[str, Any]:
    session = await probe.open(cred)
    probe.at(f"allocate {what}")
    try:
        relayed, _ = await session.allocate()
    except stun.TransactionFailed as exc:
        code, text = client.error_code(exc)
        if code == 401:
            return {"code": code}
        raise CheckFailed(Failure.OTHER, f"allocate {what}: expected 401, got {code} {text}") from None
    raise CheckFailed(Failure.ALLOWED, f"allocate {what}: server gave relay {_addr(relayed)} (expected 401)")


async def check_unauth(probe: Probe) -> dict[str, Any]:
    """Allocate without credentials must be refused with 401 (no open relay, RFC 8656 §7.2)."""
    return await _allocate_expecting_401(probe, None, "without credentials")


async def check_expired(probe: Probe) -> dict[str, Any]:
    """A REST credential whose timestamp has passed must be refused with 401."""
    cred = _need_credential(probe)
    if cred.secret is None:
        raise CheckSkipped("no shared secret to mint an expired credential (credentials from signaling)")
    old = credentials.issue("turnkit-probe-expired", cred.secret, clock.now() - 3600, credentials.MIN_TTL)
    return await _allocate_expecting_401(probe, Credential(old.username, old.password), "with expired credential")


def _relayed_details(probe: Probe, relayed: Address) -> dict[str, Any]:
    ip = ipaddress.ip_address(relayed[0])
    expected = probe.endpoint.expected_ip
    return {
        "relayed": _addr(relayed),
        "relayed_public": ip.is_global,
        "relayed_matches_external": None if expected is None else str(ip) == expected,
    }


async def check_allocate(probe: Probe) -> dict[str, Any]:
    """TURN Allocate with a valid credential (RFC 8656 §7); allocation time, relayed address, cert days."""
    details: dict[str, Any] = {}
    session = await probe.open(_need_credential(probe), details)
    probe.at("allocate")
    start = time.perf_counter()
    relayed, mapped = await session.allocate()
    details |= {"allocation_time": time.perf_counter() - start, "mapped": _addr(mapped)}
    return details | _relayed_details(probe, relayed)


async def check_relay(probe: Probe) -> dict[str, Any]:
    """Two allocations echo N packets through each other's relayed addresses; RTT p50/max and loss."""
    details: dict[str, Any] = {}
    cred = _need_credential(probe)
    a = await probe.open(cred, details)
    b = await probe.open(cred)
    probe.at("allocate")
    (relayed_a, _), (relayed_b, _) = await asyncio.gather(a.allocate(), b.allocate())
    details |= _relayed_details(probe, relayed_a)
    waiting: dict[int, asyncio.Future[float]] = {}
    echoes: set[asyncio.Task[None]] = set()

    def at_b(data: bytes, peer: Address) -> None:
        if data.startswith(PING):
            task = asyncio.ensure_future(b.send(data, peer))
            echoes.add(task)
            task.add_done_callback(_echo_done)

    def _echo_done(task: asyncio.Task[None]) -> None:
        echoes.discard(task)
        if not task.cancelled():
            task.exception()  # a failed echo shows up as a lost packet; retrieve it so asyncio stays quiet

    def at_a(data: bytes, peer: Address) -> None:
        if data.startswith(PING):
            fut = waiting.get(int(data[len(PING) :]))
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    a.on_data(at_a)
    b.on_data(at_b)
    # Bind a channel on both sides first: ChannelBind installs the permission (RFC 8656 §12),
    # and aioice only delivers ChannelData (it drops Data indications).
    probe.at("channel bind")
    await b.send(PRIME, relayed_a)
    await a.send(PRIME, relayed_b)
    rtts: list[float] = []
    try:
        for seq in range(probe.options.packets):
            probe.at(f"round trip {seq + 1}/{probe.options.packets}")
            fut = waiting[seq] = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            await a.send(PING + str(seq).encode(), relayed_b)
            with contextlib.suppress(TimeoutError):
                rtts.append(await asyncio.wait_for(fut, probe.options.packet_timeout) - start)
    finally:
        for task in list(echoes):
            task.cancel()
    lost = probe.options.packets - len(rtts)
    loss = lost / probe.options.packets if probe.options.packets else 0.0
    details |= {"packets": probe.options.packets, "loss": loss}
    if rtts:
        details |= {"rtt_p50": statistics.median(rtts), "rtt_max": max(rtts)}
    if loss > probe.options.max_loss:
        kind = Failure.TIMEOUT if not rtts else Failure.OTHER
        raise CheckFailed(kind, f"round trip: {lost}/{probe.options.packets} packets lost", **details)
    if details["relayed_matches_external"] is False:
        raise CheckFailed(
            Failure.OTHER,
            f"relayed address {details['relayed']} is not the node's public IP {probe.endpoint.expected_ip}",
            **details,
        )
    return details


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


def peers_for(endpoint: Endpoint, peers: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(peers to ask for, peers skipped): a `local` region tests loopback only, and skips it when allowed."""
    candidates = [p for p in peers if _is_loopback(p)] if endpoint.loopback_only else list(peers)
    if endpoint.loopback_allowed:
        return [p for p in candidates if not _is_loopback(p)], [p for p in candidates if _is_loopback(p)]
    return candidates, []


async def check_hardening(probe: Probe) -> dict[str, Any]:
    """Each forbidden peer must get 403 to CreatePermission (RFC 8656 §9; nothing reaches the peer)."""
    ask, skipped = peers_for(probe.endpoint, probe.options.forbidden_peers)
    if not ask:
        raise CheckSkipped(f"local region allows loopback peers (skipped {', '.join(skipped) or 'none'})")
    session = await probe.open(_need_credential(probe))
    probe.at("allocate")
    relayed, _ = await session.allocate()
    family = ipaddress.ip_address(relayed[0]).version
    allowed: list[str] = []
    refused: list[str] = []
    other: list[str] = []
    for peer in ask:
        if ipaddress.ip_address(peer).version != family:
            skipped.append(peer)
            continue
        probe.at(f"permission {peer}")
        try:
            await session.create_permission(peer)
            allowed.append(peer)
        except stun.TransactionFailed as exc:
            code, text = client.error_code(exc)
            (refused if code == 403 else other).append(peer if code == 403 else f"{peer} ({code} {text})")
    details = {"refused": refused, "allowed": allowed, "unexpected": other, "skipped": skipped}
    if allowed:
        raise CheckFailed(Failure.ALLOWED, f"relay allowed forbidden peer(s): {', '.join(allowed)}", **details)
    if other:
        raise CheckFailed(Failure.OTHER, f"expected 403 for {', '.join(other)}", **details)
    return details


CheckFn = Callable[[Probe], Awaitable[dict[str, Any]]]

#: Check kinds → functions, in the order results are shown.
CHECKS: dict[str, CheckFn] = {
    "stun": check_stun,
    "unauth": check_unauth,
    "allocate": check_allocate,
    "relay": check_relay,
    "hardening": check_hardening,
    "expired": check_expired,
}

#: Checks that allocate with a credential (the others work without one).
NEEDS_CREDENTIAL = frozenset({"allocate", "relay", "hardening", "expired"})

#: Which checks run on which kind of endpoint (node-level checks once per node, over UDP).
PLAN: dict[tuple[str, Transport], tuple[str, ...]] = {
    ("stun", Transport.UDP): ("stun",),
    ("stun", Transport.TCP): ("stun",),
    ("turn", Transport.UDP): ("stun", "unauth", "allocate", "relay", "hardening", "expired"),
    ("turn", Transport.TCP): ("stun", "allocate", "relay"),
    ("turn", Transport.TLS): ("allocate", "relay"),
}
