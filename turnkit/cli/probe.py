"""`turnkit probe [URLS]... | history`: relay connectivity probes per node and transport."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from turnkit import clock, keyring, nodes
from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, JSON_OPTION, load_config
from turnkit.config import Config
from turnkit.errors import ExitCode, InputError, NotProvisioned, WriteError
from turnkit.fsutil import atomic_write
from turnkit.probe import history, record, report, runner, signaling, targets
from turnkit.probe.checks import CHECKS, FORBIDDEN_PEERS, NEEDS_CREDENTIAL, CredentialSource, Options, minting
from turnkit.probe.result import CheckResult, Credential, Endpoint
from turnkit.provision import provider_for

#: Where --via-signaling takes its JWT from unless --token-file is given (never a command-line value).
TOKEN_ENV = "TURNKIT_PROBE_TOKEN"


class _ProbeGroup(TyperGroup):
    """`turnkit probe …` runs the probe; only `turnkit probe history …` names a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


probe_app = typer.Typer(
    cls=_ProbeGroup, help="Probe TURN relays: STUN, TURN over UDP/TCP/TLS, relay round trip, hardening."
)


def _config_or_none(path: Path, required: bool) -> Config | None:
    if required or path.exists():
        return load_config(path)
    return None


def _secret(cfg: Config | None) -> str:
    """The primary shared secret, from $TURNKIT_SECRETS_FILE (systemd credential) or the config's keyring."""
    path = keyring.path_for(cfg.secrets_path if cfg else None)
    if path is None:
        raise InputError(f"no turnkit.toml and no ${keyring.ENV_VAR}: cannot mint TURN credentials")
    return keyring.load(path).primary.value


def _known_nodes(cfg: Config | None) -> dict[str, nodes.Node]:
    """Configured nodes by hostname and by address (regions not provisioned yet are left out)."""
    found: dict[str, nodes.Node] = {}
    if cfg is None:
        return found
    for name in cfg.regions:
        try:
            for n in nodes.region_nodes(cfg, name):
                for key in (n.hostname, n.public_ip, n.private_ip):
                    if key:
                        found.setdefault(key, n)
        except NotProvisioned:
            continue
    return found


def _probe_token(token_file: Path | None) -> str | None:
    """The JWT for --via-signaling: from --token-file or $TURNKIT_PROBE_TOKEN, never from argv."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        text = token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"--token-file: cannot read `{token_file}`: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"--token-file: `{token_file}` is not text") from None
    if not text:
        raise InputError(f"--token-file: `{token_file}` is empty")
    return text


def _check_options(timeout: float, concurrency: int, packets: int, checks: Sequence[str], peers: Sequence[str]) -> None:
    if timeout <= 0:
        raise InputError(f"--timeout: must be > 0 seconds, got {timeout:g}")
    if concurrency < 1:
        raise InputError(f"--concurrency: must be ≥ 1, got {concurrency}")
    if not 1 <= packets <= 1000:
        raise InputError(f"--packets: must be between 1 and 1000, got {packets}")
    for name in checks:
        if name not in CHECKS:
            raise InputError(f"--check: unknown check `{name}` (known: {', '.join(CHECKS)})")
    for peer in peers:
        try:
            ipaddress.ip_address(peer)
        except ValueError:
            raise InputError(f"--forbidden-peer: not an IP address, got {peer!r}") from None


def _targets(cfg: Config | None, urls: Sequence[str], region: str | None, all_regions: bool) -> list[Endpoint]:
    if region and all_regions:
        raise InputError("--region and --all-regions: give one, not both")
    if urls and (region or all_regions):
        raise InputError("give URLs or --region/--all-regions, not both")
    if urls:
        return targets.label([targets.parse_url(u) for u in urls], cfg, _known_nodes(cfg))
    if not (region or all_regions):
        raise InputError("nothing to probe: give --region R, --all-regions or URLs (e.g. turn:host:3478?transport=udp)")
    assert cfg is not None
    names = [region] if region else list(cfg.regions)
    return targets.node_endpoints(cfg, [n for name in names for n in nodes.region_nodes(cfg, name)])


def _from_signaling(
    cfg: Config | None, base: str, token: str | None, allow_foreign: bool
) -> tuple[list[Endpoint], dict[str, Credential]]:
    """Endpoints and credentials from the signaling service's ICE servers; only configured nodes
    unless `allow_foreign` (a compromised or misconfigured service must not aim the probe elsewhere)."""
    if not token:
        raise InputError(f"--via-signaling: needs a JWT: set ${TOKEN_ENV} or pass --token-file FILE")
    doc = asyncio.run(signaling.fetch_ice_servers(base, token))
    entries = targets.ice_server_urls(doc)
    if not entries:
        raise signaling.SignalingError(f"signaling: {base}: no ICE servers handed out")
    eps = targets.label([targets.parse_url(u) for u, _, _ in entries], cfg, _known_nodes(cfg))
    foreign = [ep for ep in eps if not ep.region]
    if foreign and not allow_foreign:
        raise InputError(
            f"--via-signaling: `{foreign[0].url[:200]}` is not a node of any configured region "
            "(pass --allow-foreign-targets to probe it anyway)"
        )
    creds = {
        ep.url: Credential(user, password)
        for ep, (_, user, password) in zip(eps, entries, strict=True)
        if user and password
    }
    return eps, creds


def _table(results: Sequence[CheckResult]) -> Table:
    table = Table(title="turnkit probe", show_lines=False)
    for column in ("node", "transport", "check", "", "time", "details"):
        table.add_column(column, justify="right" if column == "time" else "left")
    styles = {"✓": "green", "✗": "bold red", "–": "dim"}
    for row in report.table_rows(results):
        node, transport, check, mark, took, details = row
        table.add_row(Text(node), transport, check, Text(mark, style=styles[mark]), took, Text(details))
    return table


def _run_with_progress(
    eps: Sequence[Endpoint], credential_for: CredentialSource, options: Options, only: Sequence[str]
) -> list[CheckResult]:
    total = len(runner.plan(eps, only))
    columns = (TextColumn("probing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=output.stderr, transient=True, disable=not output.stderr.is_terminal) as bar:
        task = bar.add_task("probe", total=total)
        return asyncio.run(runner.run(eps, credential_for, options, only, lambda _: bar.advance(task)))


def _write_textfile(path: Path, text: str) -> None:
    try:
        atomic_write(path, text)
    except WriteError as exc:
        raise record.RecordError(f"--prometheus: {exc}") from None


@probe_app.command("run")
def run(
    urls: list[str] = typer.Argument(
        None, help="ICE URLs: turn:HOST:PORT?transport=udp|tcp, turns:HOST:PORT, stun:HOST:PORT."
    ),
    region: str | None = typer.Option(None, "--region", "-r", help="Probe every node of this region."),
    all_regions: bool = typer.Option(False, "--all-regions", help="Probe every node of every region."),
    config: Path = CONFIG_OPTION,
    via_signaling: str | None = typer.Option(
        None, "--via-signaling", help="Get ICE servers and credentials from this signaling base URL, as a browser does."
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", help=f"Read the JWT for --via-signaling from this file (default: ${TOKEN_ENV})."
    ),
    allow_foreign_targets: bool = typer.Option(
        False, "--allow-foreign-targets", help="With --via-signaling, also probe servers that are not configured nodes."
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="Verify TURN/TLS against this CA instead of the system CAs."
    ),
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds each check may take."),
    concurrency: int = typer.Option(32, "--concurrency", help="Checks in flight at once."),
    packets: int = typer.Option(10, "--packets", help="Relay round-trip packets per relay check."),
    check: list[str] = typer.Option(None, "--check", help=f"Only these checks (repeatable): {', '.join(CHECKS)}."),
    forbidden_peer: list[str] = typer.Option(
        None, "--forbidden-peer", help="Replace the forbidden peer set of the hardening check (repeatable)."
    ),
    json_: bool = JSON_OPTION,
    prometheus: Path | None = typer.Option(None, "--prometheus", help="Write a node_exporter textfile here (atomic)."),
    history_file: Path | None = typer.Option(
        None, "--history", help="Probe history database (default: <state_dir>/probe-history.sqlite)."
    ),
    no_record: bool = typer.Option(False, "--no-record", help="Do not append history or publish node health."),
) -> None:
    """Check that browsers could relay through each node right now; exit 1 if any check fails.

    Also: `turnkit probe history` shows pass rate and RTT per node over time.

    Example: turnkit probe --region eu --prometheus /var/lib/node_exporter/turnkit.prom
    """
    checks, peers = list(check or ()), list(forbidden_peer or ())
    _check_options(timeout, concurrency, packets, checks, peers)
    if ca_file is not None and not ca_file.is_file():
        raise InputError(f"--ca-file: `{ca_file}` is not a file")
    cfg = _config_or_none(config, required=bool(region or all_regions))
    if ca_file is None and cfg is not None and region:
        ca_file = provider_for(cfg, region).ca_file()  # a local region's private CA, if it has one
    creds: dict[str, Credential] = {}
    if via_signaling:
        if urls or all_regions:
            raise InputError("--via-signaling: the signaling service names the targets; drop URLs/--all-regions")
        eps, creds = _from_signaling(cfg, via_signaling, _probe_token(token_file), allow_foreign_targets)
    else:
        eps = _targets(cfg, urls or (), region, all_regions)
    needs_secret = not via_signaling and any(c in NEEDS_CREDENTIAL for _, c in runner.plan(eps, checks))
    secret = _secret(cfg) if needs_secret else None

    def from_signaling(ep: Endpoint, check_name: str) -> Credential | None:
        return creds.get(ep.url)

    credential_for = from_signaling if secret is None else minting(secret, clock.now)

    options = Options(
        timeout=timeout,
        concurrency=concurrency,
        packets=packets,
        forbidden_peers=tuple(peers) if peers else FORBIDDEN_PEERS,
        ca_file=str(ca_file) if ca_file else None,
    )
    started = clock.now()
    results = _run_with_progress(eps, credential_for, options, checks)
    if json_:
        output.emit_json(report.to_json(results, started))
    else:
        output.stdout.print(_table(results))
        n = report.counts(results)
        # Not "N passed, N failed": CI log readers take that shape for a test runner's summary.
        output.result(f"checks: {n['pass']} ok, {n['fail']} failing, {n['skip']} skipped")
    if prometheus is not None:
        _write_textfile(prometheus, report.prometheus(results, started))
    if not no_record:
        record.publish(cfg, results, started, history_file)
    if not report.all_ok(results):
        output.abort("", ExitCode.CHECK_FAILED)  # the table says which checks failed


_BUCKETS = {"hour": 3600, "day": 86400}


@probe_app.command("history")
def history_(
    config: Path = CONFIG_OPTION,
    history_file: Path | None = typer.Option(
        None, "--history", help="Probe history database (default: <state_dir>/probe-history.sqlite)."
    ),
    days: int = typer.Option(30, "--days", help="How far back to look."),
    bucket: str = typer.Option("day", "--bucket", help="Group results per `day` or `hour`."),
    json_: bool = JSON_OPTION,
) -> None:
    """Pass rate and relay RTT per node over time, from the probe history.

    Example: turnkit probe history --days 7 --bucket day
    """
    if bucket not in _BUCKETS:
        raise InputError(f"--bucket: must be one of {', '.join(_BUCKETS)}, got {bucket!r}")
    if days < 1:
        raise InputError(f"--days: must be ≥ 1, got {days}")
    path = history_file or record.history_path(load_config(config))
    periods = history.summary(path, clock.now() - days * 86400, _BUCKETS[bucket])
    if json_:
        output.emit_json([p.to_dict() for p in periods])
        return
    if not periods:
        output.info(f"no probe history in {path}")
        return
    table = Table(title=f"probe history ({bucket})")
    for column in ("node", "period", "runs", "pass rate", "failed", "relay rtt p50", "worst"):
        table.add_column(column)
    fmt = "%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d"
    for p in periods:
        table.add_row(
            Text(f"{p.region}/{p.node}" if p.region else p.node),
            datetime.fromtimestamp(p.period, UTC).strftime(fmt),
            str(p.runs),
            f"{p.pass_rate:.0%}",
            str(p.failed),
            "" if p.relay_rtt_p50 is None else f"{p.relay_rtt_p50 * 1000:.1f} ms",
            "" if p.relay_rtt_worst is None else f"{p.relay_rtt_worst * 1000:.1f} ms",
        )
    output.stdout.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(probe_app, name="probe")
