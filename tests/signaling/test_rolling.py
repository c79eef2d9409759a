"""Rolling signaling restarts with live relay traffic: 50 two-party rooms keep both members, and every
message sent while its sender's connection was steady is delivered (queued while the receiver was away).

Real `turnkit signaling serve` processes: one restarted in place (in-memory backend, parked sessions
kept in its state file), and two sharing a redis-server, each restarted in turn (SIGTERM), then one
killed (SIGKILL) and started again. Resume latencies are printed (`-s`), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemons import free_port
from tests.helpers.signaling import JWT_SECRET, RedisProc, clean_env, turnkit_command, write_config
from tests.signaling.resumer import Member
from turnkit.config import Config

ROOMS = 50
#: A send this close before its sender's (or, for a crash, its receiver's) disconnect may be lost with it.
GUARD = 0.5
READY_TIMEOUT = 30.0


@dataclass
class Instance:
    """One `turnkit signaling serve` process that can be stopped and started again on its port."""

    cfg: Config
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                turnkit_command("signaling", "serve", "--config", str(self.cfg.path), "--port", str(self.port)),
                env=clean_env(TURNKIT_JWT_SECRET=JWT_SECRET),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready():
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "instance not ready in time"
            time.sleep(0.05)

    def ready(self) -> bool:
        """What a rolling deploy waits for: `/readyz` answers 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)
        if sig is signal.SIGTERM:
            assert self.proc.returncode == 0, self.log.read_text()[-2000:]


@contextlib.contextmanager
def instances(cfg: Config, tmp: Path, n: int) -> Iterator[list[Instance]]:
    started = [Instance(cfg, free_port(), tmp / f"sig{i}.log") for i in range(n)]
    try:
        for inst in started:
            inst.start()
        yield started
    finally:
        for inst in started:
            if inst.proc is not None and inst.proc.poll() is None:
                inst.proc.kill()
                inst.proc.wait(10)


async def all_back(members: list[Member], timeout: float = READY_TIMEOUT) -> None:
    """Every member connected again and answered as itself."""
    deadline = time.monotonic() + timeout
    while not all(m.ws is not None and len(m.resume_latency) == len(m.disconnects) for m in members):
        assert time.monotonic() < deadline, "members did not come back: " + ", ".join(
            f"{m.sub} errors={dict(m.errors)}" for m in members if m.ws is None
        )
        await asyncio.sleep(0.05)


async def roll(members: list[Member], steps: list[tuple[Instance, signal.Signals]]) -> tuple[list[float], list[float]]:
    """Run traffic, restart per `steps`; return the resume latencies counted from the moment the
    restarted instance was ready (or from the disconnect, when the client resumed elsewhere before
    that), and the crash times."""
    tasks = [asyncio.create_task(job) for m in members for job in (m.run(), m.send_loop())]
    kills: list[float] = []
    latencies: list[float] = []
    try:
        await asyncio.wait_for(asyncio.gather(*(m.joined.wait() for m in members)), READY_TIMEOUT)
        await asyncio.sleep(1.0)
        for inst, sig in steps:
            if sig is signal.SIGKILL:
                kills.append(time.monotonic())
            before = {m.sub: len(m.resumed_at) for m in members}
            await asyncio.to_thread(inst.stop, sig)
            await asyncio.to_thread(inst.start)
            ready_at = time.monotonic()
            await all_back(members)
            for m in members:
                for i in range(before[m.sub], len(m.resumed_at)):
                    lost = m.disconnects[i]
                    start = lost if m.resumed_at[i] < ready_at else max(lost, ready_at)
                    latencies.append(m.resumed_at[i] - start)
            await asyncio.sleep(1.0)
        for m in members:
            m.sending = False
        await asyncio.sleep(2.0)  # let the last messages arrive
    finally:
        for m in members:
            m.stopped = True
        for m in members:
            if m.ws is not None:
                await m.ws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies, kills


def check(members: list[Member], kills: list[float], label: str, latencies: list[float]) -> None:
    by_id = {m.id: m for m in members}
    required = delivered = 0
    for m in members:
        assert not m.anomalies, (m.sub, m.anomalies[:5])
        assert m.disconnects, f"{m.sub} was never restarted away"
        partner = by_id[m.partner]
        assert partner.partner == m.id, "room lost a member"
        got = set(partner.received)
        must = m.must_have_arrived(GUARD, kills)
        missing = [s for s in must if s not in got]
        assert not missing, (
            f"{m.sub} → {partner.sub}: {len(missing)} of {len(must)} lost, first {missing[:5]} sent at "
            f"{[round(m.sent[i][1], 2) for i in missing[:5]]}; sender lost {[round(d, 2) for d in m.disconnects]},"
            f" receiver lost {[round(d, 2) for d in partner.disconnects]} back {[round(d, 2) for d in partner.resumed_at]}"
            f" sender back {[round(d, 2) for d in m.resumed_at]} kills {[round(k, 2) for k in kills]}"
        )
        required += len(must)
        delivered += len(got)
    print(
        f"\n[{label}] rooms={len(members) // 2} resumes={len(latencies)} "
        f"resume latency median={statistics.median(latencies) * 1000:.0f} ms "
        f"p95={sorted(latencies)[int(len(latencies) * 0.95) - 1] * 1000:.0f} ms max={max(latencies) * 1000:.0f} ms; "
        f"messages required={required} delivered={delivered} sent={sum(len(m.sent) for m in members)}"
    )


def pairs(ports_a: list[int], ports_b: list[int]) -> list[Member]:
    members: list[Member] = []
    for i in range(ROOMS):
        members += [Member(f"a{i}", f"room{i}", ports_a), Member(f"b{i}", f"room{i}", ports_b)]
    return members


@pytest.mark.timeout(300)
async def test_rooms_survive_restarting_the_only_instance(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, signaling={"max_connections_per_user": 5})
    with instances(cfg, tmp_path, 1) as (one,):
        members = pairs([one.port], [one.port])
        latencies, kills = await roll(members, [(one, signal.SIGTERM), (one, signal.SIGTERM)])
    check(members, kills, "memory, 1 instance restarted twice", latencies)


@pytest.mark.timeout(300)
async def test_rooms_survive_a_rolling_restart_through_redis(tmp_path: Path, redis_server: RedisProc) -> None:
    cfg = write_config(tmp_path, signaling={"redis_url": redis_server.url})
    with instances(cfg, tmp_path, 2) as (one, two):
        # Each room spans both processes; a client whose instance is down tries the other one.
        members = pairs([one.port, two.port], [two.port, one.port])
        steps = [(one, signal.SIGTERM), (two, signal.SIGTERM), (one, signal.SIGKILL)]
        latencies, kills = await roll(members, steps)
    check(members, kills, "redis, 2 instances, rolling SIGTERM then SIGKILL", latencies)
