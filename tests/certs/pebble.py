"""pebble, the ACME test CA (Debian package), as a plain process on free loopback ports."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import daemons
from turnkit import pki

#: Skip real HTTP-01 validation and its random sleeps; never reject nonces (certbot retries once only).
PEBBLE_ENV = {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


@dataclass(frozen=True)
class Pebble:
    """Where pebble answers ACME (`directory`) and which CA its own HTTPS certificate chains to."""

    port: int
    management_port: int
    tls_ca: Path
    log: Path

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        url = f"https://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return str(response.read().decode())

    def root_pem(self) -> str:
        """The root the issued certificates chain to."""
        return self._get("/roots/0")

    def intermediate_pem(self) -> str:
        """The intermediate that signs the issued certificates."""
        return self._get("/intermediates/0")


@contextlib.contextmanager
def pebble_running(workdir: Path) -> Iterator[Pebble]:
    workdir.mkdir(parents=True, exist_ok=True)
    tls = pki.make_ca_and_cert(
        workdir / "tls", ["localhost", "127.0.0.1"], dt.datetime.now(dt.UTC), 30, ca_name="pebble test TLS CA"
    )
    port, management = daemons.free_port(), daemons.free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(tls.cert),
            "privateKey": str(tls.key),
            "httpPort": daemons.free_port(),
            "tlsPort": daemons.free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    conf = workdir / "pebble-config.json"
    conf.write_text(json.dumps(config))
    log = workdir / "pebble.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["pebble", "-config", str(conf)], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **PEBBLE_ENV}, start_new_session=True,
        )  # fmt: skip
    try:
        try:
            daemons.wait_port(port, timeout=20)
            daemons.wait_port(management, timeout=20)
        except TimeoutError:
            raise RuntimeError(f"pebble did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
        yield Pebble(port, management, tls.ca, log)
    finally:
        daemons.stop_process(proc)
