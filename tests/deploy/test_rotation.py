"""Fleet-safe secret rotation: rotate --stage → deploy → prune → deploy under continuous allocations, zero 401s.

Two real coturn nodes (the local region with `nodes = 2`). The client behaves like a browser's ICE
agent: it gets credentials issued exactly as the signaling service issues them (from the keyring
file's primary at that moment), tries one TURN server and, when that one refuses the connection
(it is restarting), the other. A 401 from any node is a failure.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

from aioice import stun
from aioice.turn import create_turn_endpoint

from tests.helpers.deploy import Site
from turnkit import credentials, keyring, localstack, secretdb
from turnkit.nodes import region_nodes

ATTEMPT_TIMEOUT = 5.0


@dataclass
class Tally:
    ok: int = 0
    failover: int = 0  # the first node refused (restarting), the other served
    unauthorized: list[str] = field(default_factory=list)
    unavailable: int = 0  # every node refused at once
    other: list[str] = field(default_factory=list)


async def allocate(host: str, port: int, username: str, password: str) -> None:
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(asyncio.DatagramProtocol, (host, port), username, password, transport="tcp"),
        ATTEMPT_TIMEOUT,
    )
    transport.close()


def error_code(exc: stun.TransactionFailed) -> int:
    return int(exc.response.attributes.get("ERROR-CODE", (0, ""))[0])


async def hammer(site: Site, hosts: list[str], stop: asyncio.Event, tally: Tally) -> None:
    secrets_path = site.load().secrets_path
    turn = 0
    while not stop.is_set():
        primary = keyring.load(secrets_path).primary  # what signaling would issue with right now
        cred = credentials.issue(f"caller-{turn}", primary.value, int(time.time()), 600)
        order = hosts[turn % 2 :] + hosts[: turn % 2]
        turn += 1
        for index, host in enumerate(order):
            try:
                await allocate(host, site.listening, cred.username, cred.password)
            except stun.TransactionFailed as exc:
                bucket = tally.unauthorized if error_code(exc) == 401 else tally.other
                bucket.append(f"{host}: {exc} (secret {primary.id})")
                break
            except (OSError, TimeoutError, stun.TransactionError):
                continue  # connection refused/reset while the node restarts: ICE tries the next server
            tally.ok += 1
            tally.failover += index > 0
            break
        else:
            tally.unavailable += 1
        await asyncio.sleep(0.005)


async def cli(site: Site, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnkit", *args, cwd=site.root, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, f"turnkit {' '.join(args)}: {err.decode()}"
    return proc.returncode, out.decode()


async def more(tally: Tally, count: int, timeout: float = 60.0) -> None:
    """Wait until `count` more allocations succeeded (the client is still being served)."""
    goal = tally.ok + count
    deadline = time.monotonic() + timeout
    while tally.ok < goal:
        assert time.monotonic() < deadline, f"client stalled at {tally.ok} allocations: {tally}"
        await asyncio.sleep(0.05)


def coturn_pids(site: Site) -> dict[str, int | None]:
    return {k: v for k, v in localstack.status(site.load(), "local").items() if k.startswith("coturn-")}


async def test_rotate_deploy_prune_cycle_never_rejects_a_fresh_credential(site2: Site) -> None:
    site = site2
    await cli(site, "deploy", "--region", "local")
    cfg = site.load()
    hosts = [n.hostname for n in region_nodes(cfg, "local")]
    assert hosts == ["127.0.0.1", "127.0.0.2"]
    old = keyring.load(cfg.secrets_path).primary

    tally, stop = Tally(), asyncio.Event()
    client = asyncio.create_task(hammer(site, hosts, stop, tally))
    try:
        await more(tally, 20)
        await cli(site, "secret", "rotate", "--stage")
        staged = keyring.load(cfg.secrets_path).secrets[0]
        assert staged.staged
        await more(tally, 10)

        before = coturn_pids(site)
        _, out = await cli(site, "deploy", "--region", "local", "--json")
        report = json.loads(out)
        assert (report["ok"], report["promoted"]) == (True, staged.id)
        rolled = coturn_pids(site)
        assert rolled == before  # a secret change is a table row: coturn is never restarted
        assert keyring.load(cfg.secrets_path).primary.id == staged.id
        await more(tally, 10)

        await cli(site, "secret", "prune", "--grace", "0")
        ring = keyring.load(cfg.secrets_path)
        assert [s.id for s in ring.secrets] == [staged.id]
        await cli(site, "deploy", "--region", "local")
        assert coturn_pids(site) == rolled
        await more(tally, 20)
    finally:
        stop.set()
        await asyncio.wait_for(client, 30)

    print(f"rotation client: {tally}")
    assert tally.unauthorized == []
    assert tally.other == []
    assert tally.unavailable == 0
    assert tally.ok >= 60

    # Every node now accepts only the new secret: the old one is really gone from the fleet...
    for node in region_nodes(cfg, "local"):
        userdb = localstack.layout(cfg, "local").userdb(node)
        assert secretdb.read(userdb, cfg.project.effective_realm) == {staged.value}
    stale = credentials.issue("late-caller", old.value, int(time.time()), 600)
    try:
        await allocate(hosts[0], site.listening, stale.username, stale.password)
    except stun.TransactionFailed as exc:
        assert error_code(exc) == 401
    else:
        raise AssertionError("a credential from the pruned secret still allocates")


async def test_unstaged_rotation_without_deploy_is_what_breaks_clients(site2: Site) -> None:
    """Control: the client does see 401s when issuing switches before the nodes know the secret."""
    site = site2
    await cli(site, "deploy", "--region", "local")
    await cli(site, "secret", "rotate")  # immediately primary, nodes not yet updated
    hosts = [n.hostname for n in region_nodes(site.load(), "local")]
    tally, stop = Tally(), asyncio.Event()
    client = asyncio.create_task(hammer(site, hosts, stop, tally))
    deadline = time.monotonic() + 30
    while not tally.unauthorized and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(client, 30)
    assert tally.unauthorized and tally.ok == 0
