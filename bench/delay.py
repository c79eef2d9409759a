"""A userspace stand-in for `tc netem delay`, for kernels without netem: forwards UDP and TCP, each way late.

    python -m bench.delay --delay-ms 25 FRONT_IP=BACK_IP ... --udp PORT ... --tcp PORT ...

For every FRONT_IP=BACK_IP pair and port it listens on FRONT_IP:PORT and forwards to BACK_IP:PORT; every datagram
and every chunk of a TCP stream is held back `--delay-ms` in each direction, so a round trip gains twice that.
UDP: one upstream socket per client address (the server sees distinct flows). TCP: order is kept per direction.
The kernel completes a TCP handshake before the proxy sees it: connect() returns at once, but the client's first
bytes reach the server only after the handshake's round trip plus the one-way delay, as over a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import socket
import sys
from collections.abc import Sequence
from typing import cast

import uvloop

Address = tuple[str, int]


class UdpFront(asyncio.DatagramProtocol):
    def __init__(self, back: Address, delay: float) -> None:
        self.back = back
        self.delay = delay
        self.flows: dict[Address, socket.socket] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's UDPTransport is not a subclass

    def datagram_received(self, data: bytes, client: Address) -> None:
        loop = asyncio.get_running_loop()
        upstream = self.flows.get(client)
        if upstream is None:
            upstream = self.flows[client] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.setblocking(False)
            upstream.connect(self.back)
            loop.add_reader(upstream.fileno(), self._from_back, upstream, client)
        loop.call_later(self.delay, _quiet_send, upstream, data)

    def _from_back(self, upstream: socket.socket, client: Address) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = upstream.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if self.transport is not None:
                loop.call_later(self.delay, self.transport.sendto, data, client)


def _quiet_send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.send(data)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader → writer, each chunk `delay` seconds late, in order; EOF is passed on late too."""
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = asyncio.Event()

    async def deliver() -> None:
        while True:
            await ready.wait()
            while queue:
                due, data = queue[0]
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                queue.popleft()
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):  # the other side may be gone already
                        writer.write_eof()
                    return
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
            ready.clear()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.append((loop.time() + delay, data))
            ready.set()
            if not data:
                break
        await sender
    except (OSError, RuntimeError):
        sender.cancel()


def tcp_handler(back: Address, delay: float) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The kernel has already answered the SYN; the client's first bytes wait here in its socket buffer
            # for the handshake's round trip, then take the one-way delay: its first reply comes 2 RTT after
            # connect(), as over a real network (only connect() itself returns early).
            await asyncio.sleep(2 * delay)
            up_reader, up_writer = await asyncio.open_connection(*back)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))
        finally:
            for w in (writer, up_writer):
                w.close()

    return handle


async def serve(pairs: Sequence[tuple[str, str]], udp: Sequence[int], tcp: Sequence[int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for front, back in pairs:
        for port in udp:
            await loop.create_datagram_endpoint(
                lambda b=back, p=port: UdpFront((b, p), delay), local_addr=(front, port)
            )
        for port in tcp:
            servers.append(await asyncio.start_server(tcp_handler((back, port), delay), front, port))  # type: ignore[arg-type]
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.delay", description=__doc__)
    p.add_argument("pairs", nargs="+", help="FRONT_IP=BACK_IP")
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--udp", type=int, nargs="*", default=[])
    p.add_argument("--tcp", type=int, nargs="*", default=[])
    args = p.parse_args(argv)
    pairs = [tuple(pair.split("=", 1)) for pair in args.pairs]
    if any(len(pair) != 2 for pair in pairs):
        p.error("pairs are FRONT_IP=BACK_IP")
    uvloop.run(serve([(a, b) for a, b in pairs], args.udp, args.tcp, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
