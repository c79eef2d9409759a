"""certbot against pebble with turnkit's rendered settings; the deploy hook hands the cert to a live coturn."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from tests import daemons, turnclient
from tests.certs.pebble import pebble_running
from turnkit import certs, credentials, pki, render, resources
from turnkit.nodes import Node

DOMAIN = "turn.example.test"
NODE = Node("turn-1", "local", "127.0.0.1", "127.0.0.1", None)


def hook_overrides(tmp: Path, pebble_url: str, cert_dir: Path, pidfile: Path, marker: Path) -> dict[str, Any]:
    """Test paths for the certbot role variables; the reload commands are real but local."""
    return {
        "certbot_acme_server": pebble_url,
        "certbot_webroot": str(tmp / "webroot"),
        "certbot_config_file": str(tmp / "letsencrypt/cli.ini"),
        "certbot_deploy_hook_path": str(tmp / "letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh"),
        "certbot_coturn_cert_dir": str(cert_dir),
        "certbot_coturn_reload_command": f"kill -USR2 $(cat {pidfile})",
        "certbot_nginx_reload_command": f"touch {marker}",
    }


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def served_issuer(port: int, trusted_root: str) -> str | None:
    """The issuer CN of the certificate served on `port`, if it verifies against `trusted_root`."""
    context = ssl.create_default_context(cadata=trusted_root)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        return None
    assert der is not None
    return common_name(x509.load_der_x509_certificate(der).issuer)


async def wait_for_issuer(port: int, trusted_root: str, timeout: float = 30) -> str:
    """coturn applies SIGUSR2 asynchronously: poll until the new chain is served."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        issuer = await asyncio.to_thread(served_issuer, port, trusted_root)
        if issuer is not None:
            return issuer
        await asyncio.sleep(0.2)
    raise AssertionError(f"coturn still serves a certificate not issued by pebble after {timeout}s")


async def relay_round_trip(transport: Any, inbox: turnclient.Inbox, peer: socket.socket, payload: bytes) -> None:
    """Relay → loopback peer → back through the same allocation."""
    loop = asyncio.get_running_loop()
    transport.sendto(payload, peer.getsockname())
    data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 10)
    assert data == payload
    await loop.sock_sendto(peer, payload[::-1], source)
    reply, _ = await asyncio.wait_for(inbox.queue.get(), 10)
    assert reply == payload[::-1]


def test_settings_are_the_shared_templates(tmp_path: Path) -> None:
    cfg = daemons.local_config(tmp_path)
    overrides = hook_overrides(tmp_path, "https://127.0.0.1:1/dir", tmp_path / "c", tmp_path / "pid", tmp_path / "m")
    written = certs.write_settings(certs.settings_context(cfg, [NODE], overrides), resources.template_dir())
    region = render.render_region(cfg, [NODE], ["s"], "4.6.1", resources.template_dir(), overrides)
    assert written["certbot_config_file"].read_text() == region["signaling/letsencrypt/cli.ini"].content
    hook = written["certbot_deploy_hook_path"]
    assert hook.read_text() == region["signaling/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh"].content
    assert hook.stat().st_mode & 0o777 == 0o755
    assert "server = https://127.0.0.1:1/dir\n" in written["certbot_config_file"].read_text()


async def test_pebble_certificate_reaches_running_coturn_without_dropping_relays(tmp_path: Path) -> None:
    cfg = daemons.local_config(tmp_path)
    secret = "pebble-test-secret"
    cert_dir = tmp_path / "coturn-certs"
    cert_dir.mkdir(mode=0o755)
    # coturn starts with a private-CA certificate at the path the deploy hook replaces.
    boot = pki.make_ca_and_cert(tmp_path / "boot", [DOMAIN, "127.0.0.1"], dt.datetime.now(dt.UTC), 30)
    shutil.copyfile(boot.cert, cert_dir / "fullchain.pem")
    shutil.copyfile(boot.key, cert_dir / "privkey.pem")
    extra = {"coturn_cert_file": str(cert_dir / "fullchain.pem"), "coturn_pkey_file": str(cert_dir / "privkey.pem")}
    marker = tmp_path / "nginx-reloaded"

    with (
        pebble_running(tmp_path / "pebble") as pebble,
        daemons.coturn_running(cfg, [secret], tmp_path / "coturn", extra=extra) as coturn,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
    ):
        root = await asyncio.to_thread(pebble.root_pem)
        assert await asyncio.to_thread(served_issuer, coturn.tls_port, root) is None  # not pebble's yet
        coturn_pid = int(coturn.pidfile.read_text())

        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        cred = credentials.issue("renewal", secret, int(time.time()), 600)
        transport, inbox = await turnclient.allocate(coturn.port, cred.username, cred.password, "udp")
        try:
            await relay_round_trip(transport, inbox, peer, b"before-renewal")

            overrides = hook_overrides(tmp_path, pebble.directory, cert_dir, coturn.pidfile, marker)
            settings = certs.write_settings(certs.settings_context(cfg, [NODE], overrides), resources.template_dir())
            dirs = certs.CertbotDirs.under(tmp_path / "certbot")
            live = await asyncio.to_thread(
                certs.obtain, [DOMAIN], cli_ini=settings["certbot_config_file"],
                acme_server=pebble.directory, dirs=dirs, ca_bundle=pebble.tls_ca,
            )  # fmt: skip

            assert live == dirs.live(DOMAIN)
            installed = cert_dir / "fullchain.pem"
            assert installed.read_bytes() == (live / "fullchain.pem").read_bytes()
            assert (cert_dir / "privkey.pem").read_bytes() == (live / "privkey.pem").read_bytes()
            assert cert_dir.stat().st_mode & 0o777 == 0o700
            assert installed.stat().st_mode & 0o777 == 0o400
            assert (cert_dir / "privkey.pem").stat().st_mode & 0o777 == 0o400
            assert marker.exists(), "the deploy hook did not reach the nginx reload"

            intermediate = x509.load_pem_x509_certificate((await asyncio.to_thread(pebble.intermediate_pem)).encode())
            assert await wait_for_issuer(coturn.tls_port, root) == common_name(intermediate.subject)

            # SIGUSR2 reloaded certificates in place: same process, and the old allocation still relays.
            assert coturn.proc.poll() is None
            assert int(coturn.pidfile.read_text()) == coturn_pid
            await relay_round_trip(transport, inbox, peer, b"after-renewal")
        finally:
            transport.close()


def test_obtain_failure_is_one_line(tmp_path: Path) -> None:
    cfg = daemons.local_config(tmp_path)
    port = daemons.free_port()  # nothing listens here
    overrides = hook_overrides(
        tmp_path, f"https://127.0.0.1:{port}/dir", tmp_path / "c", tmp_path / "p", tmp_path / "m"
    )
    settings = certs.write_settings(certs.settings_context(cfg, [NODE], overrides), resources.template_dir())
    try:
        # No acme_server argument: the server comes from the rendered cli.ini.
        certs.obtain(
            [DOMAIN],
            cli_ini=settings["certbot_config_file"],
            dirs=certs.CertbotDirs.under(tmp_path / "cb"),
            timeout=120,
        )
    except certs.CertificateError as exc:
        message = str(exc)
    else:
        raise AssertionError("certbot succeeded against a closed port")
    assert message.startswith(f"certificate for {DOMAIN}: certbot failed: ")
    assert "\n" not in message
    assert message.endswith("Requesting 127.0.0.1/dir: Connection refused"), message


def test_certonly_argv() -> None:
    dirs = certs.CertbotDirs.under(Path("/tmp/cb"))
    argv = certs.certonly_argv(Path("/etc/cli.ini"), ["a.test", "b.test"], acme_server="https://ca/dir", dirs=dirs)
    assert argv == [
        "certbot", "--config", "/etc/cli.ini", "certonly", "--cert-name", "a.test",
        "--domain=a.test", "--domain=b.test", "--server", "https://ca/dir",
        "--config-dir", "/tmp/cb/config", "--work-dir", "/tmp/cb/work", "--logs-dir", "/tmp/cb/logs",
    ]  # fmt: skip


def test_certonly_argv_needs_a_domain() -> None:
    try:
        certs.certonly_argv(Path("/etc/cli.ini"), [])
    except certs.CertificateError as exc:
        assert str(exc) == "certificate: no domain names to request"
    else:
        raise AssertionError("no error for an empty domain list")
