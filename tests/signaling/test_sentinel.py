"""Redis without a single point of failure: a primary, a replica and three sentinels (real processes).

The primary is killed under relay load between two signaling processes; after the sentinels promote
the replica, relays resume, a member that left during the failover is gone everywhere, and neither
signaling process crashes. The measured relay gap is printed (a benchmark figure, not asserted).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.daemons import free_port, stop_process, wait_port
from tests.helpers.signaling import (
    JWT_SECRET,
    TIMEOUT,
    Client,
    clean_env,
    client,
    serving,
    turnkit_command,
    write_config,
)
from turnkit.redisurl import RedisUrlError, parse_sentinel, sync_client

SERVICE = "turnkit"
PREFIX = "turnkit:sig:"
#: Bounds for a loaded 2-core machine; correctness limits, not timing goals (those live in bench/).
CONVERGE_BOUND = 60.0
RESUME_BOUND = 60.0
SEND_EVERY = 0.02


@dataclass
class SentinelSet:
    primary: subprocess.Popen[bytes]
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master(self) -> tuple[str, int] | None:
        """The primary as the first sentinel that answers reports it."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError), redis.Redis(port=port, decode_responses=True) as s:
                addr = s.sentinel_get_master_addr_by_name(SERVICE)
                return (addr[0], int(addr[1])) if addr else None
        return None


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def until(check: object, bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while True:
        with contextlib.suppress(redis.RedisError):
            if callable(check) and check():
                return
        assert time.monotonic() < deadline, f"{what} within {bound:.0f}s"
        time.sleep(0.1)


@contextlib.contextmanager
def sentinel_set(tmp: Path) -> Iterator[SentinelSet]:
    """redis-server primary + replica and three redis-sentinel on loopback, converged."""
    tmp.mkdir(parents=True, exist_ok=True)
    primary_port, replica_port = free_port(), free_port()
    sentinel_ports = [free_port() for _ in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)]
    try:
        primary = spawn(["redis-server", "--port", str(primary_port), *base], tmp / "primary.log")
        procs.append(primary)
        replica_args = ["--port", str(replica_port), *base, "--replicaof", "127.0.0.1", str(primary_port)]
        procs.append(spawn(["redis-server", *replica_args], tmp / "replica.log"))
        for port in (primary_port, replica_port):
            wait_port(port, timeout=TIMEOUT)
        with redis.Redis(port=replica_port, decode_responses=True) as replica:
            until(lambda: replica.info("replication")["master_link_status"] == "up", CONVERGE_BOUND, "replica in sync")
        for i, port in enumerate(sentinel_ports):
            conf = tmp / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {tmp}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            procs.append(spawn(["redis-sentinel", str(conf)], tmp / f"sentinel-{i}.log"))
        for port in sentinel_ports:
            wait_port(port, timeout=TIMEOUT)

        def converged() -> bool:
            for port in sentinel_ports:
                with redis.Redis(port=port, decode_responses=True) as s:
                    if len(s.sentinel_sentinels(SERVICE)) < 2 or not s.sentinel_slaves(SERVICE):
                        return False
            return True

        until(converged, CONVERGE_BOUND, "sentinels know each other and the replica")
        yield SentinelSet(primary, primary_port, replica_port, sentinel_ports)
    finally:
        for proc in reversed(procs):
            stop_process(proc)


class Load:
    """Numbered offers from `sender` to `to` every SEND_EVERY; the receiver records arrival times."""

    def __init__(self, sender: Client, receiver: Client, to: str) -> None:
        self.sender, self.receiver, self.to = sender, receiver, to
        self.sent: dict[int, float] = {}
        self.received: dict[int, float] = {}

    async def send(self) -> None:
        for n in range(1_000_000):
            self.sent[n] = time.monotonic()
            await self.sender.send(type="offer", to=self.to, sdp={"type": "offer", "sdp": str(n)})
            await asyncio.sleep(SEND_EVERY)

    async def receive(self) -> None:
        while True:
            msg = await self.receiver.expect("offer", timeout=RESUME_BOUND)
            self.received[int(msg["sdp"]["sdp"])] = time.monotonic()

    def gap(self) -> float:
        times = sorted(self.received.values())
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@pytest.mark.asyncio
async def test_relays_resume_after_the_primary_is_killed(tmp_path: Path) -> None:
    with sentinel_set(tmp_path / "redis") as rs:
        cfg = write_config(tmp_path, signaling={"redis_url": rs.url})
        logs = tmp_path / "one.log", tmp_path / "two.log"
        with serving(cfg, logs[0]) as (one, port1), serving(cfg, logs[1]) as (two, port2):
            async with (
                client(port1, "alice") as a,
                client(port2, "bob") as b,
                client(port1, "carol") as c,
                client(port2, "dave") as d,
            ):
                aid = (await a.join("load"))["you"]
                bid = (await b.join("load"))["you"]
                await a.expect("user-joined")
                cid = (await c.join("quiet"))["you"]
                did = (await d.join("quiet"))["you"]
                await c.expect("user-joined")

                load = Load(b, a, aid)
                tasks = [asyncio.create_task(load.send()), asyncio.create_task(load.receive())]
                try:
                    await asyncio.sleep(1.0)
                    assert load.received, "relays flow before the failover"
                    killed = time.monotonic()
                    os.kill(rs.primary.pid, signal.SIGKILL)
                    await d.ws.close()  # a member leaves while there is no primary
                    await asyncio.to_thread(
                        until, lambda: rs.master() == ("127.0.0.1", rs.replica_port), RESUME_BOUND, "failover"
                    )
                    promoted = time.monotonic()
                    async with asyncio.timeout(RESUME_BOUND):
                        while not any(load.sent[n] > promoted for n in load.received):
                            await asyncio.sleep(0.05)
                    resumed = min(t for t in load.received.values() if t > killed)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                print(
                    f"\nsentinel failover: promoted {promoted - killed:.2f}s after the kill, first relay "
                    f"{resumed - killed:.2f}s after it, largest relay gap {load.gap():.2f}s, "
                    f"{len(load.sent) - len(load.received)} of {len(load.sent)} relays not delivered"
                )

                # no ghost: dave's leave reached carol and the new primary
                assert await c.expect("user-left", timeout=RESUME_BOUND) == {"type": "user-left", "id": did}
                with redis.Redis(port=rs.replica_port, decode_responses=True) as store:
                    assert store.zrange(f"{PREFIX}room:quiet", 0, -1) == [cid]
                    assert set(store.zrange(f"{PREFIX}room:load", 0, -1)) == {aid, bid}
                    assert len(store.smembers(f"{PREFIX}procs")) == 2
                # the blocking client (node health publishing) finds the new primary too
                with sync_client(rs.url, decode_responses=True) as health_client:
                    health_client.set("turnkit:test", "written")
                    assert health_client.info("replication")["role"] == "master"
                    assert health_client.connection_pool.get_master_address() == ("127.0.0.1", rs.replica_port)
                # both directions still relay, and membership works on the new primary
                await a.send(type="answer", to=bid, sdp={"type": "answer", "sdp": "after"})
                async with asyncio.timeout(RESUME_BOUND):
                    while (msg := await b.recv())["type"] != "answer":
                        pass
                assert msg["sdp"]["sdp"] == "after"
                async with client(port2, "erin") as e:
                    assert (await e.join("quiet"))["users"] == [cid]
                    await c.expect("user-joined")
                    await e.send(type="join-room", room="load")
                    assert (await e.expect("error"))["code"] == "room-full"
            assert one.poll() is None and two.poll() is None, "a signaling process crashed"
    for log in logs:
        text = log.read_text()
        assert "redis connection restored" in text and "Traceback" not in text, text


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+sentinel://127.0.0.1:26379", "the path must start with the Sentinel service name"),
        ("redis+sentinel://127.0.0.1/svc", "sentinel address `127.0.0.1` is not host:port"),
        ("redis+sentinel://h:1,h:99999/svc", "sentinel address `h:99999` is not host:port"),
        ("redis+sentinel://h:1/svc/x", "database `x` is not a number"),
        ("redis+sentinel://h:1/svc?x=1", "a Sentinel URL takes no query or fragment"),
    ],
)
def test_bad_sentinel_urls_are_one_line_errors(url: str, error: str) -> None:
    with pytest.raises(RedisUrlError) as exc:
        parse_sentinel(url)
    assert str(exc.value).startswith(error)


def test_sentinel_url_parts() -> None:
    target = parse_sentinel("redis+sentinel://:s3cret@127.0.0.1:26379,[::1]:26380/turnkit/2")
    assert target.sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == ("turnkit", 2, None, "s3cret")
    assert "s3cret" not in repr(target)


@pytest.mark.parametrize(
    ("url", "code", "stderr"),
    [
        (
            "redis+sentinel://:hunter2@127.0.0.1:1/svc/x",
            2,
            "error: signaling.redis_url: `redis+sentinel://***@127.0.0.1:1/svc/x`: database `x` is not a number\n",
        ),
        (
            "redis+sentinel://:hunter2@127.0.0.1:{port}/svc",
            3,
            "error: signaling.redis_url: cannot use Redis at redis+sentinel://***@127.0.0.1:{port}/svc: "
            "no sentinel answered with a primary for the service\n",
        ),
    ],
)
def test_serve_with_an_unusable_sentinel_url_is_one_line(tmp_path: Path, url: str, code: int, stderr: str) -> None:
    port = str(free_port())  # nothing listens there
    cfg = write_config(tmp_path, signaling={"redis_url": url.format(port=port)})
    res = subprocess.run(
        turnkit_command("signaling", "serve", "--config", str(cfg.path), "--port", str(free_port())),
        env=clean_env(TURNKIT_JWT_SECRET=JWT_SECRET),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (res.returncode, res.stderr) == (code, stderr.format(port=port))
