"""Secret rotation with no coturn restart: stage → promote → prune under load on two real coturn nodes.

Each node reads its accepted secrets from its own SQLite `turn_secret` table; `push` brings every
node's table to the keyring's accepted set with `turnkit.secretdb.sync`, exactly as deploy does.
A client allocates continuously (with whatever secret signaling would issue with at that moment)
while 10 relays (allocation pairs across the two nodes, authenticated with the first secret) keep
carrying numbered packets both ways. Nothing may fail, no relay may lose a packet, no coturn
process may change, and after the prune the first secret's credentials get 401 on both nodes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioice import stun

from tests import turnclient
from tests.daemons import Coturn, local_config, start_coturn
from turnkit import credentials, keyring, secretdb
from turnkit.config import Config

RELAYS = 10
SEND_EVERY = 0.05


@dataclass
class Fleet:
    cfg: Config
    nodes: list[Coturn]

    @property
    def realm(self) -> str:
        return self.cfg.project.effective_realm

    def push(self, ring: keyring.Keyring) -> list[secretdb.Plan]:
        return [secretdb.sync(n.conf.parent / "turndb.sqlite", self.realm, ring.accepted) for n in self.nodes]

    def pids(self) -> list[tuple[int, str]]:
        return [(n.proc.pid, n.pidfile.read_text().strip()) for n in self.nodes if n.proc.poll() is None]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    cfg = local_config(tmp_path)
    ring = keyring.init(int(time.time()))
    keyring.save(cfg.secrets_path, ring)
    nodes: list[Coturn] = []
    try:
        for name in ("n1", "n2"):
            nodes.append(start_coturn(cfg, ring.accepted, tmp_path / name))
        yield Fleet(cfg, nodes)
    finally:
        for node in nodes:
            node.stop()


@dataclass
class Tally:
    ok: int = 0
    failed: list[str] = field(default_factory=list)


async def allocations(fleet: Fleet, issuing: list[str], stop: asyncio.Event, tally: Tally) -> None:
    """A new caller every few ms (TURN over TCP), with a credential from the secret signaling issues with now."""
    turn = 0
    while not stop.is_set():
        node = fleet.nodes[turn % 2]
        cred = credentials.issue(f"caller-{turn}", issuing[0], int(time.time()), 600)
        turn += 1
        try:
            # TCP: a fresh 5-tuple per caller. Back-to-back UDP allocations can reuse a just-closed
            # source port whose allocation coturn still holds (437 Allocation Mismatch, RFC 8656 §7.2).
            transport, _ = await turnclient.allocate(node.port, cred.username, cred.password, transport="tcp")
        except (stun.TransactionFailed, stun.TransactionError, OSError, TimeoutError) as exc:
            tally.failed.append(f"node {turn % 2}: {type(exc).__name__}: {exc}")
        else:
            transport.close()
            tally.ok += 1
        await asyncio.sleep(0.005)


@dataclass
class Relay:
    """Two allocations on different nodes sending numbered packets to each other's relayed address."""

    a: Any
    b: Any
    inbox_a: turnclient.Inbox
    inbox_b: turnclient.Inbox
    sent: int = 0
    got_a: set[int] = field(default_factory=set)
    got_b: set[int] = field(default_factory=set)

    def send(self) -> None:
        packet = self.sent.to_bytes(4, "big")
        self.a.sendto(packet, self.b.get_extra_info("sockname"))
        self.b.sendto(packet, self.a.get_extra_info("sockname"))
        self.sent += 1

    def collect(self) -> None:
        for inbox, got in ((self.inbox_a, self.got_a), (self.inbox_b, self.got_b)):
            while not inbox.queue.empty():
                data, _ = inbox.queue.get_nowait()
                got.add(int.from_bytes(data[:4], "big"))

    @property
    def complete(self) -> bool:
        return self.got_a == self.got_b == set(range(self.sent))


async def open_relay(fleet: Fleet, index: int, secret: str) -> Relay:
    cred = credentials.issue(f"relay-{index}", secret, int(time.time()), 600)
    first, second = fleet.nodes[index % 2], fleet.nodes[(index + 1) % 2]
    a, inbox_a = await turnclient.allocate(first.port, cred.username, cred.password)
    b, inbox_b = await turnclient.allocate(second.port, cred.username, cred.password)
    relay = Relay(a, b, inbox_a, inbox_b)
    # ChannelBind installs each side's permission; loopback peers are allowed in the local region.
    b.sendto(b"\xff\xff\xff\xff", a.get_extra_info("sockname"))
    a.sendto(b"\xff\xff\xff\xff", b.get_extra_info("sockname"))
    await asyncio.sleep(0.2)
    for inbox in (inbox_a, inbox_b):
        while not inbox.queue.empty():
            inbox.queue.get_nowait()
    return relay


async def traffic(relays: list[Relay], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for relay in relays:
            relay.send()
            relay.collect()
        await asyncio.sleep(SEND_EVERY)


async def settle(relays: list[Relay], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(r.complete for r in relays):
        for relay in relays:
            relay.collect()
        await asyncio.sleep(0.05)


async def more(tally: Tally, relays: list[Relay], count: int = 20, packets: int = 5, timeout: float = 60.0) -> None:
    """Let the phase run: `count` more allocations and `packets` more packets on every relay."""
    goal, sent, deadline = tally.ok + count, relays[-1].sent + packets, time.monotonic() + timeout
    while (tally.ok < goal or relays[-1].sent < sent) and not tally.failed:
        assert time.monotonic() < deadline, f"client stalled at {tally.ok} allocations"
        await asyncio.sleep(0.05)


async def test_stage_promote_prune_restarts_nothing_and_interrupts_no_relay(fleet: Fleet) -> None:
    path = fleet.cfg.secrets_path
    first = keyring.load(path).primary
    issuing = [first.value]
    pids = fleet.pids()
    assert len(pids) == 2

    relays = [await open_relay(fleet, i, first.value) for i in range(RELAYS)]
    tally, stop = Tally(), asyncio.Event()
    tasks = [asyncio.create_task(allocations(fleet, issuing, stop, tally)), asyncio.create_task(traffic(relays, stop))]
    try:
        await more(tally, relays)

        ring = keyring.rotate(keyring.load(path), int(time.time()), stage=True)  # turnkit secret rotate --stage
        keyring.save(path, ring)
        staged = ring.secrets[0]
        assert [p.summary() for p in fleet.push(ring)] == [{"added": 1, "removed": 0, "changed": True}] * 2
        await more(tally, relays)

        ring = keyring.promote(keyring.load(path), staged.id, int(time.time()))  # deploy promotes after the push
        keyring.save(path, ring)
        issuing[0] = ring.primary.value
        assert not any(p.changed for p in fleet.push(ring))  # promoting changes no table
        await more(tally, relays)

        ring, dropped = keyring.prune(keyring.load(path), int(time.time()), 0)  # turnkit secret prune --grace 0
        keyring.save(path, ring)
        assert [s.id for s in dropped] == [first.id]
        assert [p.summary() for p in fleet.push(ring)] == [{"added": 0, "removed": 1, "changed": True}] * 2
        await more(tally, relays)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    await settle(relays)
    for relay in relays:
        relay.a.close()
        relay.b.close()
    print(f"rotation: {tally.ok} allocations, {sum(r.sent for r in relays)} packets per direction over {RELAYS} relays")
    assert tally.failed == []
    assert tally.ok >= 80
    assert all(r.sent >= 20 for r in relays)
    interrupted = [i for i, r in enumerate(relays) if not r.complete]
    assert interrupted == [], f"relays lost packets: {[(relays[i].sent, len(relays[i].got_a)) for i in interrupted]}"
    assert fleet.pids() == pids  # no coturn was restarted

    stale = credentials.issue("late-caller", first.value, int(time.time()), 600)
    fresh = credentials.issue("late-caller", ring.primary.value, int(time.time()), 600)
    for node in fleet.nodes:
        assert await turnclient.allocation_error(node.port, stale.username, stale.password) == 401
        assert await turnclient.allocation_error(node.port, fresh.username, fresh.password) is None
    assert [secretdb.read(n.conf.parent / "turndb.sqlite", fleet.realm) for n in fleet.nodes] == [
        {ring.primary.value}
    ] * 2
