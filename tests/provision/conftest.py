"""A real moto server (HTTP endpoint) that boto3 reaches through the standard `AWS_ENDPOINT_URL`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.daemons import free_port, wait_port

DEBIAN_OWNER = "136693071363"

#: Images the fake account offers: two Debian 12 builds (the newer must win) and a decoy.
AMIS = [
    {"ami_id": "ami-0de0000000000old", "name": "debian-12-amd64-20240101-1000", "creation_date": "2024-01-01T10:00:00.000Z"},
    {"ami_id": "ami-0de0000000000new", "name": "debian-12-amd64-20250601-2000", "creation_date": "2025-06-01T20:00:00.000Z"},
    {"ami_id": "ami-0de00000000arm64", "name": "debian-12-arm64-20250701-2100", "creation_date": "2025-07-01T21:00:00.000Z",
     "architecture": "arm64"},
]  # fmt: skip


def _ami(item: dict[str, str]) -> dict[str, object]:
    return {
        "state": "available",
        "public": True,
        "owner_id": DEBIAN_OWNER,
        "image_location": f"{DEBIAN_OWNER}/{item['name']}",
        "sriov": "simple",
        "root_device_type": "ebs",
        "root_device_name": "/dev/xvda",
        "description": "Debian 12 (test image)",
        "image_type": "machine",
        "platform": None,
        "architecture": "x86_64",
        "virtualization_type": "hvm",
        "hypervisor": "xen",
        **item,
    }


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server as a subprocess; its AMI catalogue comes from MOTO_AMIS_PATH (moto's own setting)."""
    work = tmp_path_factory.mktemp("moto")
    amis = work / "amis.json"
    amis.write_text(json.dumps([_ami(a) for a in AMIS]))
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    log = (work / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_AMIS_PATH": str(amis), "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials and the moto endpoint, exactly as an operator would set them for AWS."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=30)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    return moto_endpoint


def ssh_key(path: Path) -> Path:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" test\n")
    return path


def write_config(tmp: Path, region_toml: str = "", project: str = "demo") -> Path:
    """A turnkit.toml with one aws region `eu` (2 nodes) and an SSH key next to it."""
    key = ssh_key(tmp / "id_ed25519.pub")
    text = (
        f'[project]\nname = "{project}"\ndomain = "example.test"\n\n'
        f'[regions.eu]\nprovider = "aws"\nnodes = 2\nssh_cidr = "203.0.113.0/24"\nssh_public_key = "{key}"\n'
    )
    path = tmp / "turnkit.toml"
    path.write_text(text + region_toml)
    return path


def run_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed CLI as a user runs it (AWS settings come from this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "turnkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
        check=False,
    )
