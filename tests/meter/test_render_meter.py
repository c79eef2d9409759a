"""The statsdb block, the node's statsdb Redis config and the meter unit, as rendered."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.daemons import local_config
from turnkit import render, resources
from turnkit.errors import SecretStoreError
from turnkit.meter import secret
from turnkit.nodes import Node

NODE = Node("turn-1", "local", "127.0.0.1", "127.0.0.1", None)


def files(tmp_path: Path, toml: str = "", **overrides: object) -> dict[str, render.Rendered]:
    cfg = local_config(tmp_path, toml)
    env = render.environment(resources.template_dir())
    return render.render_node(env, cfg, NODE, ["s3cret"], "4.6.1", overrides)


def test_statsdb_only_with_a_password_and_only_to_loopback(tmp_path: Path) -> None:
    plain = files(tmp_path)["turn-1/turnserver.conf"].content
    assert "redis-statsdb" not in plain and "bps-capacity" not in plain
    password = secret.node_password("m" * 32, "turn-1")
    toml = "[meter]\nstatsdb_port = 6391\nnode_bps_capacity = 125000000\n"
    out = files(tmp_path, toml, coturn_statsdb_password=password)
    conf = out["turn-1/turnserver.conf"]
    assert f'redis-statsdb="ip=127.0.0.1 dbname=0 password={password} port=6391 connect_timeout=30"\n' in conf.content
    assert "bps-capacity=125000000\n" in conf.content
    assert conf.mode == 0o640  # the password is never world-readable
    redis_conf = out["turn-1/redis/redis-turnkit-statsdb.conf"]
    assert redis_conf.mode == 0o640
    assert "bind 127.0.0.1 -::1\n" in redis_conf.content and f"requirepass {password}\n" in redis_conf.content
    unit = out["turn-1/systemd/turnkit-meter.service"].content
    assert "--node turn-1 --region local" in unit and password not in unit
    assert "EnvironmentFile=/etc/turnkit/meter.env\n" in unit


def test_node_passwords_differ_per_node_and_suit_coturn() -> None:
    a, b = secret.node_password("m" * 32, "turn-1"), secret.node_password("m" * 32, "turn-2")
    assert a != b and secret.PASSWORD_RE.match(a) and " " not in a


def test_master_secret_is_created_0600_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "meter.secret"
    value = secret.load_or_create(path)
    assert secret.load_or_create(path) == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("has a space in it!\n")
    with pytest.raises(SecretStoreError) as err:
        secret.load_or_create(path)
    assert str(err.value) == f"{path}: meter secret must be 16-128 characters of [A-Za-z0-9_-]"
