"""`turnkit meter run`: the usage meter next to coturn on a node (systemd `turnkit-meter.service`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from pathlib import Path

import typer

from turnkit import drain, types
from turnkit.cli.common import CONFIG_OPTION, load_config
from turnkit.config import shown
from turnkit.errors import ConfigError, InputError
from turnkit.meter import cost
from turnkit.meter.gate import CA_ENV
from turnkit.meter.service import Meter, MeterSettings

meter_app = typer.Typer(help="Meter relayed bytes per user, node, region and day.", no_args_is_help=True)

#: The node's statsdb Redis, as `turnkit drain` reads it: URL and password from the environment, never argv.
STATSDB_URL_ENV = "TURNKIT_STATSDB_URL"
STATSDB_PASSWORD_ENV = "TURNKIT_STATSDB_PASSWORD"


def _central_ca_file(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """The central store's CA bundle, checked as the option is parsed (before any connection): a file
    that can be read and holds PEM certificates. The error names the option, the environment variable
    when the value came from there, and the value (its repr, cut: one line whatever it holds)."""
    if value is None:
        return None
    source = ctx.get_parameter_source(param.name) if param.name else None
    origin = f"--ca-file (from ${CA_ENV})" if source is not None and source.name == "ENVIRONMENT" else "--ca-file"
    try:
        ssl.create_default_context(cafile=value)
    except ssl.SSLError:  # an OSError too: caught first
        raise InputError(f"{origin}: {shown(str(value))} holds no PEM CA certificate") from None
    except OSError as exc:
        raise InputError(f"{origin}: cannot read {shown(str(value))}: {exc.strerror or type(exc).__name__}") from None
    return value


#: `--ca-file` of the commands that talk to the central usage store (`meter run`, `usage`).
CA_FILE_OPTION = typer.Option(
    None,
    "--ca-file",
    envvar=CA_ENV,
    callback=_central_ca_file,
    help=f"CA bundle that signed the central usage store's certificate (or ${CA_ENV}; usage.env sets it).",
)


def central_url(env: str, ca_file: Path | None) -> str:
    """The central store's URL from `env`. With a CA file it must be TLS (`rediss://`): the CA would
    check nothing otherwise (and redis-py refuses a CA for a plain connection with a TypeError)."""
    url = os.environ.get(env)
    if not url:
        raise ConfigError(f"environment variable `{env}` is not set (central usage store URL)")
    if ca_file is not None and not url.lower().startswith("rediss://"):
        raise InputError(f"--ca-file: ${env} is not a rediss:// URL, so there is no certificate to check")
    return url


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"environment variable `{name}` is not set (the meter's environment file sets it)")
    return value


@meter_app.command("run")
def run(
    node: str = typer.Option(..., "--node", help="This node's name."),
    region: str = typer.Option(..., "--region", "-r", help="This node's region."),
    buffer: Path | None = typer.Option(None, "--buffer", help="SQLite buffer (default: [meter] buffer)."),
    ca_file: Path | None = CA_FILE_OPTION,
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Address of /metrics."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="Port of /metrics (0: off)."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Subscribe to coturn's statsdb events and ship usage to the central store until SIGTERM.

    From the environment: TURNKIT_STATSDB_URL, TURNKIT_STATSDB_PASSWORD and [meter] central_url_env.
    Example: turnkit meter run --node turn-1 --region eu
    """
    from prometheus_client import start_http_server

    drain.node_name(node)  # a field of the central store's `region|node|user|metric` keys: no `|`
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise InputError(f"--metrics-port: must be from 0 (off) to 65535, got {metrics_port}")
    try:
        types.ip_address(metrics_host)
    except ValueError as exc:
        raise InputError(f"--metrics-host: {exc}, got {shown(metrics_host)}") from None
    cfg = load_config(config)
    cfg.region(region)
    settings = MeterSettings(
        node=node,
        region=region,
        statsdb_url=drain.statsdb_url(_env(STATSDB_URL_ENV), f"${STATSDB_URL_ENV}"),
        statsdb_password=os.environ.get(STATSDB_PASSWORD_ENV) or None,
        central_url=central_url(cfg.meter.central_url_env, ca_file),
        buffer=buffer or cfg.resolve(cfg.meter.buffer),
        flush_interval=cfg.meter.flush_interval,
        per_gb=cost.price_per_gb(cfg, region),
        budget=cfg.quotas.region_monthly_budget.get(region, 0.0),
        ca_file=str(ca_file) if ca_file else None,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    meter = Meter(settings)
    port = cfg.meter.metrics_port if metrics_port is None else metrics_port
    if port:
        start_http_server(port, metrics_host, registry=meter.metrics.registry)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await meter.run(stop)

    try:
        asyncio.run(main())
    finally:
        meter.close()


def register(app: typer.Typer) -> None:
    app.add_typer(meter_app, name="meter")
