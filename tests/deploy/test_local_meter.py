"""The local region meters too (issue 14): statsdb, coturn with statsdb, meter and central store, deployed.

`turnkit deploy --region local`, real relayed bytes through its coturn, then `turnkit usage --region
local --json` reports them; the passwords are in no argv and no file anyone else can read.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path

from tests.helpers import relay
from tests.helpers.cli import sourced
from tests.helpers.deploy import Site
from turnkit import keyring, localmeter, localstack
from turnkit.nodes import region_nodes

PACKETS = 300  # < 2048: coturn reports the traffic at close (docs/metering.md)


def usage_env(site: Site) -> dict[str, str]:
    """The environment `set -a; . meter/usage.env` gives (the read-only user of the central store)."""
    lay = localstack.layout(site.load(), "local")
    return {**os.environ, **sourced(lay.meter.usage_env)}


def usage_row(site: Site, user: str, sent: int, timeout: float = 30.0) -> dict[str, int]:
    lay = localstack.layout(site.load(), "local")
    row: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = site.cli(
            "usage", "--region", "local", "--json", "--by", "user", "--ca-file", str(lay.cert_files.ca),
            env=usage_env(site),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        row = next((r for r in json.loads(out.stdout)["rows"] if r["key"] == user), {})
        if relay.arrived(row, sent):
            return row
        time.sleep(0.5)
    return row


def test_deploy_runs_the_meter_and_usage_reports_relayed_bytes(site: Site) -> None:
    out = site.cli("deploy", "--region", "local", "--json")
    assert out.returncode == 0, out.stderr
    cfg = site.load()
    lay = localstack.layout(cfg, "local")
    node = region_nodes(cfg, "local")[0]
    procs = localstack.status(cfg, "local")
    assert set(procs) == {"meter-central", "statsdb-turn-1", "coturn-turn-1", "meter-turn-1", "signaling"}
    assert all(procs.values())

    secret = keyring.load(cfg.secrets_path).primary.value
    relayed = asyncio.run(relay.relay_both_ways(site.listening, secret, ("alice", "bob"), PACKETS))
    for user in ("alice", "bob"):
        relay.assert_metered(usage_row(site, user, relayed.sent), relayed)

    # Every password: derived from the 0600 master secret, in 0600 files or environments only.
    keys = localmeter.load_keys(lay.meter)
    passwords = [keys.statsdb(node), *(keys.central(u) for u in ("default", "meter-turn-1", "usage"))]
    for path in (lay.meter.master, lay.meter.usage_env, lay.meter.node(node) / "statsdb.conf",
                 lay.meter.central / "redis.conf", lay.meter.central / "users.acl",
                 lay.coturn_dir(node) / "turnserver.conf"):  # fmt: skip
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(lay.logs.stat().st_mode) == 0o700  # coturn logs its statsdb connection string
    assert not any(p in (lay.meter.central / "users.acl").read_text() for p in passwords)  # hashes only
    assert f"password={keys.statsdb(node)} " in (lay.coturn_dir(node) / "turnserver.conf").read_text()
    for pid in procs.values():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert not any(p in argv for p in passwords), argv
    assert not any(p in out.stdout + out.stderr for p in passwords)

    # The signaling service reads the store with the read-only user (quotas apply).
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{procs['signaling']}/environ").read_text().split("\0") if item
    )
    assert environ[cfg.meter.central_url_env] == localmeter.central_url(cfg, keys, "usage")
    assert environ["TURNKIT_METER_CENTRAL_CA"] == str(lay.cert_files.ca)

    # A second deploy keeps everything (no restart from the meter's own files).
    again = site.cli("deploy", "--region", "local", "--json")
    assert again.returncode == 0, again.stderr
    assert localstack.status(cfg, "local") == procs
