"""bench/delay.py, the userspace stand-in for netem: bytes and datagrams arrive intact and in order (no timing asserted)."""

from __future__ import annotations

import asyncio
import socket

from bench import delay
from bench.procs import free_port

FRONT, BACK = "127.0.0.2", "127.0.0.1"


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo " + data, addr)  # type: ignore[attr-defined]


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


async def test_udp_and_tcp_pass_through_in_order() -> None:
    loop = asyncio.get_running_loop()
    udp_port, tcp_port = free_port(), free_port()
    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=(BACK, udp_port))
    server = await asyncio.start_server(_tcp_echo, BACK, tcp_port)
    proxy = asyncio.create_task(delay.serve([(FRONT, BACK)], [udp_port], [tcp_port], 0.01))
    try:
        await asyncio.sleep(0.2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            for n in range(3):
                client.sendto(f"ping {n}".encode(), (FRONT, udp_port))
                data, source = await loop.run_in_executor(None, client.recvfrom, 100)  # the proxy runs in this loop
                assert (data, source) == (f"echo ping {n}".encode(), (FRONT, udp_port))
        reader, writer = await asyncio.open_connection(FRONT, tcp_port)
        chunks = [f"chunk {n};".encode() for n in range(50)]
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), 10)  # until the proxy passes the server's EOF on
        assert received == b"".join(chunks).upper()
        writer.close()
    finally:
        proxy.cancel()
        echo.close()
        server.close()
