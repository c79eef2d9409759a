"""The whole chain: probe → health file → the real signaling service leaves failing nodes out of
the ICE servers it hands to browsers; `--via-signaling` probes exactly what browsers get."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tests import daemons
from tests.helpers.probe import Project, turnkit
from turnkit import config as config_mod
from turnkit import health

JWT_SECRET = "probe-test-jwt-secret-with-enough-bytes"
ONLY_RELAY = ("--check", "allocate", "--check", "relay")


def lab_config(project: Project, server: daemons.Coturn) -> Path:
    """A static region of two loopback hosts: turn-a (127.0.0.1, coturn) and turn-b (127.0.0.2, nothing)."""
    path = project.tmp / "turnkit.toml"
    path.write_text(
        f'[project]\ndomain = "turn.example.test"\n\n[ports]\nlistening = {server.port}\ntls = {server.tls_port}\n\n'
        '[signaling]\ndefault_region = "lab"\nhealth_file = "health.json"\n\n'
        '[regions.lab]\nprovider = "static"\nnodes = 2\n'
        '[[regions.lab.hosts]]\nname = "turn-a"\naddress = "127.0.0.1"\n'
        '[[regions.lab.hosts]]\nname = "turn-b"\naddress = "127.0.0.2"\n'
    )
    return path


@pytest.fixture
def signaling_url(project: Project, coturn: daemons.Coturn) -> Iterator[str]:
    conf = lab_config(project, coturn)
    port = daemons.free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "turnkit"), "signaling", "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(conf), "--log-level", "warning"],
        env={**daemons.env_without("TURNKIT_CONFIG"), "TURNKIT_JWT_SECRET": JWT_SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        daemons.wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def token(sub: str = "probe-bot") -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")


def ice_hosts(base: str) -> set[str]:
    request = urllib.request.Request(base + "/api/ice-servers", headers={"Authorization": f"Bearer {token()}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        doc = json.loads(response.read())
    return {url.split(":")[1] for server in doc["iceServers"] for url in server["urls"]}


def test_failing_node_drops_out_of_ice_servers(project: Project, coturn: daemons.Coturn, signaling_url: str) -> None:
    conf = project.tmp / "turnkit.toml"
    assert ice_hosts(signaling_url) == {"127.0.0.1", "127.0.0.2"}  # never probed: both offered
    proc = turnkit(
        "probe", "--config", str(conf), "--region", "lab", *ONLY_RELAY, "--ca-file", str(coturn.certs.ca), "--json"
    )
    assert proc.returncode == 1, proc.stderr
    verdicts = health.read_file(health.path_for(config_mod.load(conf)))
    assert verdicts["lab/turn-a"].ok is True
    assert verdicts["lab/turn-b"].ok is False and "allocate/udp" in verdicts["lab/turn-b"].failed
    # Signaling looks at the health file at most once a second (signaling.ice.HEALTH_RECHECK).
    deadline = time.monotonic() + 10
    while (hosts := ice_hosts(signaling_url)) != {"127.0.0.1"} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hosts == {"127.0.0.1"}


def test_probe_via_signaling_checks_what_browsers_get(
    project: Project, coturn: daemons.Coturn, signaling_url: str
) -> None:
    conf = project.tmp / "turnkit.toml"
    turnkit(
        "probe", "--config", str(conf), "--region", "lab", *ONLY_RELAY, "--ca-file", str(coturn.certs.ca), "--no-record"
    )
    first = turnkit("probe", "--config", str(conf), "--region", "lab", *ONLY_RELAY, "--ca-file", str(coturn.certs.ca))
    assert first.returncode == 1  # turn-b is down; health now says so
    proc = turnkit(
        "probe", "--config", str(conf), "--via-signaling", signaling_url, *ONLY_RELAY, "--ca-file", str(coturn.certs.ca), "--json",
        env={"TURNKIT_PROBE_TOKEN": token()},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    # Only the healthy node is handed out, probed with the credential signaling minted for the token's user.
    assert {(r["region"], r["node"]) for r in doc["results"]} == {("lab", "turn-a")}
    assert {(r["transport"], r["check"]) for r in doc["results"]} == {
        ("udp", "allocate"), ("udp", "relay"), ("tcp", "allocate"), ("tcp", "relay"), ("tls", "allocate"), ("tls", "relay"),
    }  # fmt: skip


def test_rejected_token_is_a_failed_check(project: Project, coturn: daemons.Coturn, signaling_url: str) -> None:
    conf = project.tmp / "turnkit.toml"
    bad = jwt.encode(
        {"sub": "x", "exp": int(time.time()) + 600}, "not-the-jwt-secret-at-all-but-long-enough", algorithm="HS256"
    )
    token_file = project.tmp / "probe.jwt"
    token_file.write_text(bad + "\n")
    proc = turnkit("probe", "--config", str(conf), "--via-signaling", signaling_url, "--token-file", str(token_file))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: signaling: GET {signaling_url}/api/ice-servers: HTTP 401 Unauthorized"
    assert bad not in proc.stderr


def test_probe_via_signaling_refuses_servers_that_are_not_configured_nodes(
    project: Project, coturn: daemons.Coturn, signaling_url: str
) -> None:
    """The service hands out 127.0.0.1 and 127.0.0.2; a config whose only node is 127.0.0.9 refuses both."""
    other = project.tmp / "other"
    other.mkdir()
    conf = other / "turnkit.toml"
    conf.write_text(
        f'[project]\ndomain = "turn.example.test"\n\n[ports]\nlistening = {coturn.port}\ntls = {coturn.tls_port}\n\n'
        '[regions.elsewhere]\nprovider = "static"\nnodes = 1\n[[regions.elsewhere.hosts]]\naddress = "127.0.0.9"\n'
    )
    args = ("probe", "--config", str(conf), "--via-signaling", signaling_url, "--check", "allocate", "--no-record")
    refused = turnkit(*args, env={"TURNKIT_PROBE_TOKEN": token()})
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: --via-signaling: `stun:127.0.0.1:{coturn.port}?transport=udp` is not a node of any configured region "
        "(pass --allow-foreign-targets to probe it anyway)"
    )
    assert refused.stdout == ""
    allowed = turnkit(*args, "--allow-foreign-targets", "--ca-file", str(coturn.certs.ca), "--json",
                      env={"TURNKIT_PROBE_TOKEN": token()})  # fmt: skip
    assert allowed.returncode in (0, 1), allowed.stderr
    assert {r["url"].split(":")[1] for r in json.loads(allowed.stdout)["results"]} == {"127.0.0.1", "127.0.0.2"}
