"""One Debian chroot per session, configured once by the real ansible-playbook with site.yml."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from tests import daemons
from tests.ansible.chroot import debian_chroot
from tests.helpers.ansible import Target
from turnkit import keyring, pki
from turnkit.nodes import Node


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
