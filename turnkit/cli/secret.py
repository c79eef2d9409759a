"""`turnkit secret init|rotate|promote|prune|list`: the TURN shared-secret keyring."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from turnkit import clock, keyring
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, JSON_OPTION, load_config
from turnkit.errors import InputError

secret_app = typer.Typer(help="Manage the TURN shared secrets (coturn `static-auth-secret`).", no_args_is_help=True)


def _when(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(s: keyring.Secret) -> str:
    return "primary" if s.primary else ("staged" if s.staged else "retired")


@secret_app.command("init")
def init(
    config: Path = CONFIG_OPTION, force: bool = typer.Option(False, "--force", help="Replace an existing keyring.")
) -> None:
    """Create the keyring with one primary secret (file mode 0600).

    Example: turnkit secret init
    """
    cfg = load_config(config)
    if cfg.secrets_path.exists() and not force:
        output.abort(f"`{cfg.secrets_path}` already exists (use --force to replace it)")
    ring = keyring.init(clock.now())
    keyring.save(cfg.secrets_path, ring)
    output.info(f"created {cfg.secrets_path} with primary secret {ring.primary.id}")


@secret_app.command("rotate")
def rotate(
    config: Path = CONFIG_OPTION,
    stage: bool = typer.Option(False, "--stage", help="Add as accepted-only; `promote` it after every node has it."),
) -> None:
    """Add a new secret; the old one stays accepted until pruned.

    Example: turnkit secret rotate --stage && turnkit deploy --region eu
    """
    cfg = load_config(config)
    ring = keyring.rotate(keyring.load(cfg.secrets_path), clock.now(), stage=stage)
    keyring.save(cfg.secrets_path, ring)
    fresh = ring.secrets[0]
    output.info(f"added secret {fresh.id} ({_state(fresh)})")


@secret_app.command("promote")
def promote(
    secret_id: str = typer.Argument(..., help="Id from `turnkit secret list`."), config: Path = CONFIG_OPTION
) -> None:
    """Make a staged secret the one that issues credentials.

    Example: turnkit secret promote s1764000000-ab12
    """
    cfg = load_config(config)
    ring = keyring.promote(keyring.load(cfg.secrets_path), secret_id, clock.now())
    keyring.save(cfg.secrets_path, ring)
    output.info(f"secret {secret_id} is now primary")


@secret_app.command("prune")
def prune(
    config: Path = CONFIG_OPTION,
    grace: int | None = typer.Option(
        None, "--grace", help="Seconds after retirement to keep a secret (default: max_ttl)."
    ),
) -> None:
    """Drop retired secrets whose credentials have all expired.

    Example: turnkit secret prune            # or --grace 0 to purge a leaked secret now
    """
    cfg = load_config(config)
    if grace is not None and grace < 0:
        raise InputError(f"--grace: must be ≥ 0, got {grace}")
    ring, dropped = keyring.prune(
        keyring.load(cfg.secrets_path), clock.now(), cfg.project.max_ttl if grace is None else grace
    )
    keyring.save(cfg.secrets_path, ring)
    output.info(f"pruned {len(dropped)} secret(s){': ' + ', '.join(s.id for s in dropped) if dropped else ''}")


@secret_app.command("list")
def list_(
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
    show: bool = typer.Option(False, "--show", help="Also print the secret values."),
) -> None:
    """List secrets (values hidden unless --show).

    Example: turnkit secret list --json
    """
    cfg = load_config(config)
    ring = keyring.load(cfg.secrets_path)
    rows = [
        {"id": s.id, "state": _state(s), "created_at": s.created_at, "retired_at": s.retired_at}
        | ({"value": s.value} if show else {})
        for s in ring.secrets
    ]
    if json_:
        output.emit_json(rows)
        return
    for s in ring.secrets:
        line = f"{s.id}\t{_state(s)}\tcreated {_when(s.created_at)}\tretired {_when(s.retired_at)}"
        output.result(line + (f"\t{s.value}" if show else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(secret_app, name="secret")
