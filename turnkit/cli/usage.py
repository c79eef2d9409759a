"""`turnkit usage`: relayed bytes, sessions, relay-minutes and estimated cost from the central store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import redis
import typer

from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, load_config
from turnkit.cli.meter import CA_FILE_OPTION, central_url
from turnkit.errors import InputError, TurnkitError
from turnkit.fsutil import atomic_write
from turnkit.meter import cost, report
from turnkit.meter.central import Central


class StoreError(TurnkitError):
    """The central usage store could not be read."""


def usage(
    region: str | None = typer.Option(None, "--region", "-r", help="Only this region."),
    since: str = typer.Option("30d", "--since", help="`7d` or a date like 2026-11-01."),
    by: str = typer.Option("user", "--by", help="Group by user, node, region or day."),
    top: int | None = typer.Option(None, "--top", min=1, help="Only the N largest."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on stdout."),
    ca_file: Path | None = CA_FILE_OPTION,
    prometheus: Path | None = typer.Option(
        None, "--prometheus", help="Also write this month's per-region aggregate as a node_exporter textfile."
    ),
    config: Path = CONFIG_OPTION,
) -> None:
    """Usage and estimated cost per user, node, region or day, and this month's projection.

    Example: turnkit usage --since 7d --by region
    """
    cfg = load_config(config)
    if by not in report.GROUPS:
        raise InputError(f"--by: must be one of {', '.join(report.GROUPS)}, got {by[:40]!r}")
    if region is not None:
        cfg.region(region)
    url = central_url(cfg.meter.central_url_env, ca_file)
    now = dt.datetime.now(dt.UTC)
    first = report.parse_since(since, now.date())
    try:
        rows = Central.from_url(url, str(ca_file) if ca_file else None).rows(
            min(first, now.date().replace(day=1)), now.date()
        )
    except (redis.RedisError, OSError) as exc:
        raise StoreError(f"central usage store unreachable ({type(exc).__name__})") from None
    if region is not None:
        rows = [r for r in rows if r.region == region]

    def price(name: str) -> float:
        return cost.price_per_gb(cfg, name)

    month = report.month_projection(rows, price, now)
    if prometheus is not None:
        atomic_write(prometheus, report.prometheus(rows, price, now))
    items = report.lines([r for r in rows if r.day >= first.isoformat()], by, price, top)
    if as_json:
        output.emit_json(report.to_json(by, items, month))
    elif as_csv:
        output.stdout.file.write(report.to_csv(items))
    else:
        output.result(f"{by:<24} {'up':>10} {'down':>10} {'sessions':>8} {'relay-min':>10} {'cost':>10}")
        for i in items:
            output.result(
                f"{i.key[:24]:<24} {report.human(i.bytes_up):>10} {report.human(i.bytes_down):>10} "
                f"{i.sessions:>8} {i.relay_minutes:>10.1f} {i.cost:>10.2f}"
            )
        output.result(
            f"month {month['month']}: spent {month['spent']:.2f}, projected {month['projected']:.2f} {cfg.cost.currency}"
        )


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)
