"""What a remote region's meters get from the controller (turnkit.meter.remote, deploy.Fleet): each
node only its own passwords, in the secrets file of its own run; the store only hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests import daemons
from tests.helpers.cli import sourced
from turnkit import ansible, deploy, keyring, localmeter
from turnkit.meter import remote
from turnkit.nodes import Node

NODES = [
    Node("turn-1", "eu", "turn-1.eu.example.test", "203.0.113.10"),
    Node("turn-2", "eu", "turn-2.eu.example.test", "203.0.113.11"),
]


def fleet(tmp_path: Path) -> deploy.Fleet:
    extra = '\n[signaling]\nserver_name = "call.example.test"\n\n[regions.eu]\nprovider = "aws"\nnodes = 2\n'
    cfg = daemons.local_config(tmp_path, extra)
    keyring.save(cfg.secrets_path, keyring.init(1_700_000_000))
    keys = localmeter.load_keys(remote.paths(cfg, "eu"))
    return deploy.Fleet(cfg, "eu", NODES, meter=keys)


def test_each_node_run_carries_only_that_nodes_passwords(tmp_path: Path) -> None:
    f = fleet(tmp_path)
    assert f.meter is not None
    one = f._secrets(["turn-1"], signaling=False)
    assert one["coturn_statsdb_password"] == f.meter.statsdb(NODES[0])
    assert one["coturn_meter_central_url"] == (
        f"rediss://meter-turn-1:{f.meter.central('meter-turn-1')}@call.example.test:{f.cfg.meter.central_port}/0"
    )
    assert f.meter.statsdb(NODES[1]) not in str(one) and f.meter.central("meter-turn-2") not in str(one)
    assert "signaling_usage_store_acl" not in one

    store = f._secrets([], signaling=True)
    assert "coturn_statsdb_password" not in store
    acl = store["signaling_usage_store_acl"]
    assert f"user meter-turn-2 on #{hashlib.sha256(f.meter.central('meter-turn-2').encode()).hexdigest()} " in acl
    assert f.meter.central("meter-turn-2") not in acl  # hashes only
    # The signaling service's quota gate reads the store as the read-only user, by the certificate's name.
    assert store["signaling_usage_store_reader_env"] == {
        f.cfg.meter.central_url_env: f"rediss://usage:{f.meter.central('usage')}@call.example.test:"
        f"{f.cfg.meter.central_port}/0"
    }
    assert "signaling_usage_store_reader_env" not in one
    assert set(ansible.SECRET_VARS) >= {
        "coturn_statsdb_password", "coturn_meter_central_url", "signaling_usage_store_acl",
        "signaling_usage_store_reader_env",
    }  # fmt: skip


def test_the_master_secret_and_usage_env_are_private(tmp_path: Path) -> None:
    f = fleet(tmp_path)
    assert f.meter is not None
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = remote.write_usage_env(f.cfg, "eu", f.meter, ca)
    assert remote.paths(f.cfg, "eu").master.stat().st_mode & 0o777 == 0o600
    assert env.stat().st_mode & 0o777 == 0o600
    assert sourced(env) == {
        f.cfg.meter.central_url_env: f"rediss://usage:{f.meter.central('usage')}@call.example.test:"
        f"{f.cfg.meter.central_port}/0",
        "TURNKIT_METER_CENTRAL_CA": str(ca.resolve()),
    }
    assert remote.ca_vars(ca) == {
        "coturn_meter_central_ca_pem": "-----BEGIN CERTIFICATE-----\n",
        "signaling_usage_store_ca_pem": "-----BEGIN CERTIFICATE-----\n",
    }
    assert remote.ca_vars(None) == {}


def test_usage_env_is_quoted_for_the_shell_that_sources_it(tmp_path: Path) -> None:
    """A project path is the operator's: `$(…)`, quotes and spaces in it must stay text when
    `set -a; . usage.env` runs (it ran commands when the file held bare K=V lines)."""
    root = tmp_path / "my proj $(touch pwned) `touch pwned2` 'q'"
    root.mkdir()
    f = fleet(root)
    assert f.meter is not None
    ca = root / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = remote.write_usage_env(f.cfg, "eu", f.meter, ca)
    assert sourced(env)["TURNKIT_METER_CENTRAL_CA"] == str(ca.resolve())
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))
