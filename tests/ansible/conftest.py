"""One Debian chroot per session, configured once by the real ansible-playbook with site.yml."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import daemons
from tests.ansible.chroot import debian_chroot
from turnkit import ansible, keyring, pki
from turnkit.config import Config
from turnkit.nodes import Node

#: No systemd in a chroot: every role enables its units by symlink instead of starting them.
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


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """Debian bookworm configured by site.yml (coturn, nginx, certbot, signaling, probe)."""
    base = tmp_path_factory.mktemp("ansible-target")
    with debian_chroot(base) as root:
        cfg = daemons.local_config(base)
        node = Node("turn-1", "local", "127.0.0.1", "127.0.0.1", None)
        certs = pki.make_ca_and_cert(base / "certs", ["turn.example.test", "127.0.0.1"], dt.datetime.now(dt.UTC), 30)
        relay_min = 20000 + 100 * (daemons.free_port() % 400)
        host_overrides = {
            "coturn_listening_port": daemons.free_port(),
            "coturn_tls_listening_port": daemons.free_port(),
            "coturn_min_port": relay_min,
            "coturn_max_port": relay_min + 99,
            "coturn_pidfile": "/run/turnserver.pid",
            "coturn_log_file": "/var/log/turnserver-test.log",
            "coturn_cert_pem": certs.cert.read_text(),
        }
        region_overrides = {
            "nginx_cert_file": "/etc/turnkit/certs/fullchain.pem",
            "nginx_key_file": "/etc/turnkit/certs/privkey.pem",
            "signaling_usage_store_port": daemons.free_port(),
        }
        ring = keyring.init(int(time.time()))
        t = Target(
            root, cfg, node, ring.primary.value, certs, host_overrides, region_overrides,
            keyring_json=keyring.to_json(ring),
        )  # fmt: skip
        t.first, t.output = t.run()
        yield t
