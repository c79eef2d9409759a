"""Provisioning test helpers: moto AMIs and configs."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

DEBIAN_OWNER = "136693071363"


#: Images the fake account offers: two Debian 12 builds (the newer must win) and a decoy.
AMIS = [
    {"ami_id": "ami-0de0000000000old", "name": "debian-12-amd64-20240101-1000", "creation_date": "2024-01-01T10:00:00.000Z"},
    {"ami_id": "ami-0de0000000000new", "name": "debian-12-amd64-20250601-2000", "creation_date": "2025-06-01T20:00:00.000Z"},
    {"ami_id": "ami-0de00000000arm64", "name": "debian-12-arm64-20250701-2100", "creation_date": "2025-07-01T21:00:00.000Z",
     "architecture": "arm64"},
]  # fmt: skip


def ami_record(item: dict[str, str]) -> dict[str, object]:
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
