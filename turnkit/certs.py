"""Certificates from an ACME CA with certbot: HTTP-01 via the NGINX webroot, turnkit's deploy hook.

The settings (`cli.ini`) and the deploy hook are rendered from the shared templates; the hook
copies the issued chain and key to a directory turnserver can read (0700/0400) and reloads
coturn with SIGUSR2 (RFC 8656 relays stay up) and NGINX. `certonly_argv` is pure; `obtain` runs it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnkit import render
from turnkit.config import Config
from turnkit.errors import TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.nodes import Node

#: Templates of the `certbot` role → the context key naming where the file goes, and its mode.
SETTINGS: tuple[tuple[str, str, int], ...] = (
    ("certbot/cli.ini.j2", "certbot_config_file", 0o644),
    ("certbot/deploy-hook.sh.j2", "certbot_deploy_hook_path", 0o755),
)

#: certbot output lines that never explain a failure.
_NOISE = ("Saving debug log", "Ask for help", "See the logfile", "- - - -", "Requesting a certificate")


class CertificateError(TurnkitError):
    """certbot could not obtain a certificate."""


@dataclass(frozen=True)
class CertbotDirs:
    """certbot's --config-dir/--work-dir/--logs-dir (defaults: the system's /etc, /var/lib, /var/log)."""

    config: Path = Path("/etc/letsencrypt")
    work: Path = Path("/var/lib/letsencrypt")
    logs: Path = Path("/var/log/letsencrypt")

    @classmethod
    def under(cls, base: Path) -> CertbotDirs:
        """Private dirs below `base`: certbot without root, e.g. the local region or tests."""
        return cls(base / "config", base / "work", base / "logs")

    def live(self, cert_name: str) -> Path:
        return self.config / "live" / cert_name


def settings_context(cfg: Config, nodes: Sequence[Node], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `certbot` role variables plus where cli.ini goes (`certbot_config_file`)."""
    return {
        **render.certbot_context(cfg, nodes),
        "certbot_config_file": "/etc/letsencrypt/cli.ini",
        **(overrides or {}),
    }


def write_settings(context: Mapping[str, Any], template_dir: Path) -> dict[str, Path]:
    """Render cli.ini and the deploy hook from the shared templates, install them, create the webroot."""
    env = render.environment(template_dir)
    Path(context["certbot_webroot"]).mkdir(mode=0o755, parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for template, path_key, mode in SETTINGS:
        dest = Path(context[path_key])
        atomic_write(dest, render.render_template(env, template, context).encode(), mode=mode)
        written[path_key] = dest
    return written


def certonly_argv(
    cli_ini: Path,
    domains: Sequence[str],
    *,
    cert_name: str | None = None,
    acme_server: str | None = None,
    dirs: CertbotDirs | None = None,
    certbot: str = "certbot",
) -> list[str]:
    """`certbot certonly` for `domains` with turnkit's settings; `acme_server` overrides cli.ini's."""
    if not domains:
        raise CertificateError("certificate: no domain names to request")
    argv = [certbot, "--config", str(cli_ini), "certonly", "--cert-name", cert_name or domains[0]]
    argv += [f"--domain={name}" for name in domains]
    if acme_server:
        argv += ["--server", acme_server]
    if dirs is not None:
        argv += ["--config-dir", str(dirs.config), "--work-dir", str(dirs.work), "--logs-dir", str(dirs.logs)]
    return argv


def failure_reason(output: str) -> str:
    """The line of certbot's output that says why it failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_NOISE)]
    return useful[-1] if useful else "no output"


def obtain(
    domains: Sequence[str],
    *,
    cli_ini: Path,
    acme_server: str | None = None,
    dirs: CertbotDirs | None = None,
    ca_bundle: Path | None = None,
    timeout: float = 300,
) -> Path:
    """Obtain (or keep) a certificate for `domains`; certbot runs the deploy hook. Returns the live dir.

    The CA is cli.ini's `server` (rendered from `tls.acme_server`) unless `acme_server` overrides it;
    `ca_bundle` is the CA certbot trusts for the ACME server itself (a staging or test CA such as pebble).
    """
    argv = certonly_argv(cli_ini, domains, acme_server=acme_server, dirs=dirs)
    env = dict(os.environ)
    if ca_bundle is not None:
        env["REQUESTS_CA_BUNDLE"] = str(ca_bundle)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CertificateError("certificate: `certbot` not found (apt-get install certbot)") from None
    except subprocess.TimeoutExpired:
        raise CertificateError(f"certificate for {domains[0]}: certbot did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        reason = failure_reason(proc.stderr if proc.stderr.strip() else proc.stdout)
        raise CertificateError(f"certificate for {domains[0]}: certbot failed: {reason}")
    return (dirs or CertbotDirs()).live(domains[0])
