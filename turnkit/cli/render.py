"""`turnkit render`: write a region's production configs to a directory."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from turnkit import coturn, keyring, nodes, render, resources
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, JSON_OPTION, load_config
from turnkit.config import VERSION_PATTERN
from turnkit.errors import InputError


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
    if coturn_version is not None and not re.match(VERSION_PATTERN, coturn_version):
        raise InputError(f"--coturn-version: expected a version like 4.6.1, got {coturn_version!r}")
    node_list = nodes.region_nodes(cfg, region)
    ring = keyring.load(cfg.secrets_path)
    version = coturn_version or coturn.target_version(cfg)
    files = render.render_region(cfg, node_list, ring.accepted, version, resources.template_dir())
    render.write_tree(out, files)
    if json_:
        output.emit_json({"region": region, "coturn_version": version, "files": sorted(files)})
    else:
        for rel in sorted(files):
            output.result(str(out / rel))
    output.info(f"rendered {len(files)} file(s) for region `{region}` (coturn {version})")


def register(app: typer.Typer) -> None:
    app.command("render")(render_cmd)
