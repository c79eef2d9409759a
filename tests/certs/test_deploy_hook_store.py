"""certbot's deploy hook on the signaling host also renews the central usage store's certificate.

The store (redis-server@turnkit-usage, docs/metering.md) serves its own copy of the host's
certificate, readable by group `redis`. A renewal must replace that copy and restart the store, or the
TURN nodes' meters and the quota gate stop verifying it once the old certificate expires. Here the
rendered hook runs as certbot runs it (RENEWED_LINEAGE) against a real TLS-only redis-server whose
"restart" command stops it, and the restarted server serves the renewed certificate.
"""

from __future__ import annotations

import datetime as dt
import grp
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

from tests import daemons
from turnkit import certs, pki, resources
from turnkit.nodes import Node

NAME = "call.example.test"
NODE = Node("turn-1", "local", "127.0.0.1", "127.0.0.1", None)
GROUP = "redis"  # Debian's redis-server package creates it (the Makefile installs redis-server)


def write_hook(tmp: Path, store: Path, restart: str) -> Path:
    cfg = daemons.local_config(tmp)
    overrides: dict[str, Any] = {
        "certbot_acme_server": "https://127.0.0.1:1/dir",
        "certbot_webroot": str(tmp / "webroot"),
        "certbot_config_file": str(tmp / "letsencrypt/cli.ini"),
        "certbot_deploy_hook_path": str(tmp / "letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh"),
        "certbot_coturn_cert_dir": str(tmp / "coturn-certs"),
        "certbot_coturn_reload_command": "true",
        "certbot_nginx_reload_command": "true",
        "certbot_usage_store_cert_dir": str(store),
        "certbot_usage_store_reload_command": restart,
    }
    written = certs.write_settings(certs.settings_context(cfg, [NODE], overrides), resources.template_dir())
    return written["certbot_deploy_hook_path"]


def lineage(tmp: Path, ca_name: str) -> tuple[Path, pki.CertFiles]:
    """A live dir as certbot leaves it after a renewal (fullchain.pem, privkey.pem)."""
    made = pki.make_ca_and_cert(tmp / ca_name, [NAME, "127.0.0.1"], dt.datetime.now(dt.UTC), 30, ca_name=ca_name)
    live = tmp / "live" / ca_name
    live.mkdir(parents=True)
    shutil.copyfile(made.cert, live / "fullchain.pem")
    shutil.copyfile(made.key, live / "privkey.pem")
    return live, made


def run_hook(hook: Path, live: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "RENEWED_LINEAGE": str(live)}
    return subprocess.run(["/bin/sh", str(hook)], env=env, capture_output=True, text=True, timeout=60, check=False)


def served_by(port: int, ca: Path) -> bool:
    """The store's TLS port presents a certificate for NAME that verifies against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=NAME),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def start_store(store: Path, port: int, pidfile: Path) -> subprocess.Popen[bytes]:
    """A TLS-only redis-server on the store's copies, as redis-server@turnkit-usage runs it."""
    argv = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(store / "fullchain.pem"), "--tls-key-file", str(store / "privkey.pem"),
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(store.parent),
            "--pidfile", str(pidfile)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemons.wait_port(port)
    return proc


def test_renewal_refreshes_the_usage_store_copy_and_restarts_the_store(tmp_path: Path) -> None:
    store = tmp_path / "redis-turnkit-usage"
    store.mkdir(mode=0o750)
    old_live, old = lineage(tmp_path, "old CA")
    new_live, new = lineage(tmp_path, "renewed CA")
    for name in ("fullchain.pem", "privkey.pem"):  # what the signaling role copied at deploy
        shutil.copyfile(old_live / name, store / name)
    pidfile, restarted = tmp_path / "store.pid", tmp_path / "store-restarted"
    hook = write_hook(tmp_path, store, f"kill $(cat {pidfile}) && touch {restarted}")
    port = daemons.free_port()
    proc = start_store(store, port, pidfile)
    try:
        assert served_by(port, old.ca) and not served_by(port, new.ca)

        done = run_hook(hook, new_live)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert restarted.exists(), "the hook did not restart the usage store"
        assert proc.wait(timeout=15) == 0  # stopped by the hook's restart command
        for name in ("fullchain.pem", "privkey.pem"):
            copy = store / name
            assert copy.read_bytes() == (new_live / name).read_bytes()
            assert copy.stat().st_mode & 0o777 == 0o640
            assert grp.getgrgid(copy.stat().st_gid).gr_name == GROUP
        assert sorted(p.name for p in store.iterdir()) == ["fullchain.pem", "privkey.pem"]  # no temp dir left
        assert (tmp_path / "coturn-certs/fullchain.pem").read_bytes() == (new_live / "fullchain.pem").read_bytes()

        proc = start_store(store, port, pidfile)  # what systemctl restart starts again
        assert served_by(port, new.ca) and not served_by(port, old.ca)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_host_without_the_usage_store_skips_it(tmp_path: Path) -> None:
    store = tmp_path / "redis-turnkit-usage"  # a TURN node: no store, so no copy and no restart
    marker = tmp_path / "store-restarted"
    hook = write_hook(tmp_path, store, f"touch {marker}")
    live, _ = lineage(tmp_path, "renewed CA")
    done = run_hook(hook, live)
    assert done.returncode == 0, done.stderr
    assert not store.exists() and not marker.exists()
    assert (tmp_path / "coturn-certs/privkey.pem").read_bytes() == (live / "privkey.pem").read_bytes()
