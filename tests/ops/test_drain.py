"""Drain against real daemons: coturn 4.6.1 with redis-statsdb, redis-server, and the signaling ICE module.

coturn runs node turn-1 of a two-node local region with its own config plus a `redis-statsdb` line
(the shipped template gets that from the metering work). The drained node must vanish from the
ICE servers the signaling service hands out (its `IceProvider` reading the real health file), the
drain must report what is still live, and `undrain` must bring the node back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from signaling.ice import FileHealth, IceProvider
from signaling.keysource import KeySource
from tests import turnclient
from tests.daemons import free_port, render_coturn, stop_process, wait_port
from tests.helpers.signaling import RedisProc, redis_running
from turnkit import config as config_mod
from turnkit import credentials, drain, health, keyring, pki
from turnkit.nodes import region_nodes

TURN_1, TURN_2 = "127.0.0.1", "127.0.0.2"


@dataclass
class Stack:
    root: Path
    cfg: config_mod.Config
    statsdb: str
    redis: RedisProc

    def credential(self, user: str) -> credentials.TurnCredential:
        secret = keyring.load(self.cfg.secrets_path).primary.value
        return credentials.issue(user, secret, int(dt.datetime.now(dt.UTC).timestamp()), 600)

    def ice_hosts(self) -> list[str]:
        """TURN hosts in the ICE servers signaling would answer with right now."""
        provider = IceProvider(self.cfg, KeySource(self.cfg.secrets_path), FileHealth(health.path_for(self.cfg)))
        urls = provider.issue("alice", "local").turn_urls
        return sorted({url.split(":")[1] for url in urls})


async def cli(stack: Stack, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnkit", *args, cwd=stack.root, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    listening, relay = free_port(), 20000 + 100 * (free_port() % 400)
    with redis_running(tmp_path / "redis") as server:
        (tmp_path / "turnkit.toml").write_text(
            f'[project]\ndomain = "turn.example.test"\n\n'
            f"[ports]\nlistening = {listening}\ntls = {free_port()}\nrelay_min = {relay}\nrelay_max = {relay + 99}\n\n"
            f'[signaling]\nredis_url = "redis://127.0.0.1:{server.port}/1"\n\n'
            f'[regions.local]\nprovider = "local"\nnodes = 2\nallow_loopback_peers = true\n'
        )
        cfg = config_mod.load(tmp_path / "turnkit.toml")
        ring = keyring.init(int(dt.datetime.now(dt.UTC).timestamp()))
        keyring.save(cfg.secrets_path, ring)
        node = region_nodes(cfg, "local")[0]
        work = tmp_path / "turn-1"
        work.mkdir()
        certs = pki.make_ca_and_cert(work / "certs", ["127.0.0.1"], dt.datetime.now(dt.UTC), 30)
        overrides = {
            "coturn_pidfile": str(work / "turnserver.pid"),
            "coturn_log_file": str(work / "turnserver.log"),
            "coturn_cert_file": str(certs.cert),
            "coturn_pkey_file": str(certs.key),
        }
        conf = render_coturn(cfg, node, ring.accepted, work, overrides)
        with conf.open("a") as fh:  # the statsdb the metering work renders into the template
            fh.write(f'redis-statsdb="ip=127.0.0.1 dbname=0 port={server.port} connect_timeout=10"\n')
        proc = subprocess.Popen(
            ["turnserver", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_port(listening, TURN_1)
            yield Stack(tmp_path, cfg, f"redis://127.0.0.1:{server.port}/0", server)
        finally:
            stop_process(proc)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_status_keys_live_exactly_as_long_as_the_allocation(stack: Stack) -> None:
    stats, realm = drain.StatsDb(stack.statsdb), stack.cfg.project.effective_realm
    assert stats.count(realm) == 0
    cred = stack.credential("alice")
    transport, _ = await turnclient.allocate(stack.cfg.ports.listening, cred.username, cred.password)
    try:
        await wait_for(lambda: stats.count(realm) == 1)
        (key, value), *_ = stats.statuses(realm).items()
        assert drain.parse_status_key(key) == drain.Allocation(realm, cred.username, key.split("/")[-2])
        assert value is not None and value.startswith("new lifetime=600, type=UDP,")
    finally:
        transport.close()  # Refresh lifetime=0: coturn writes `refreshed lifetime=0`, then deletes the key
    await wait_for(lambda: stats.statuses(realm) == {})
    assert drain.StatsDb(stack.statsdb).count("other.realm") == 0


async def test_drain_reports_live_allocations_and_hides_the_node_until_undrain(stack: Stack) -> None:
    assert stack.ice_hosts() == [TURN_1, TURN_2]
    cred = stack.credential("alice")
    transport, _ = await turnclient.allocate(stack.cfg.ports.listening, cred.username, cred.password)
    try:
        await wait_for(lambda: drain.StatsDb(stack.statsdb).count(stack.cfg.project.effective_realm) == 1)
        args = ("--region", "local", "--node", "turn-1", "--statsdb", stack.statsdb)
        code, out, err = await cli(stack, "drain", *args, "--timeout", "1.5")
        assert (code, out) == (1, "local/turn-1: 1 allocation(s) still live after the 1.5 s timeout\n"), err
        assert err.startswith("local/turn-1 is draining: signaling no longer hands it out\n")
        assert "waiting: 1 live allocation(s) on local/turn-1" in err

        # Signaling stops handing the node out at once: the file (per request) and the Redis document.
        assert stack.ice_hosts() == [TURN_2]
        shared = redis.Redis(port=stack.redis.port, db=1).get(health.REDIS_KEY)
        assert shared is not None and health.from_json(shared.decode())["local/turn-1"].draining
        # A probe run in between keeps the mark.
        health.write_file(health.path_for(stack.cfg), {"local/turn-1": health.NodeHealth(True, 1)})
        assert stack.ice_hosts() == [TURN_2]
    finally:
        transport.close()

    code, out, err = await cli(stack, "drain", *args, "--timeout", "20", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["node"], report["live"], report["drained"]) == ("local/turn-1", 0, True)
    assert stack.ice_hosts() == [TURN_2]

    code, out, err = await cli(stack, "undrain", "--region", "local", "--node", "turn-1")
    assert (code, out) == (0, "local/turn-1: back in service\n"), err
    assert stack.ice_hosts() == [TURN_1, TURN_2]
    shared = redis.Redis(port=stack.redis.port, db=1).get(health.REDIS_KEY)
    assert shared is not None and not health.from_json(shared.decode())["local/turn-1"].draining


async def test_bad_input_is_one_line_and_marks_nothing(stack: Stack) -> None:
    base = ("drain", "--region", "local", "--node")
    cases = {
        (*base, "turn-9", "--statsdb", stack.statsdb): "error: --node: no node `turn-9` in region `local` "
        "(nodes: turn-1, turn-2)\n",
        (*base, "turn-1", "--statsdb", "redis://:hunter2@127.0.0.1:1/0"): "error: --statsdb: put the password in "
        "$TURNKIT_STATSDB_PASSWORD, not in the URL\n",
        (*base, "turn-1", "--statsdb", "http://x"): "error: --statsdb: expected redis://HOST:PORT/DB, got `http://x`\n",
        (
            *base,
            "turn-1",
        ): "error: --statsdb: required (the node's coturn redis-statsdb), or set $TURNKIT_STATSDB_URL\n",
        (*base, "turn-1", "--statsdb", stack.statsdb, "--timeout", "-1"): "error: --timeout: must be ≥ 0, got -1\n",
    }
    for argv, expected in cases.items():
        code, out, err = await cli(stack, *argv)
        assert (code, out, err) == (2, "", expected), argv
    closed = f"redis://127.0.0.1:{free_port()}/0"
    code, out, err = await cli(stack, *base, "turn-1", "--statsdb", closed)
    assert (code, err) == (3, f"error: statsdb {closed}: cannot read allocations: ConnectionError\n")
    assert stack.ice_hosts() == [TURN_1, TURN_2]  # nothing was marked


async def test_mark_only_and_count_only_are_the_two_halves_a_remote_deploy_runs(stack: Stack) -> None:
    """A remote deploy marks on the signaling host (`--mark-only`) and counts on the node (`--count-only`)."""
    node = ("--region", "local", "--node", "turn-1")
    code, out, err = await cli(stack, "drain", *node, "--mark-only")  # no statsdb needed
    assert (code, out) == (0, "local/turn-1 is draining: signaling no longer hands it out\n"), err
    assert stack.ice_hosts() == [TURN_2]
    await cli(stack, "undrain", *node)

    cred = stack.credential("alice")
    transport, _ = await turnclient.allocate(stack.cfg.ports.listening, cred.username, cred.password)
    try:
        await wait_for(lambda: drain.StatsDb(stack.statsdb).count(stack.cfg.project.effective_realm) == 1)
        # On the node, the region's other nodes are unknown: --count-only does not look them up.
        counted = ("drain", "--region", "local", "--node", "turn-9", "--statsdb", stack.statsdb, "--count-only")
        code, out, err = await cli(stack, *counted, "--timeout", "1", "--json")
        assert code == 1, err
        assert json.loads(out) == {"node": "local/turn-9", "live": 1, "waited": json.loads(out)["waited"],
                                   "drained": False}  # fmt: skip
        assert "is draining" not in err
        assert stack.ice_hosts() == [TURN_1, TURN_2]  # counting marks nothing
    finally:
        transport.close()
    code, out, err = await cli(stack, *counted, "--timeout", "20", "--json")
    assert (code, json.loads(out)["live"]) == (0, 0), err
    code, out, err = await cli(stack, "drain", *node, "--mark-only", "--count-only")
    assert (code, err) == (2, "error: --mark-only and --count-only: give at most one\n")
