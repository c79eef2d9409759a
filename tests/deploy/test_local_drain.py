"""Deploy drains a node before a coturn restart and undrains it after a passing probe (issue 12 item 2).

Local region, real coturn + statsdb: a config change that restarts coturn while an allocation is
live. The node must be marked draining (health file) while the old coturn still runs, the restart
must wait for the allocation to end, and the node must be back in service after the probe.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable

from tests import turnclient
from tests.helpers.deploy import Site
from turnkit import clock, credentials, drain, health, keyring, localmeter, localstack
from turnkit.nodes import region_nodes


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_config_change_drains_waits_for_the_live_allocation_restarts_and_undrains(site: Site) -> None:
    with site.config.open("a") as f:
        f.write("\n[coturn]\ndrain_timeout = 120\n")
    assert site.cli("deploy", "--region", "local").returncode == 0
    cfg = site.load()
    node = region_nodes(cfg, "local")[0]
    key = health.key(node)
    before = localstack.status(cfg, "local")
    keys = localmeter.load_keys(localstack.layout(cfg, "local").meter)
    statsdb = drain.StatsDb(localmeter.statsdb_url(cfg, 0), keys.statsdb(node))

    async def scenario() -> subprocess.CompletedProcess[str]:
        cred = credentials.issue("carol", keyring.load(cfg.secrets_path).primary.value, clock.now(), 600)
        allocation, _ = await turnclient.allocate(site.listening, cred.username, cred.password)
        try:
            assert statsdb.count(cfg.project.effective_realm) == 1
            # A change coturn only reads at start: its config file changes, so it must restart.
            site.config.write_text(
                site.config.read_text().replace("drain_timeout = 120", "drain_timeout = 120\nmax_bps = 250000")
            )
            deploy = subprocess.Popen(
                [sys.executable, "-m", "turnkit", "deploy", "--region", "local"],
                cwd=site.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            path = health.path_for(cfg)
            await asyncio.to_thread(
                wait_for, lambda: health.read_file(path).get(key, health.NodeHealth(True, 0)).draining
            )
            # Draining, and waiting: the old coturn still serves the live allocation.
            await asyncio.sleep(2.0)
            assert deploy.poll() is None
            assert localstack.status(cfg, "local")["coturn-turn-1"] == before["coturn-turn-1"]
            assert statsdb.count(cfg.project.effective_realm) == 1
        finally:
            allocation.close()  # Refresh lifetime 0: the count reaches 0 and the restart goes ahead
        out, err = await asyncio.to_thread(deploy.communicate, timeout=300)
        return subprocess.CompletedProcess(deploy.args, deploy.returncode, out, err)

    result = asyncio.run(scenario())
    assert result.returncode == 0, result.stderr
    after = localstack.status(cfg, "local")
    assert after["coturn-turn-1"] != before["coturn-turn-1"]  # restarted …
    for name in ("statsdb-turn-1", "meter-central"):  # the meter and signaling read turnkit.toml: they restart too
        assert after[name] == before[name]
    assert "max-bps=250000" in (localstack.layout(cfg, "local").coturn_dir(node) / "turnserver.conf").read_text()
    entry = health.read_file(health.path_for(cfg))[key]
    assert entry.ok and not entry.draining  # undrained after the passing probe
    err = result.stderr
    assert f"{key}: draining before its coturn restart (up to 120 s)" in err
    assert f"waiting: 1 live allocation(s) on {key}" in err
    assert err.index("waiting: 1 live") < err.index("stopped coturn-turn-1") < err.index("started coturn-turn-1")
    assert err.index("started coturn-turn-1") < err.index(f"{key}: probe passed after the restart; back in service")
