"""Ansible test helpers: the chroot target's inputs and secrets, and running site.yml against it
(the session fixture that makes the chroot lives in tests/ansible/conftest.py)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnkit import ansible, pki
from turnkit.config import Config
from turnkit.nodes import Node

#: The node's statsdb password and its central-store URL (secrets: extra-vars file only).
STATSDB_PASSWORD = "statsdb0123456789abcdef0123456789"
CENTRAL_URL = "rediss://meter-turn-1:central0123456789abcdef@signaling.example.test:6380/0"
#: The central usage store's users: `meter-turn-1` (writer) by password hash.
USAGE_STORE_PASSWORD = "central0123456789abcdef"
USAGE_STORE_ACL = (
    f"user default on #{hashlib.sha256(b'unguessable-default-0123456789').hexdigest()} ~* &* +@all\n"
    f"user meter-turn-1 on #{hashlib.sha256(USAGE_STORE_PASSWORD.encode()).hexdigest()} ~turnkit:usage:* "
    "+eval +hincrby +set +hgetall +hget +scan +ping +hello +auth +client\n"
)
#: No systemd in a chroot: every role enables its units by symlink instead of starting them.
NO_SYSTEMD = {f"{role}_manage_service": False for role in ("coturn", "nginx", "certbot", "signaling", "probe")}
COTURN_VERSION = "4.6.1"


#: HS256 secret the signaling host's environment file must carry (never ansible's output).
JWT_SECRET = "jwt-secret-for-the-chroot-test-0123456789"


@dataclass
class Target:
    """The chroot, the inputs the playbook ran with, and the first run's result."""

    root: Path
    cfg: Config
    node: Node
    secret: str
    certs: pki.CertFiles
    host_overrides: dict[str, Any]
    region_overrides: dict[str, Any]
    first: ansible.RunResult | None = None
    output: str = ""
    keyring_json: str = field(default="")

    def inventory(self) -> ansible.Inventory:
        """The inventory `turnkit deploy` builds, with both roles on one chroot and no certificates
        unless the region overrides ask for them."""
        return ansible.region_inventory(
            self.cfg, [self.node], COTURN_VERSION, connection="chroot", addresses={self.node.name: str(self.root)},
            certificates=False, node_overrides=self.host_overrides, region_overrides=self.region_overrides,
        )  # fmt: skip

    def secret_vars(self) -> dict[str, Any]:
        return {
            "coturn_static_auth_secrets": [self.secret],
            "coturn_key_pem": self.certs.key.read_text(),
            "signaling_secrets_json": self.keyring_json,
            "signaling_environment": {"TURNKIT_JWT_SECRET": JWT_SECRET},
            "coturn_statsdb_password": STATSDB_PASSWORD,
            "coturn_meter_central_url": CENTRAL_URL,
            "signaling_usage_store_acl": USAGE_STORE_ACL,
        }

    def run(self, secret_vars: dict[str, Any] | None = None) -> tuple[ansible.RunResult, str]:
        out = io.StringIO()
        result = ansible.run_playbook(
            self.inventory(), secret_vars if secret_vars is not None else self.secret_vars(),
            extra_vars=NO_SYSTEMD, stream=out, timeout=900,
        )  # fmt: skip
        return result, out.getvalue()
