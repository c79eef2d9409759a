"""site.yml run for real against a Debian chroot; then the daemons it installed are started and probed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509

from tests import daemons, turnclient
from tests.certs.pebble import pebble_running
from tests.helpers.ansible import (
    CENTRAL_URL,
    COTURN_VERSION,
    JWT_SECRET,
    NO_SYSTEMD,
    STATSDB_PASSWORD,
    USAGE_STORE_ACL,
    USAGE_STORE_PASSWORD,
    Target,
)
from turnkit import ansible, credentials, render, resources, secretdb

DOMAIN = "turn.example.test"

#: Files the roles write (path inside the chroot) ← the file `turnkit render` produces for them.
RENDERED_AS = {
    "/etc/turnserver.conf": "turn-1/turnserver.conf",
    "/etc/systemd/system/coturn.service.d/turnkit.conf": "turn-1/systemd/coturn.service.d/turnkit.conf",
    "/etc/redis/redis-turnkit-statsdb.conf": "turn-1/redis/redis-turnkit-statsdb.conf",
    "/etc/systemd/system/turnkit-meter.service": "turn-1/systemd/turnkit-meter.service",
    "/etc/nginx/nginx.conf": "signaling/nginx/nginx.conf",
    "/etc/systemd/system/turnkit-signaling@.service": "signaling/systemd/turnkit-signaling@.service",
    "/etc/systemd/system/turnkit-probe.service": "signaling/systemd/turnkit-probe.service",
    "/etc/systemd/system/turnkit-probe.timer": "signaling/systemd/turnkit-probe.timer",
    "/etc/letsencrypt/cli.ini": "signaling/letsencrypt/cli.ini",
    "/etc/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh": (
        "signaling/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh"
    ),
}

#: Units enabled by symlink (no systemd in a chroot): link → target.
ENABLED = {
    "multi-user.target.wants/coturn.service": "/lib/systemd/system/coturn.service",
    "multi-user.target.wants/nginx.service": "/lib/systemd/system/nginx.service",
    "multi-user.target.wants/turnkit-signaling@8080.service": "/etc/systemd/system/turnkit-signaling@.service",
    "multi-user.target.wants/turnkit-signaling@8081.service": "/etc/systemd/system/turnkit-signaling@.service",
    "timers.target.wants/turnkit-probe.timer": "/etc/systemd/system/turnkit-probe.timer",
    "multi-user.target.wants/redis-server@turnkit-statsdb.service": "/lib/systemd/system/redis-server@.service",
    "multi-user.target.wants/turnkit-meter.service": "/etc/systemd/system/turnkit-meter.service",
    "multi-user.target.wants/redis-server@turnkit-usage.service": "/lib/systemd/system/redis-server@.service",
    "timers.target.wants/certbot.timer": "/lib/systemd/system/certbot.timer",
}


def in_chroot(target: Target, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(target.root), *argv], capture_output=True, text=True, timeout=60)


def test_first_run_configures_every_host(target: Target) -> None:
    assert target.first is not None
    assert target.first.recap["turn-1"]["failed"] == 0
    assert target.first.recap["turn-1"]["changed"] > 0
    assert "TASK [coturn : Write the coturn configuration]" in target.output
    for binary in ("/usr/bin/turnserver", "/usr/sbin/nginx", "/usr/bin/certbot"):
        assert (target.root / binary.lstrip("/")).is_file(), binary


def test_second_run_changes_nothing(target: Target) -> None:
    result, output = target.run()
    assert result.changed() == {"turn-1": 0}, output[-3000:]
    assert result.recap["turn-1"]["failed"] == 0


def test_files_are_byte_identical_to_turnkit_render(target: Target) -> None:
    """One template set: what Ansible wrote equals `turnkit render` with the same variables."""
    files = render.render_region(
        target.cfg, [target.node], [target.secret], COTURN_VERSION, resources.template_dir(),
        {**target.host_overrides, **target.region_overrides, "coturn_statsdb_password": STATSDB_PASSWORD},
    )  # fmt: skip
    for path, key in RENDERED_AS.items():
        written = (target.root / path.lstrip("/")).read_text()
        assert written == files[key].content, path


def test_secrets_reach_the_target_but_not_the_output(target: Target) -> None:
    conf = (target.root / "etc/turnserver.conf").read_text()
    assert target.secret not in conf  # coturn reads it from its table (the secrets task)
    assert secretdb.read(target.root / "var/lib/turn/turndb", target.cfg.project.effective_realm) == {target.secret}
    keyring = target.root / "etc/turnkit/turnkit.secrets.json"
    assert keyring.read_text() == target.keyring_json
    assert keyring.stat().st_mode & 0o777 == 0o600
    env_file = target.root / "etc/turnkit/signaling.env"
    assert env_file.read_text() == f"TURNKIT_JWT_SECRET={JWT_SECRET}\n"
    assert env_file.stat().st_mode & 0o777 == 0o600
    key_line = target.certs.key.read_text().splitlines()[1]
    meter_env = target.root / "etc/turnkit/meter.env"
    assert meter_env.read_text() == (
        f"TURNKIT_STATSDB_URL=redis://127.0.0.1:6390/0\nTURNKIT_STATSDB_PASSWORD={STATSDB_PASSWORD}\n"
        f"TURNKIT_METER_CENTRAL_URL={CENTRAL_URL}\n"
    )
    assert f"password={STATSDB_PASSWORD} " in conf  # coturn's statsdb line: in the 0640 root:turnserver file
    for leaked in (target.secret, key_line, target.keyring_json.strip(), JWT_SECRET, STATSDB_PASSWORD, CENTRAL_URL):
        assert leaked not in target.output


def test_file_owners_and_modes(target: Target) -> None:
    stat = in_chroot(
        target, "stat", "-c", "%n %U:%G %a",
        "/etc/turnserver.conf", "/etc/turnkit/certs", "/etc/turnkit/certs/fullchain.pem",
        "/etc/turnkit/certs/privkey.pem", "/etc/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh",
        "/var/lib/turn/turndb", "/etc/redis/redis-turnkit-statsdb.conf", "/etc/turnkit/meter.env",
        "/etc/systemd/system/turnkit-meter.service", "/etc/redis/redis-turnkit-usage.conf",
        "/etc/redis/turnkit-usage", "/etc/redis/turnkit-usage/users.acl", "/etc/redis/turnkit-usage/privkey.pem",
    )  # fmt: skip
    assert stat.stdout.splitlines() == [
        "/etc/turnserver.conf root:turnserver 640",
        "/etc/turnkit/certs turnserver:turnserver 700",
        "/etc/turnkit/certs/fullchain.pem turnserver:turnserver 400",
        "/etc/turnkit/certs/privkey.pem turnserver:turnserver 400",
        "/etc/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh root:root 755",
        "/var/lib/turn/turndb turnserver:turnserver 600",
        "/etc/redis/redis-turnkit-statsdb.conf root:redis 640",
        "/etc/turnkit/meter.env root:root 600",
        "/etc/systemd/system/turnkit-meter.service root:root 644",
        "/etc/redis/redis-turnkit-usage.conf root:redis 640",
        "/etc/redis/turnkit-usage root:redis 750",
        "/etc/redis/turnkit-usage/users.acl root:redis 640",
        "/etc/redis/turnkit-usage/privkey.pem root:redis 640",
    ]
    assert (target.root / "etc/redis/turnkit-usage/users.acl").read_text() == USAGE_STORE_ACL


def test_installed_usage_store_serves_tls_to_its_acl_users_only(target: Target) -> None:
    """The Debian redis-server in the target runs the central store from the role's files."""
    port = target.region_overrides["signaling_usage_store_port"]
    proc = subprocess.Popen(
        ["chroot", str(target.root), "redis-server", "/etc/redis/redis-turnkit-usage.conf",
         "--pidfile", "/tmp/usage-store-test.pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        daemons.wait_port(port)
        tls = {"ssl": True, "ssl_ca_certs": str(target.certs.ca), "socket_timeout": 5}
        node = redis.Redis(host="127.0.0.1", port=port, username="meter-turn-1", password=USAGE_STORE_PASSWORD, **tls)
        assert node.ping() is True
        assert node.hincrby("turnkit:usage:test", "x", 1) == 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            node.get("elsewhere")  # ~turnkit:usage:* and its commands only
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, username="meter-turn-1", password="wrong", **tls).ping()
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()  # no plain-text port
    finally:
        daemons.stop_process(proc)


def test_installed_statsdb_redis_runs_from_the_written_config(target: Target) -> None:
    """The Debian redis-server in the target loads the role's config and wants its password."""
    port = daemons.free_port()
    proc = subprocess.Popen(
        ["chroot", str(target.root), "redis-server", "/etc/redis/redis-turnkit-statsdb.conf", "--port", str(port),
         "--pidfile", "/tmp/statsdb-test.pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        daemons.wait_port(port)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=5).ping()
        assert redis.Redis(port=port, password=STATSDB_PASSWORD, socket_timeout=5).ping() is True
    finally:
        daemons.stop_process(proc)


def test_units_are_enabled(target: Target) -> None:
    wants = target.root / "etc/systemd/system"
    for link, dest in ENABLED.items():
        assert (wants / link).is_symlink(), link
        assert str((wants / link).readlink()) == dest


def test_nginx_accepts_the_written_config(target: Target) -> None:
    result = in_chroot(target, "nginx", "-t", "-c", "/etc/nginx/nginx.conf")
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


@contextlib.contextmanager
def chroot_turnserver(target: Target) -> Iterator[subprocess.Popen[bytes]]:
    """The turnserver Ansible installed, with the config Ansible wrote, as a plain process."""
    proc = subprocess.Popen(
        ["chroot", str(target.root), "turnserver", "-c", "/etc/turnserver.conf"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        try:
            daemons.wait_port(target.host_overrides["coturn_listening_port"], timeout=20)
            daemons.wait_port(target.host_overrides["coturn_tls_listening_port"], timeout=20)
        except TimeoutError:
            log = target.root / "var/log/turnserver-test.log"
            raise AssertionError(log.read_text() if log.exists() else "turnserver wrote no log") from None
        yield proc
    finally:
        daemons.stop_process(proc)


async def test_installed_coturn_relays_with_issued_credentials(target: Target) -> None:
    port = target.host_overrides["coturn_listening_port"]
    cred = credentials.issue("ansible-test", target.secret, int(time.time()), 600)
    wrong = credentials.issue("ansible-test", "not-the-secret", int(time.time()), 600)
    loop = asyncio.get_running_loop()
    with chroot_turnserver(target), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        transport, inbox = await turnclient.allocate(port, cred.username, cred.password)
        try:
            relayed = transport.get_extra_info("sockname")
            transport.sendto(b"ping-through-relay", peer.getsockname())
            data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 10)
            assert data == b"ping-through-relay"
            assert source[1] == relayed[1]
            await loop.sock_sendto(peer, b"pong-through-relay", source)
            reply, _ = await asyncio.wait_for(inbox.queue.get(), 10)
            assert reply == b"pong-through-relay"
        finally:
            transport.close()
        assert await turnclient.allocation_error(port, wrong.username, wrong.password) == 401


def test_installed_coturn_serves_the_installed_certificate(target: Target) -> None:
    context = ssl.create_default_context(cafile=str(target.certs.ca))
    tls_port = target.host_overrides["coturn_tls_listening_port"]
    with (
        chroot_turnserver(target),
        socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="turn.example.test") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    assert served == x509.load_pem_x509_certificate(target.certs.cert.read_bytes())


def test_failure_names_host_and_task(target: Target) -> None:
    with pytest.raises(ansible.PlaybookError) as info:
        target.run({"coturn_static_auth_secrets": []})
    assert info.value.host == "turn-1"
    assert info.value.task == "coturn : Check that at least one TURN secret is set"
    assert str(info.value).startswith(
        "ansible: host `turn-1` failed at task `coturn : Check that at least one TURN secret is set`: "
        "coturn_static_auth_secrets is empty"
    )


def test_lint_passes() -> None:
    lint = Path(ansible.ansible_playbook()).with_name("ansible-lint")
    result = subprocess.run(
        [str(lint), "--offline", "playbooks/"], capture_output=True, text=True, timeout=600,
        cwd=resources.playbook_dir().parent, env={**os.environ, **ansible.plugin_env()},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_certbot_role_obtains_from_pebble_and_hands_the_certificate_to_coturn(target: Target, tmp_path: Path) -> None:
    """Last in the module (it changes the certificates): site.yml issues from pebble inside the chroot."""
    with pebble_running(tmp_path / "pebble") as pebble:
        ca_inside = "/usr/local/share/turnkit-test/pebble-tls-ca.pem"
        (target.root / ca_inside.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pebble.tls_ca, target.root / ca_inside.lstrip("/"))
        acme = {
            "certbot_domains": [DOMAIN],
            "certbot_acme_server": pebble.directory,
            "certbot_ca_bundle": ca_inside,
            "certbot_http01_port": daemons.free_port(),
        }
        issued = dataclasses.replace(
            target,
            # certbot's deploy hook installs coturn's certificate now; NGINX uses the live dir.
            host_overrides={k: v for k, v in target.host_overrides.items() if k != "coturn_cert_pem"},
            region_overrides=acme,
        )
        secret_vars = {k: v for k, v in target.secret_vars().items() if k != "coturn_key_pem"}
        first, output = issued.run(secret_vars)
        assert "TASK [certbot : Obtain the certificate over HTTP-01]" in output
        assert first.recap["turn-1"]["changed"] > 0

        live = target.root / f"etc/letsencrypt/live/{DOMAIN}"
        installed = target.root / "etc/turnkit/certs"
        assert (installed / "fullchain.pem").read_bytes() == (live / "fullchain.pem").read_bytes()
        assert (installed / "privkey.pem").read_bytes() == (live / "privkey.pem").read_bytes()
        stat = in_chroot(target, "stat", "-c", "%U %a", "/etc/turnkit/certs", "/etc/turnkit/certs/privkey.pem")
        assert stat.stdout.splitlines() == ["turnserver 700", "turnserver 400"]
        intermediate = x509.load_pem_x509_certificate(pebble.intermediate_pem().encode())
        leaf = x509.load_pem_x509_certificate((live / "fullchain.pem").read_bytes())
        assert leaf.issuer == intermediate.subject

        nginx_conf = (target.root / "etc/nginx/nginx.conf").read_text()
        assert f"ssl_certificate /etc/letsencrypt/live/{DOMAIN}/fullchain.pem;" in nginx_conf
        assert in_chroot(target, "nginx", "-t").returncode == 0

        again, output = issued.run(secret_vars)
        assert again.changed() == {"turn-1": 0}, output[-3000:]

        root = pebble.root_pem()
        context = ssl.create_default_context(cadata=root)
        with (
            chroot_turnserver(target),
            socket.create_connection(("127.0.0.1", target.host_overrides["coturn_tls_listening_port"]), 10) as raw,
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert x509.load_der_x509_certificate(der) == leaf


SIGNALING_NAME = "signal.eu.example.test"

REMOTE_TOML = """
[project]
domain = "example.test"
[signaling]
server_name = "{server_name}"
[tls]
acme_server = "{acme}"
[regions.eu]
provider = "static"
nodes = 1
[[regions.eu.hosts]]
address = "turn-1.eu.example.test"
"""


def test_signaling_host_certificate_is_the_one_nginx_serves(target: Target, tmp_path: Path) -> None:
    """Last in the module (it issues another certificate): `turnkit deploy`'s signaling run for a remote
    region asks certbot for the signaling `server_name`, the name NGINX's `ssl_certificate` points at."""
    from turnkit import config as config_mod
    from turnkit import keyring as keyring_mod
    from turnkit.deploy import Fleet
    from turnkit.nodes import region_nodes

    with pebble_running(tmp_path / "pebble") as pebble:
        ca_inside = "/usr/local/share/turnkit-test/pebble-tls-ca.pem"
        (target.root / ca_inside.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pebble.tls_ca, target.root / ca_inside.lstrip("/"))
        (tmp_path / "turnkit.toml").write_text(REMOTE_TOML.format(server_name=SIGNALING_NAME, acme=pebble.directory))
        cfg = config_mod.load(tmp_path / "turnkit.toml")
        keyring_mod.save(cfg.secrets_path, keyring_mod.init(int(time.time())))
        nodes = region_nodes(cfg, "eu")
        fleet = Fleet(
            cfg, "eu", nodes, connection="chroot", addresses={"turn-1": str(target.root)},
            extra_vars={**NO_SYSTEMD, "certbot_ca_bundle": ca_inside},
        )  # fmt: skip
        fleet.push_signaling(print)

    nginx_conf = (target.root / "etc/nginx/nginx.conf").read_text()
    assert f"ssl_certificate /etc/letsencrypt/live/{SIGNALING_NAME}/fullchain.pem;" in nginx_conf
    renewal = target.root / "etc/letsencrypt/renewal"
    requested = {p.stem for p in renewal.glob("*.conf")}
    assert SIGNALING_NAME in requested
    assert "turn-1.eu.example.test" not in requested
    leaf = x509.load_pem_x509_certificate(
        (target.root / f"etc/letsencrypt/live/{SIGNALING_NAME}/cert.pem").read_bytes()
    )
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [SIGNALING_NAME]
