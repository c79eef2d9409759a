"""`turnkit drain|undrain`: take a TURN node out of the ICE servers signaling hands out, and back."""

from __future__ import annotations

import math
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
    mark_only: bool = typer.Option(
        False, "--mark-only", help="Only mark the node draining (where signaling reads health); no count, no wait."
    ),
    count_only: bool = typer.Option(
        False, "--count-only", help="Only wait for the live allocations (run on the node); the mark is made elsewhere."
    ),
    config: Path = CONFIG_OPTION,
    json_: bool = JSON_OPTION,
) -> None:
    """Stop handing out a node at once, then wait until its live allocations reach 0 (exit 1 if some remain).

    A remote deploy splits the two halves: `--mark-only` runs where signaling reads node health (the
    signaling host), `--count-only` on the node itself, whose statsdb listens on loopback only.

    Example: turnkit drain --region eu --node turn-2 --timeout 900 --statsdb redis://127.0.0.1:6379/0
    """
    if not math.isfinite(timeout):  # nan would never time out
        raise InputError(f"--timeout: must be a finite number of seconds, got {timeout:g}")
    if timeout < 0:
        raise InputError(f"--timeout: must be ≥ 0, got {timeout:g}")
    if mark_only and count_only:
        raise InputError("--mark-only and --count-only: give at most one")
    cfg = load_config(config)
    cfg.region(region)
    name = f"{region}/{node}"
    drain.node_name(node)
    # --count-only runs on the node, which does not know the region's other nodes.
    target = None if count_only else drain.find_node(cfg, region, node)
    if target is not None and mark_only:
        drain.mark(cfg, target, True, clock.now())
        output.result(f"{name} is draining: signaling no longer hands it out")
        return
    if not statsdb:
        raise InputError(f"--statsdb: required (the node's coturn redis-statsdb), or set ${STATSDB_ENV}")
    stats = drain.StatsDb(statsdb, os.environ.get(drain.PASSWORD_ENV) or None)
    realm = cfg.project.effective_realm
    stats.count(realm)  # an unreachable statsdb fails before the node is marked

    def waiting(live: int) -> None:
        output.info(f"waiting: {live} live allocation(s) on {name}")

    if target is None:
        live, waited = drain.wait_until_idle(lambda: stats.count(realm), timeout, progress=waiting)
        report = drain.DrainReport(name, live, waited)
    else:
        output.info(f"{name} is draining: signaling no longer hands it out")
        report = drain.drain(cfg, target, lambda: stats.count(realm), timeout, clock.now(), progress=waiting)
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
    target = drain.find_node(cfg, region, drain.node_name(node))
    drain.mark(cfg, target, False, clock.now())
    output.result(f"{region}/{node}: back in service")


def register(app: typer.Typer) -> None:
    app.command("drain")(drain_command)
    app.command("undrain")(undrain_command)
