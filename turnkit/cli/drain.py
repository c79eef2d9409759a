"""`turnkit drain|undrain`: take a TURN node out of the ICE servers signaling hands out, and back."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from turnkit import clock, drain
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, JSON_OPTION, load_config
from turnkit.errors import ExitCode, InputError

#: Environment variable naming the node's statsdb when --statsdb is not given.
STATSDB_ENV = "TURNKIT_STATSDB_URL"

REGION_OPTION = typer.Option(..., "--region", "-r", help="Region of the node.")
NODE_OPTION = typer.Option(..., "--node", "-n", help="Node name (as in `turnkit status`).")


def drain_command(
    region: str = REGION_OPTION,
    node: str = NODE_OPTION,
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for live allocations to end."),
    statsdb: str | None = typer.Option(
        None,
        "--statsdb",
        envvar=STATSDB_ENV,
        help=f"The node's coturn redis-statsdb, redis://HOST:PORT/DB (password in ${drain.PASSWORD_ENV}).",
    ),
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Stop handing out a node at once, then wait until its live allocations reach 0 (exit 1 if some remain).

    Example: turnkit drain --region eu --node turn-2 --timeout 900 --statsdb redis://127.0.0.1:6379/0
    """
    if timeout < 0:
        raise InputError(f"--timeout: must be ≥ 0, got {timeout:g}")
    if not statsdb:
        raise InputError(f"--statsdb: required (the node's coturn redis-statsdb), or set ${STATSDB_ENV}")
    cfg = load_config(config)
    target = drain.find_node(cfg, region, node)
    stats = drain.StatsDb(statsdb, os.environ.get(drain.PASSWORD_ENV) or None)
    realm = cfg.project.effective_realm
    stats.count(realm)  # an unreachable statsdb fails before the node is marked
    output.info(f"{region}/{node} is draining: signaling no longer hands it out")
    report = drain.drain(
        cfg, target, lambda: stats.count(realm), timeout, clock.now(),
        progress=lambda live: output.info(f"waiting: {live} live allocation(s) on {region}/{node}"),
    )  # fmt: skip
    if json_:
        output.emit_json(report.to_dict())
    elif report.drained:
        output.result(f"{report.node}: drained, 0 live allocations after {report.waited:.1f} s")
    else:
        output.result(f"{report.node}: {report.live} allocation(s) still live after the {timeout:g} s timeout")
    if not report.drained:
        output.abort("", ExitCode.CHECK_FAILED)  # the line above says what is still live


def undrain_command(region: str = REGION_OPTION, node: str = NODE_OPTION, config: Path = CONFIG_OPTION) -> None:
    """Hand the node out again (clears the draining mark).

    Example: turnkit undrain --region eu --node turn-2
    """
    cfg = load_config(config)
    target = drain.find_node(cfg, region, node)
    drain.mark(cfg, target, False, clock.now())
    output.result(f"{region}/{node}: back in service")


def register(app: typer.Typer) -> None:
    app.command("drain")(drain_command)
    app.command("undrain")(undrain_command)
