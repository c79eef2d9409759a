"""`turnkit plan|provision|destroy|status|deploy|down`: take a region from nothing to a probed fleet and back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from turnkit import deploy as deploy_mod
from turnkit import health
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, JSON_OPTION, load_config
from turnkit.config import Config
from turnkit.errors import ExitCode, NotProvisioned
from turnkit.provision import Action, changes, provider_for

REGION_OPTION = typer.Option(..., "--region", "-r", help="Region from turnkit.toml.")


def _progress(text: str) -> None:
    output.info(text)


def _print_actions(actions: list[Action], empty: str) -> None:
    if not changes(actions):
        output.result(empty)
    for a in actions:
        output.result(str(a))


def plan(region: str = REGION_OPTION, config: Path = CONFIG_OPTION, json_: bool = JSON_OPTION) -> None:
    """Show what `provision` would create, change or delete (touches nothing).

    Example: turnkit plan --region eu
    """
    cfg = load_config(config)
    actions = provider_for(cfg, region).plan()
    if json_:
        output.emit_json({"region": region, "actions": [a.to_dict() for a in actions]})
        return
    _print_actions(actions, f"region `{region}` is up to date")


def provision(region: str = REGION_OPTION, config: Path = CONFIG_OPTION, json_: bool = JSON_OPTION) -> None:
    """Create or converge a region's machines (safe to re-run; nothing is duplicated).

    Example: turnkit provision --region eu
    """
    cfg = load_config(config)
    nodes = provider_for(cfg, region).apply(_progress)
    if json_:
        output.emit_json({"region": region, "nodes": [n.to_dict() for n in nodes]})
        return
    for n in nodes:
        output.result(f"{n.name}\t{n.hostname}\t{n.public_ip or '-'}\t{n.private_ip or '-'}")


def _confirm(what: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        output.abort(f"{what}: refusing without confirmation; pass --yes", ExitCode.USAGE)
    if not typer.confirm(f"{what}?", default=False, err=True):
        output.abort("not confirmed", ExitCode.CHECK_FAILED)


def destroy(
    region: str = REGION_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Remove exactly the resources turnkit created for a region (asks first).

    Example: turnkit destroy --region eu --yes
    """
    cfg = load_config(config)
    provider = provider_for(cfg, region)
    pending = provider.destroy_plan()
    if pending:
        for a in pending:
            output.info(str(a))
        _confirm(f"destroy {len(pending)} resource(s) of region `{region}`", yes)
        done = provider.destroy(_progress)
    else:
        done = []
    if json_:
        output.emit_json({"region": region, "destroyed": [a.to_dict() for a in done]})
    else:
        output.result(f"destroyed {len(done)} resource(s) of region `{region}`")


def _status_rows(cfg: Config, regions: list[str], every: bool) -> list[dict[str, Any]]:
    """One row per node; with `every` (no --region) a region not provisioned yet is a note, not an error."""
    known = health.read_file(health.path_for(cfg))
    rows = []
    for name in regions:
        provider = provider_for(cfg, name)
        try:
            nodes = provider.nodes()
        except NotProvisioned as exc:
            if not every:
                raise
            output.info(str(exc))
            continue
        extra = provider.status()
        for n in nodes:
            h = known.get(health.key(n))
            rows.append(
                {
                    **n.to_dict(),
                    "provider": cfg.region(name).provider,
                    "probe": None if h is None else ("pass" if h.ok else "fail"),
                    "checked_at": None if h is None else h.checked_at,
                    "failed": [] if h is None else list(h.failed),
                    **extra.get(n.name, {}),
                }
            )
    return rows


def status(
    region: str | None = typer.Option(None, "--region", "-r", help="Only this region."),
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """List nodes with their addresses and the last probe result.

    Example: turnkit status --json
    """
    cfg = load_config(config)
    regions = [region] if region else sorted(cfg.regions)
    rows = _status_rows(cfg, regions, every=region is None)
    if json_:
        output.emit_json(rows)
        return
    table = Table("region", "node", "hostname", "public ip", "private ip", "probe")
    for r in rows:
        probe = r["probe"] or "never"
        if r["failed"]:
            probe += f" ({', '.join(r['failed'])})"
        table.add_row(r["region"], r["name"], r["hostname"], r["public_ip"] or "-", r["private_ip"] or "-", probe)
    output.stdout.print(table)


def _node_table(report: deploy_mod.Report) -> Table:
    table = Table("node", "hostname", "public ip", "private ip", "probe", title=f"region {report.region}")
    for n in report.nodes:
        verdict = "not probed" if n.ok is None else ("pass" if n.ok else "FAIL " + ", ".join(n.failed))
        table.add_row(n.node.name, n.node.hostname, n.node.public_ip or "-", n.node.private_ip or "-", verdict)
    return table


def _without_token(url: str | None) -> str | None:
    """The demo page URL minus its `?token=` query: a bearer token does not belong in logs by default."""
    return url.split("?", 1)[0] if url else url


def deploy(
    region: str = REGION_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Stop after the plan."),
    show_token: bool = typer.Option(
        False, "--show-token", help="Print the demo page URL with its development token (local regions)."
    ),
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Provision, configure, certify and probe a region; exit 1 when the fleet does not pass.

    Example: turnkit deploy --region local
    """
    cfg = load_config(config)
    report = deploy_mod.deploy(cfg, region, _progress, dry_run=dry_run)
    demo_url = report.demo_url if show_token else _without_token(report.demo_url)
    if json_:
        output.emit_json({**report.to_dict(), "demo_url": demo_url})
    elif dry_run:
        _print_actions(report.actions, f"region `{region}` is up to date")
    else:
        output.stdout.print(_node_table(report))
        if demo_url:
            output.result(f"demo page: {demo_url}")
            if not show_token:
                output.info("the page needs a token: run again with --show-token to print one")
        if report.ice_servers is not None:
            output.result("example ICE servers answer (GET /api/ice-servers):")
            output.emit_json(report.ice_servers)
    if not report.ok:
        output.abort(f"region `{region}`: the fleet did not pass the probe", ExitCode.CHECK_FAILED)


def down(region: str = REGION_OPTION, config: Path = CONFIG_OPTION, json_: bool = JSON_OPTION) -> None:
    """Stop a local region's processes (coturn, signaling) and remove their pidfiles.

    Example: turnkit down --region local
    """
    cfg = load_config(config)
    stopped = provider_for(cfg, region).stop(_progress)
    if json_:
        output.emit_json({"region": region, "stopped": stopped})
    else:
        output.result(f"stopped {len(stopped)} process(es) of region `{region}`")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("provision")(provision)
    app.command("destroy")(destroy)
    app.command("status")(status)
    app.command("deploy")(deploy)
    app.command("down")(down)
