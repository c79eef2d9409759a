"""The Redis backend against a real redis-server: restarted under a live room (two signaling processes
reconnect and keep relaying), and relayed frames batched into one publish per process per loop tick."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
import redis

from signaling.backends import redis_lua as lua
from signaling.backends.redis import BATCH, RedisBackend
from signaling.rooms import Joined
from tests.daemons import free_port
from tests.helpers.signaling import (
    TIMEOUT,
    Client,
    RedisProc,
    StartServer,
    client,
    redis_running,
    serving,
    write_config,
)

pytestmark = pytest.mark.asyncio

#: Long enough for a reconnect with backoff (capped at 2 s) on a loaded machine; not a timing goal.
RESUME_BOUND = 30.0
PREFIX = "turnkit:sig:"


async def ready(port: int) -> bool:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}/readyz", timeout=5)).status_code == 200


async def wait_ready(port: int, want: bool) -> None:
    async with asyncio.timeout(RESUME_BOUND):
        while await ready(port) is not want:
            await asyncio.sleep(0.05)


async def offer(sender: Client, to: str, text: str) -> None:
    await sender.send(type="offer", to=to, sdp={"type": "offer", "sdp": text})


async def relays_resume(sender: Client, receiver: Client, to: str) -> int:
    """Send numbered offers until one arrives; the number of attempts it took."""
    async with asyncio.timeout(RESUME_BOUND):
        for attempt in range(1_000_000):
            await offer(sender, to, f"probe {attempt}")
            with contextlib.suppress(TimeoutError):
                while True:
                    msg = await receiver.expect("offer", timeout=0.3)
                    if msg["sdp"]["sdp"] == f"probe {attempt}":
                        return attempt
    raise AssertionError("unreachable")


async def test_relays_resume_after_redis_server_restarts(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, signaling={"redis_url": f"redis://127.0.0.1:{port}/0"})
    logs = tmp_path / "one.log", tmp_path / "two.log"
    with (
        redis_running(tmp_path / "r1", port) as first_redis,
        serving(cfg, logs[0]) as (one, port1),
        serving(cfg, logs[1]) as (two, port2),
    ):
        async with client(port1, "alice") as a, client(port2, "bob") as b:
            aid = (await a.join("live"))["you"]
            bid = (await b.join("live"))["you"]
            await a.expect("user-joined")
            await offer(b, aid, "before")
            assert (await a.expect("offer"))["sdp"]["sdp"] == "before"

            first_redis.stop()
            await wait_ready(port1, False)
            await wait_ready(port2, False)
            # sent while Redis is away: queued, delivered once the process has reconnected
            await offer(b, aid, "during the outage")
            await offer(a, bid, "the other way")
            with redis_running(tmp_path / "r2", port):
                await wait_ready(port1, True)
                await wait_ready(port2, True)
                assert (await a.expect("offer", timeout=RESUME_BOUND))["sdp"]["sdp"] == "during the outage"
                assert (await b.expect("offer", timeout=RESUME_BOUND))["sdp"]["sdp"] == "the other way"
                await relays_resume(b, a, aid)
                await relays_resume(a, b, bid)
                for i in range(20):
                    await offer(b, aid, f"after {i}")
                    await offer(a, bid, f"back {i}")
                assert [(await a.expect("offer"))["sdp"]["sdp"] for _ in range(20)] == [f"after {i}" for i in range(20)]
                assert [(await b.expect("offer"))["sdp"]["sdp"] for _ in range(20)] == [f"back {i}" for i in range(20)]

                # the restarted (empty) Redis has the room back: both members, and it is full
                store = redis.Redis(port=port, decode_responses=True)
                assert set(store.zrange(f"{PREFIX}room:live", 0, -1)) == {aid, bid}
                assert len(store.smembers(f"{PREFIX}procs")) == 2
                async with client(port1, "carol") as c:
                    await c.send(type="join-room", room="live")
                    assert (await c.expect("error"))["code"] == "room-full"
                await b.send(type="leave-room")
                assert await a.expect("user-left") == {"type": "user-left", "id": bid}
                assert store.zrange(f"{PREFIX}room:live", 0, -1) == [aid]
                store.close()
        assert one.poll() is None and two.poll() is None
    for log in logs:
        text = log.read_text()
        assert "redis connection lost" in text and "redis connection restored" in text, text
        assert "re-added 1 members Redis had lost" in text or "restoring 1 members" in text, text
        assert "Traceback" not in text, text


class Recorder:
    """Backend events, recorded."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str, str]] = []

    def joined(self, event: Joined) -> None: ...

    def left(self, room: str, peer: str) -> None: ...

    def full(self, peer: str, room: str) -> None: ...

    def deliver(self, peer: str, room: str, frame: str) -> None:
        self.delivered.append((peer, room, frame))

    def failed(self, peer: str, reason: str) -> None: ...

    def lost(self) -> None: ...


async def test_frames_of_one_loop_tick_go_out_as_one_publish_per_process(redis_server: RedisProc) -> None:
    sender, receiver = RedisBackend(redis_server.url), RedisBackend(redis_server.url)
    got = Recorder()
    await sender.start(Recorder())
    await receiver.start(got)
    store = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        before = store.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)
        frames = [f'{{"type":"offer","n":{i},"sdp":"line one\\nline two é"}}' for i in range(300)]
        for frame in frames:  # one loop tick
            sender.forward(receiver.proc, "peer-1", "room-1", frame)
        async with asyncio.timeout(TIMEOUT):
            while len(got.delivered) < len(frames):
                await asyncio.sleep(0.01)
        assert got.delivered == [("peer-1", "room-1", f) for f in frames]
        calls = store.info("commandstats")["cmdstat_publish"]["calls"] - before
        assert calls == -(-len(frames) // BATCH)  # 300 frames, BATCH per publish
    finally:
        store.close()
        await sender.stop()
        await receiver.stop()


async def test_a_process_the_others_reaped_closes_its_clients_1012(
    start_server: StartServer, redis_server: RedisProc
) -> None:
    async with start_server(redis_server.url) as srv, srv.client("alice") as a:
        await a.join("r")
        store = redis.Redis(port=redis_server.port, decode_responses=True)
        try:
            # what another process's reaper does once this one's heartbeat has expired (same data set)
            store.delete(f"{PREFIX}alive:{srv.server.backend.proc}")
            # (resume window 0: its members leave at once rather than being parked)
            assert store.register_script(lua.REAP)(args=[PREFIX, 0])[0] == 1
            assert store.zrange(f"{PREFIX}room:r", 0, -1) == []
            assert await a.closed_code() == 1012
        finally:
            store.close()


async def test_after_a_reconnect_the_view_is_compared_with_redis(
    start_server: StartServer, redis_server: RedisProc
) -> None:
    async with (
        start_server(redis_server.url) as one,
        start_server(redis_server.url) as two,
        one.client("alice") as a,
        two.client("bob") as b,
    ):
        aid = (await a.join("r"))["you"]
        bid = (await b.join("r"))["you"]
        assert (await a.expect("user-joined"))["id"] == bid
        store = redis.Redis(port=redis_server.port, decode_responses=True)
        try:
            # a join whose leave event was lost: a ghost in process one's view …
            store.publish(f"{PREFIX}ch:{one.server.backend.proc}", "J r ghost deadbeef0000")
            assert await a.expect("user-joined") == {"type": "user-joined", "id": "ghost"}
            # … and a member Redis has whose join event never reached process one
            store.zadd(f"{PREFIX}room:r", {"phantom": 99})
            store.hset(f"{PREFIX}peers", "phantom", "deadbeef0001 r")
            store.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # both processes reconnect
            seen = [await a.recv(timeout=RESUME_BOUND), await a.recv(timeout=RESUME_BOUND)]
            assert seen == [{"type": "user-left", "id": "ghost"}, {"type": "user-joined", "id": "phantom"}]
        finally:
            store.close()
        await b.send(type="offer", to=aid, sdp={"type": "offer", "sdp": "still relaying"})
        assert (await a.expect("offer"))["sdp"]["sdp"] == "still relaying"
