"""`turnkit render`: write a region's production configs to a directory."""

from __future__ import annotations

from pathlib import Path

import typer

from turnkit import coturn, keyring, nodes, render, resources
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, JSON_OPTION, load_config
from turnkit.errors import InputError
from turnkit.fsutil import atomic_write


def write_tree(out: Path, files: dict[str, render.Rendered]) -> None:
    """Write each file atomically (temp + rename) with its mode."""
    for rel, item in sorted(files.items()):
        atomic_write(out / rel, item.content, mode=item.mode)


def render_cmd(
    region: str = typer.Option(..., "--region", "-r", help="Region from turnkit.toml."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory to write into."),
    coturn_version: str | None = typer.Option(
        None, "--coturn-version", help="Target coturn version (default: detect)."
    ),
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Render coturn, NGINX, systemd and certbot configs for every node of a region.

    Example: turnkit render --region eu --out rendered/eu
    """
    cfg = load_config(config)
    if coturn_version is not None and not coturn_version.replace(".", "").isdigit():
        raise InputError(f"--coturn-version: expected a version like 4.6.1, got {coturn_version!r}")
    node_list = nodes.region_nodes(cfg, region)
    ring = keyring.load(cfg.secrets_path)
    version = coturn_version or coturn.target_version(cfg)
    files = render.render_region(cfg, node_list, ring.accepted, version, resources.template_dir())
    write_tree(out, files)
    if json_:
        output.emit_json({"region": region, "coturn_version": version, "files": sorted(files)})
    else:
        for rel in sorted(files):
            output.result(str(out / rel))
    output.info(f"rendered {len(files)} file(s) for region `{region}` (coturn {version})")


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
