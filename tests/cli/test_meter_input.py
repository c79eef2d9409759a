"""`turnkit meter run`: a hostile --node, --metrics-host, --metrics-port or $TURNKIT_STATSDB_URL is a
one-line error before the meter connects to anything or binds a port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.daemons import env_without
from tests.helpers.cli import run_cli

TOML = '[regions.eu]\nprovider = "aws"\n'
HOSTILE = "turn-1|eu\n$(touch pwned)"


def meter_run(project: Path, listener: socket.socket, *args: str, statsdb: str | None = None) -> tuple[int, str]:
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    env = {**env_without("TURNKIT_METER_CENTRAL_CA"), "TURNKIT_STATSDB_URL": statsdb or url,
           "TURNKIT_METER_CENTRAL_URL": url.replace("redis:", "rediss:")}  # fmt: skip
    out = run_cli("meter", "run", "--region", "eu", "--metrics-port", "0", *args, cwd=project, env=env, timeout=60)
    assert not (project / "pwned").exists()
    return out.returncode, out.stdout + out.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "turnkit.toml").write_text(TOML)
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node", HOSTILE], "error: --node: expected a node name like turn-1, got 'turn-1|eu\\n$(touch pwned)'\n"),
        (["--node", "n" * 10_000], "error: --node: expected a node name like turn-1, got '" + "n" * 58 + "…\n"),
        (
            ["--node", "turn-1", "--metrics-host", "$(id)"],
            "error: --metrics-host: must be an IP address, got '$(id)'\n",
        ),
    ],
    ids=["node-hostile", "node-10kb", "metrics-host"],
)
def test_hostile_options_are_one_line(project: Path, listener: socket.socket, args: list[str], message: str) -> None:
    assert meter_run(project, listener, *args) == (2, message)


def test_metrics_port_out_of_range_is_one_line(project: Path, listener: socket.socket) -> None:
    output = meter_run(project, listener, "--node", "turn-1", "--metrics-port", "70000")  # was an OverflowError
    assert output == (2, "error: --metrics-port: must be from 0 (off) to 65535, got 70000\n")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0\nx", "expected redis://HOST:PORT/DB, got `'redis://127.0.0.1:1/0\\nx'`"),
        ("redis://:pw@127.0.0.1:1/0", "put the password in $TURNKIT_STATSDB_PASSWORD, not in the URL"),
    ],
    ids=["newline", "password"],
)
def test_a_bad_statsdb_url_names_its_variable(project: Path, listener: socket.socket, url: str, message: str) -> None:
    code, output = meter_run(project, listener, "--node", "turn-1", statsdb=url)
    assert (code, output) == (2, f"error: $TURNKIT_STATSDB_URL: {message}\n")
