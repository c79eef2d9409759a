"""The rendered coturn config against the real turnserver: auth, rotation, and live deny rules."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import turnclient
from tests.daemons import coturn_running, local_config
from turnkit import config, credentials, keyring

BAD_CONFIG_MARKERS = ("Bad configuration format", "unknown option", "CONFIG ERROR", "Cannot find config file")


def turnkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "turnkit", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def issue(cwd: Path, user: str = "alice") -> tuple[str, str]:
    out = turnkit(cwd, "creds", "issue", "--user", user, "--ttl", "600")
    assert out.returncode == 0, out.stderr
    server = json.loads(out.stdout)["iceServers"][-1]
    return server["username"], server["credential"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    local_config(tmp_path)
    assert turnkit(tmp_path, "secret", "init").returncode == 0
    return tmp_path


def accepted(project: Path) -> list[str]:
    return keyring.load(config.load(project / "turnkit.toml").secrets_path).accepted


def test_rendered_config_is_accepted_without_warnings_about_format(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    with coturn_running(cfg, accepted(project), project / "c1") as server:
        log = server.log_text()
    assert "Version Coturn-4.6" in log
    for marker in BAD_CONFIG_MARKERS:
        assert marker not in log, f"coturn complained: {marker}"


async def test_relay_round_trip_with_cli_issued_credentials(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    username, password = issue(project)
    with coturn_running(cfg, accepted(project), project / "c1") as server:
        assert await turnclient.round_trip(server.port, username, password) == b"hello-from-1"


async def test_expired_and_wrong_secret_get_401(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    ring = keyring.load(cfg.secrets_path)
    expired = credentials.issue("alice", ring.primary.value, int(time.time()) - 3600, 60)
    forged = credentials.issue("alice", "not-the-secret", int(time.time()), 600)
    with coturn_running(cfg, ring.accepted, project / "c1") as server:
        assert await turnclient.allocation_error(server.port, expired.username, expired.password) == 401
        assert await turnclient.allocation_error(server.port, forged.username, forged.password) == 401


async def test_rotate_keeps_old_credentials_until_prune(project: Path) -> None:
    cfg = config.load(project / "turnkit.toml")
    old_user, old_pass = issue(project)
    assert turnkit(project, "secret", "rotate").returncode == 0
    new_user, new_pass = issue(project)
    assert len(accepted(project)) == 2
    with coturn_running(cfg, accepted(project), project / "c1") as server:
        assert await turnclient.allocation_error(server.port, old_user, old_pass) is None
        assert await turnclient.allocation_error(server.port, new_user, new_pass) is None
    assert turnkit(project, "secret", "prune", "--grace", "0").returncode == 0
    assert len(accepted(project)) == 1
    with coturn_running(cfg, accepted(project), project / "c2") as server:
        assert await turnclient.allocation_error(server.port, old_user, old_pass) == 401
        assert await turnclient.allocation_error(server.port, new_user, new_pass) is None


async def test_hardened_config_refuses_loopback_peer(tmp_path: Path) -> None:
    cfg = local_config(tmp_path, allow_loopback_peers=False)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    with coturn_running(cfg, ["k1"], tmp_path / "c") as server:
        assert "allow-loopback-peers" not in server.conf.read_text()
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "127.0.0.1") == 403
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "10.1.2.3") == 403


async def test_test_only_switch_allows_loopback_peer(tmp_path: Path) -> None:
    cfg = local_config(tmp_path, allow_loopback_peers=True)
    cred = credentials.issue("alice", "k1", int(time.time()), 600)
    with coturn_running(cfg, ["k1"], tmp_path / "c") as server:
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "127.0.0.1") is None
        # Every other special-purpose range stays denied even in the local region.
        assert await turnclient.create_permission_error(server.port, cred.username, cred.password, "10.1.2.3") == 403
