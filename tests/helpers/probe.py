"""Probe test helpers: a project with a keyring and coturn, credential sources, endpoints, the CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import daemons
from turnkit import clock, keyring, render
from turnkit import config as config_mod
from turnkit.probe import checks
from turnkit.probe.checks import CredentialSource
from turnkit.probe.result import Endpoint, Transport

LOOPBACK_RANGES = ("127.0.0.0-127.255.255.255", "::1")


def denied_ranges(loopback: bool) -> list[str]:
    """turnkit's deny list (render.DENIED_PEER_NETWORKS); with `loopback`, minus 127/8 and ::1."""
    return [r for r in render.peer_ranges() if not (loopback and r in LOOPBACK_RANGES)]


@dataclass
class Project:
    """A turnkit.toml in a temp dir with a keyring; `start` runs coturn for its local node."""

    tmp: Path
    cfg: config_mod.Config
    ring: keyring.Keyring

    @property
    def secret(self) -> str:
        return self.ring.primary.value

    def start(self, name: str = "coturn", loopback: bool = True, **kw: Any) -> daemons.Coturn:
        extra = {
            "coturn_allow_loopback_peers": loopback,
            "coturn_denied_peer_ranges": denied_ranges(loopback),
            **kw.pop("extra", {}),
        }
        return daemons.start_coturn(self.cfg, self.ring.accepted, self.tmp / name, extra=extra, **kw)

    def write_config(self, server: daemons.Coturn, loopback: bool = True, toml: str = "") -> Path:
        """A turnkit.toml whose local region points at `server`'s ports."""
        text = (
            f'[project]\ndomain = "turn.example.test"\n\n[ports]\nlistening = {server.port}\ntls = {server.tls_port}\n\n'
            f'[regions.local]\nprovider = "local"\nallow_loopback_peers = {str(loopback).lower()}\n{toml}'
        )
        path = self.tmp / "turnkit.toml"
        path.write_text(text)
        return path


def minted(secret: str) -> CredentialSource:
    """The probe's own minter: a fresh credential per check from `secret`."""
    return checks.minting(secret, clock.now)


def endpoints(server: daemons.Coturn, loopback_allowed: bool = True) -> list[Endpoint]:
    """UDP, TCP and TLS endpoints of a local node (hardening asks about loopback peers only)."""
    common: dict[str, Any] = {
        "region": "local",
        "node": "turn-1",
        "host": "127.0.0.1",
        "expected_ip": "127.0.0.1",
        "loopback_only": True,
        "loopback_allowed": loopback_allowed,
    }
    return [
        Endpoint(port=server.port, transport=Transport.UDP, **common),
        Endpoint(port=server.port, transport=Transport.TCP, **common),
        Endpoint(port=server.tls_port, transport=Transport.TLS, **common),
    ]


def turnkit(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `turnkit` CLI as a user would."""
    base = daemons.env_without("TURNKIT_CONFIG", "TURNKIT_SECRETS_FILE", "TURNKIT_PROBE_TOKEN")
    return subprocess.run(
        [str(Path(sys.executable).parent / "turnkit"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, "COLUMNS": "200", **(env or {})},
    )
