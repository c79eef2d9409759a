"""Bounded memory per user: a connection cap per JWT `sub`, one ICE push timer per connection."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.helpers.signaling import Client, StartServer, client, eventually, make_token, serving, write_config

pytestmark = pytest.mark.asyncio

MiB = 1024 * 1024


async def test_connections_per_user_are_capped_with_1008(start_server: StartServer, backend: str | None) -> None:
    async with (
        start_server(backend, signaling={"max_connections_per_user": 2}) as srv,
        srv.client("alice") as a1,
        srv.client("alice") as a2,
    ):
        async with connect(srv.ws_url(make_token("alice"))) as ws:
            third = Client(ws)
            assert await third.closed_code() == 1008
            assert ws.close_reason == "too many connections for this user"
        # the first two are untouched, and other users are not affected
        await a1.send(type="ice-servers")
        await a1.expect("ice-servers")
        await a2.join("r")
        async with srv.client("bob") as b:
            await b.join("r")
            await a2.expect("user-joined")
        assert srv.server.stats.closed["user-limit"] == 1
    # once a connection closes, its slot is free again
    async with (
        start_server(backend, signaling={"max_connections_per_user": 1}) as srv,
        srv.client("carol") as c,
    ):
        await c.ws.close()
        await eventually(lambda: _no_peers(srv.server.hub.peers))
        async with srv.client("carol") as again:
            await again.send(type="ice-servers")
            await again.expect("ice-servers")


async def _no_peers(peers: dict[str, object]) -> bool:
    return not peers


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def gauges(port: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=15) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples if not s.labels}


USERS = 200
BATCH = 50
#: 200 × 5 × 50 = 50 000 requests per flood, each issuing a credential (the old code kept ~10 MiB of timers)
ROUNDS = 5


async def flood(port: int, rounds: int) -> dict[str, float]:
    """USERS connections, each alone in a room, each asking `rounds` × BATCH times for ICE servers and
    re-joining its room once per batch; returns the server's gauges while all are still connected."""

    async def hammer(i: int, c: Client) -> None:
        for _ in range(rounds):
            for _ in range(BATCH - 1):
                await c.send(type="ice-servers")
            await c.send(type="join-room", room=f"room-{i}")
            kinds = [(await c.recv())["type"] for _ in range(BATCH)]
            assert kinds.count("ice-servers") == BATCH - 1 and kinds.count("all-users") == 1, kinds

    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(port, f"user-{i}")) for i in range(USERS)]
        await asyncio.gather(*(c.join(f"room-{i}") for i, c in enumerate(clients)))
        await asyncio.gather(*(hammer(i, c) for i, c in enumerate(clients)))
        return await gauges(port)


async def test_flood_leaves_one_timer_per_connection_and_no_memory_behind(tmp_path: Path) -> None:
    sig = {"rate_limit": 100000.0, "rate_burst": 100000, "max_connections_per_user": 1}
    cfg = write_config(tmp_path, signaling=sig)
    with serving(cfg, tmp_path / "server.log") as (proc, port):

        async def idle() -> bool:
            g = await gauges(port)
            return g["turnkit_signaling_connections"] == 0

        # warm-up: the same traffic once, so caches and allocator arenas exist before measuring
        await flood(port, ROUNDS)
        await eventually(idle)
        start = rss(proc.pid)

        during = await flood(port, ROUNDS)
        assert during["turnkit_signaling_connections"] == USERS
        assert during["turnkit_signaling_ice_push_timers"] == USERS
        await eventually(idle)
        after = await gauges(port)
        assert after["turnkit_signaling_ice_push_timers"] == 0
        growth = rss(proc.pid) - start
        assert growth < 4 * MiB, f"RSS grew by {growth / MiB:.1f} MiB after everyone left"
