"""Minimal aioice TURN client helpers for tests of the rendered coturn config."""

from __future__ import annotations

import asyncio
from typing import Any

import aioice.stun as stun
import aioice.turn as turn


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))


async def allocate(port: int, username: str, password: str, transport: str = "udp") -> tuple[Any, Inbox]:
    return await asyncio.wait_for(
        turn.create_turn_endpoint(
            Inbox, server_addr=("127.0.0.1", port), username=username, password=password, transport=transport
        ),
        10,
    )


def error_code(exc: BaseException) -> int | None:
    if isinstance(exc, stun.TransactionFailed):
        return int(exc.response.attributes["ERROR-CODE"][0])
    return None


async def allocation_error(port: int, username: str, password: str) -> int | None:
    """The STUN error code an Allocate gets, or None when it succeeds."""
    try:
        transport, _ = await allocate(port, username, password)
    except stun.TransactionFailed as exc:
        return error_code(exc)
    transport.close()
    return None


async def round_trip(port: int, username: str, password: str) -> bytes:
    """Two allocations send to each other's relayed address; return what B received."""
    t1, _ = await allocate(port, username, password)
    t2, p2 = await allocate(port, username, password)
    try:
        a1, a2 = t1.get_extra_info("sockname"), t2.get_extra_info("sockname")
        t2.sendto(b"hello-from-2", a1)  # installs B's permission for A (ChannelBind)
        await asyncio.sleep(0.2)
        t1.sendto(b"hello-from-1", a2)
        data, _ = await asyncio.wait_for(p2.queue.get(), 5)
        return data
    finally:
        t1.close()
        t2.close()


async def create_permission_error(port: int, username: str, password: str, peer: str) -> int | None:
    """CreatePermission for `peer` (RFC 8656 §9): sends nothing to the peer; None means allowed."""
    transport, _ = await allocate(port, username, password)
    inner = transport._TurnTransport__inner_protocol
    request = stun.Message(message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST)
    request.attributes["XOR-PEER-ADDRESS"] = (peer, 9)
    try:
        await inner.request_with_retry(request)
    except stun.TransactionFailed as exc:
        return error_code(exc)
    finally:
        transport.close()
    return None
