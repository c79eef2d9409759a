"""A STUN/TURN client session over UDP, TCP or TLS, built on aioice's TURN client protocols.

aioice's `create_turn_endpoint` hides the inner protocol, which the probes need for requests
aioice has no API for (CreatePermission, RFC 8656 §9), so sessions drive the protocol directly.
Every session must be closed (`await session.close()`), which deletes the allocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aioice import stun, turn
from cryptography import x509

from turnkit.probe.result import Credential, Failure, Transport

T = TypeVar("T")
Address = tuple[str, int]

#: How long to wait for the allocation to be deleted when closing (best effort). Generous: a
#: deletion cut short leaves the allocation counting against coturn's user-quota for its lifetime.
CLOSE_TIMEOUT = 3.0


class _Watched:
    """Mixin: surface ICMP errors and lost connections as a future a request can race against."""

    lost: asyncio.Future[Exception]

    def _watch(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def _fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class _UdpClient(_Watched, turn.TurnClientUdpProtocol):
    def __init__(self, server: Address, cred: Credential | None) -> None:
        turn.TurnClientUdpProtocol.__init__(
            self, server, cred.username if cred else None, cred.password if cred else None, 600, 500
        )
        self._watch()

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable arrives here as ConnectionRefusedError (nobody listens)."""
        self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail(exc or ConnectionResetError("socket closed"))


class _TcpClient(_Watched, turn.TurnClientTcpProtocol):
    def __init__(self, server: Address, cred: Credential | None) -> None:
        turn.TurnClientTcpProtocol.__init__(
            self, server, cred.username if cred else None, cred.password if cred else None, 600, 500
        )
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail(exc or ConnectionResetError("connection closed by server"))


_Client = _UdpClient | _TcpClient


@dataclass
class Session:
    """An open control connection to one TURN server, with at most one allocation."""

    protocol: _Client
    transport: asyncio.BaseTransport
    peer_cert: bytes | None = None

    async def _race(self, coro: Awaitable[T]) -> T:
        """Await `coro` unless the connection fails first (refused, reset), which raises that error."""
        task = asyncio.ensure_future(coro)
        try:
            waiters: list[asyncio.Future[Any]] = [task, self.protocol.lost]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            raise self.protocol.lost.result()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def request(self, message: stun.Message) -> stun.Message:
        """One transaction (with the 401 realm/nonce retry when credentials are set)."""
        response, _ = await self._race(self.protocol.request_with_retry(message))
        return response

    async def binding(self) -> Address:
        """STUN Binding (RFC 8489 §5): the server-reflexive address."""
        response = await self.request(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
        mapped: Address = response.attributes["XOR-MAPPED-ADDRESS"]
        return mapped

    async def allocate(self) -> tuple[Address, Address]:
        """TURN Allocate (RFC 8656 §7): (relayed address, mapped address)."""
        relayed = await self._race(self.protocol.connect())
        assert self.protocol.mapped_address is not None
        return relayed, self.protocol.mapped_address

    async def create_permission(self, peer_ip: str) -> None:
        """CreatePermission (RFC 8656 §9) for one peer; sends nothing to the peer itself."""
        request = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
        request.attributes["XOR-PEER-ADDRESS"] = (peer_ip, 9)
        await self.request(request)

    async def send(self, data: bytes, peer: Address) -> None:
        """Send through the relay on a channel (ChannelBind on first use, RFC 8656 §12)."""
        await self._race(self.protocol.send_data(data, peer))

    def on_data(self, callback: Callable[[bytes, Address], None]) -> None:
        """Deliver relayed data (ChannelData) to `callback`."""
        self.protocol.receiver = _Receiver(callback)

    async def close(self) -> None:
        """Delete the allocation (best effort, bounded) and close the connection."""
        try:
            if self.protocol.refresh_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.protocol.delete(), CLOSE_TIMEOUT)
        finally:
            self.transport.close()


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, callback: Callable[[bytes, Address], None]) -> None:
        self.callback = callback

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.callback(data, addr)


async def resolve(host: str, port: int, transport: Transport) -> str:
    """The first address of `host` (raises socket.gaierror on DNS failure)."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    kind = socket.SOCK_DGRAM if transport is Transport.UDP else socket.SOCK_STREAM
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=kind)
    return str(infos[0][4][0])


async def open_session(
    host: str,
    port: int,
    transport: Transport,
    cred: Credential | None,
    ssl_context: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> Session:
    """Connect to a STUN/TURN server; TLS is verified by `ssl_context` against `server_name`."""
    loop = asyncio.get_running_loop()
    ip = await resolve(host, port, transport)
    server = (ip, port)
    if transport is Transport.UDP:
        udp, uproto = await loop.create_datagram_endpoint(lambda: _UdpClient(server, cred), remote_addr=server)
        return Session(uproto, udp)
    tls = transport is Transport.TLS
    if tls and ssl_context is None:
        ssl_context = ssl.create_default_context()
    tcp, tproto = await loop.create_connection(
        lambda: _TcpClient(server, cred),
        host=ip,
        port=port,
        ssl=ssl_context if tls else None,
        server_hostname=(server_name or host) if tls else None,
    )
    cert = None
    if tls:
        ssl_object = tcp.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    return Session(tproto, tcp, cert)


async def fetch_certificate(host: str, port: int, server_name: str | None = None) -> bytes | None:
    """The server's certificate without verification (to report the expiry of a rejected one)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ip = await resolve(host, port, Transport.TLS)
    _, writer = await asyncio.open_connection(ip, port, ssl=ctx, server_hostname=server_name or host)
    try:
        ssl_object: Any = writer.get_extra_info("ssl_object")
        cert: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        return cert
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def cert_days_left(der: bytes, now: float) -> float:
    """Days from `now` (unix seconds) until the certificate's notAfter (negative once expired)."""
    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    return round((not_after - now) / 86400, 2)


def error_code(exc: stun.TransactionFailed) -> tuple[int, str]:
    """The ERROR-CODE attribute; the reason phrase loses control characters (coturn's 437 ends in NUL)."""
    code, text = exc.response.attributes.get("ERROR-CODE", (0, "no error code"))
    return int(code), "".join(ch for ch in str(text) if ch.isprintable()).strip()


def _stun_failure(exc: BaseException) -> tuple[Failure, str]:
    assert isinstance(exc, stun.TransactionFailed)
    code, text = error_code(exc)
    kind = {401: Failure.UNAUTHORIZED, 403: Failure.FORBIDDEN}.get(code, Failure.OTHER)
    return kind, f"{code} {text}"


def _tls_failure(exc: BaseException) -> tuple[Failure, str]:
    message = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    return Failure.TLS, f"TLS: {message}"


#: Exception type → (failure kind, reason); looked up along the exception's MRO, most specific first.
_CLASSIFY: dict[type[BaseException], Callable[[BaseException], tuple[Failure, str]]] = {
    stun.TransactionFailed: _stun_failure,
    stun.TransactionTimeout: lambda e: (Failure.TIMEOUT, "no response (STUN retransmissions exhausted)"),
    TimeoutError: lambda e: (Failure.TIMEOUT, "timed out"),
    ssl.SSLError: _tls_failure,
    ssl.CertificateError: _tls_failure,
    socket.gaierror: lambda e: (Failure.DNS, f"DNS: {getattr(e, 'strerror', None) or e}"),
    ConnectionRefusedError: lambda e: (Failure.REFUSED, "connection refused"),
    ConnectionResetError: lambda e: (Failure.OTHER, f"connection lost: {e}"),
    OSError: lambda e: (Failure.OTHER, f"{getattr(e, 'strerror', None) or e}"),
}


def classify(exc: BaseException) -> tuple[Failure, str]:
    """Map an exception from a probe step to a failure kind and a one-line reason."""
    for cls in type(exc).__mro__:
        if cls in _CLASSIFY:
            return _CLASSIFY[cls](exc)
    return Failure.OTHER, f"{type(exc).__name__}: {exc}"
