"""`turnkit creds issue|verify`: time-limited TURN REST credentials."""

from __future__ import annotations

from pathlib import Path

import typer

from turnkit import clock, credentials, keyring, nodes
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, load_config
from turnkit.credentials import Verdict
from turnkit.errors import ExitCode

creds_app = typer.Typer(help="Issue and verify TURN REST API credentials.", no_args_is_help=True)


@creds_app.command("issue")
def issue(
    user: str = typer.Option(..., "--user", "-u", help="User id (goes after the expiry in the TURN username)."),
    ttl: int | None = typer.Option(None, "--ttl", help="Lifetime in seconds (default: project.ttl)."),
    region: str | None = typer.Option(None, "--region", "-r", help="Region whose node URLs to include."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Print RTCIceServer JSON with a fresh credential from the primary secret.

    Example: turnkit creds issue --user alice --ttl 600 --region local
    """
    cfg = load_config(config)
    ring = keyring.load(cfg.secrets_path)
    cred = credentials.issue(user, ring.primary.value, clock.now(), ttl if ttl is not None else cfg.project.ttl)
    region_name = region or cfg.signaling.default_region or next(iter(cfg.regions), None)
    node_list = nodes.region_nodes(cfg, region_name) if region_name else []
    servers = credentials.ice_servers(cred, nodes.stun_urls(cfg, node_list), nodes.turn_urls(cfg, node_list))
    output.emit_json(
        {
            "iceServers": servers,
            "username": cred.username,
            "password": cred.password,
            "ttl": cred.ttl,
            "expiresAt": cred.expires_at,
        }
    )


_VERDICT_EXIT = {
    Verdict.OK: ExitCode.OK,
    Verdict.EXPIRED: ExitCode.CHECK_FAILED,
    Verdict.WRONG: ExitCode.CHECK_FAILED,
    Verdict.MALFORMED: ExitCode.USAGE,
}


@creds_app.command("verify")
def verify(
    username: str = typer.Argument(..., help="TURN username, `<expiry>:<user>`."),
    password: str = typer.Argument(..., help="TURN password (base64 HMAC-SHA1)."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Check a credential against every accepted secret: ok, expired, wrong or malformed.

    Example: turnkit creds verify 1764003600:alice 'q0P…='
    """
    cfg = load_config(config)
    ring = keyring.load(cfg.secrets_path)
    verdict = credentials.verify(username, password, ring.accepted, clock.now())
    output.result(verdict.value)
    if _VERDICT_EXIT[verdict] != ExitCode.OK:
        output.abort("", _VERDICT_EXIT[verdict])  # the verdict line says why


def register(app: typer.Typer) -> None:
    app.add_typer(creds_app, name="creds")
