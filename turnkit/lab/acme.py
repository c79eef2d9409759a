"""ACME in the lab: pebble and pebble-challtestsrv on the bridge address, like Let's Encrypt + DNS.

challtestsrv is the hosts' resolver (port 53 on 198.18.0.1) and pebble's: it answers A queries
for the lab's names, so pebble validates HTTP-01 against the real hosts on port 80. pebble's own
listener uses a lab CA the hosts trust; its issuing root (new on every pebble start) is saved as
`root.pem` for probes and browsers.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from turnkit.fsutil import atomic_write
from turnkit.lab.daemon import Daemon, running_pid, stop_all
from turnkit.lab.sh import LabError, run
from turnkit.lab.topology import BRIDGE_IP

ACME_PORT, MANAGEMENT_PORT, DNS_PORT, CHALLTEST_MANAGEMENT_PORT = 14000, 15000, 53, 8055
DIRECTORY_URL = f"https://{BRIDGE_IP}:{ACME_PORT}/dir"
NAMES = ("pebble", "challtestsrv")
PROGRAMS = {"pebble": "pebble", "challtestsrv": "pebble-challtestsrv"}


def listener_cert(d: Path) -> Path:
    """A self-signed CA certificate for pebble's HTTPS listener (SAN: the bridge address)."""
    cert, key = d / "listener.pem", d / "listener.key"
    if not cert.exists():
        d.mkdir(parents=True, exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-days", "3650", "-subj", "/CN=turnkit lab ACME", "-addext", f"subjectAltName=IP:{BRIDGE_IP}",
             "-keyout", str(key), "-out", str(cert)])  # fmt: skip
    return cert


def daemons(d: Path) -> list[Daemon]:
    config = {
        "pebble": {
            "listenAddress": f"{BRIDGE_IP}:{ACME_PORT}",
            "managementListenAddress": f"{BRIDGE_IP}:{MANAGEMENT_PORT}",
            "certificate": str(d / "listener.pem"),
            "privateKey": str(d / "listener.key"),
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    atomic_write(d / "pebble.json", json.dumps(config, indent=2) + "\n")
    challtest = Daemon(
        "challtestsrv",
        ["pebble-challtestsrv", "-dns01", f"{BRIDGE_IP}:{DNS_PORT}", "-http01", "", "-https01", "",
         "-tlsalpn01", "", "-management", f"{BRIDGE_IP}:{CHALLTEST_MANAGEMENT_PORT}",
         "-defaultIPv4", "", "-defaultIPv6", ""],
        (BRIDGE_IP, CHALLTEST_MANAGEMENT_PORT),
    )  # fmt: skip
    pebble = Daemon(
        "pebble",
        ["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"{BRIDGE_IP}:{DNS_PORT}"],
        (BRIDGE_IP, ACME_PORT),
        {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
    )
    return [challtest, pebble]


def _context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def up(d: Path, records: Mapping[str, str]) -> Path:
    """Start both servers (unless running), publish the A records, save pebble's root; returns it."""
    cert = listener_cert(d)
    for daemon in daemons(d):
        daemon.start(d)
    for name, ip in records.items():
        body = json.dumps({"host": name.rstrip(".") + ".", "addresses": [ip]}).encode()
        url = f"http://{BRIDGE_IP}:{CHALLTEST_MANAGEMENT_PORT}/add-a"
        try:
            urllib.request.urlopen(urllib.request.Request(url, body, method="POST"), timeout=5).close()
        except OSError as exc:
            raise LabError(f"lab: challtestsrv refused the record for {name}: {exc}") from None
    root = d / "root.pem"
    try:
        with urllib.request.urlopen(
            f"https://{BRIDGE_IP}:{MANAGEMENT_PORT}/roots/0", timeout=5, context=_context(cert)
        ) as resp:
            atomic_write(root, resp.read())
    except OSError as exc:
        raise LabError(f"lab: cannot fetch pebble's root: {exc}") from None
    return root


def running(d: Path) -> dict[str, bool]:
    return {n: running_pid(d / f"{n}.pid", PROGRAMS[n]) is not None for n in NAMES}


def down(d: Path) -> list[str]:
    return stop_all(d, list(NAMES), PROGRAMS)
