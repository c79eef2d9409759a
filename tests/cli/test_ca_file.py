"""`--ca-file` of `turnkit usage` and `turnkit meter run`: checked before any connection, one-line errors."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import pytest

from tests.daemons import env_without, free_port
from tests.helpers.cli import run_cli
from turnkit import pki
from turnkit.meter.gate import CA_ENV

CENTRAL_ENV = "TURNKIT_METER_CENTRAL_URL"
COMMANDS = {"usage": ["usage"], "meter run": ["meter", "run", "--node", "turn-1", "--region", "eu"]}
HOSTILE = "ca\n.pem $(touch pwned) `id`"
LONG = "x" * 10_000


def _env(listener: socket.socket, **extra: str) -> dict[str, str]:
    url = f"rediss://127.0.0.1:{listener.getsockname()[1]}/0"
    return {**env_without(CA_ENV), CENTRAL_ENV: url, "TURNKIT_STATSDB_URL": url, **extra}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    (tmp_path / "not-pem.txt").write_text("no certificate here\n")
    (tmp_path / HOSTILE).mkdir()  # the hostile name exists (as a directory): still one line, nothing run
    return tmp_path


CASES = [
    ("missing.pem", "cannot read 'missing.pem': No such file or directory"),
    (".", "cannot read '.': Is a directory"),
    ("not-pem.txt", "'not-pem.txt' holds no PEM CA certificate"),
    (HOSTILE, "cannot read 'ca\\n.pem $(touch pwned) `id`': Is a directory"),
    (LONG, f"cannot read '{'x' * 58}…: File name too long"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("value", "reason"), CASES, ids=["missing", "directory", "not-pem", "hostile", "10kb"])
def test_bad_ca_file_is_one_line_before_any_connection(
    project: Path, listener: socket.socket, command: str, value: str, reason: str
) -> None:
    out = run_cli(*COMMANDS[command], "--ca-file", value, cwd=project, env=_env(listener), timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", f"error: --ca-file: {reason}\n")
    assert not (project / "pwned").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_ca_file_from_the_environment_names_the_variable(
    project: Path, listener: socket.socket, command: str
) -> None:
    env = _env(listener, **{CA_ENV: HOSTILE})
    out = run_cli(*COMMANDS[command], cwd=project, env=env, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        "",
        f"error: --ca-file (from ${CA_ENV}): cannot read 'ca\\n.pem $(touch pwned) `id`': Is a directory\n",
    )


def test_a_readable_pem_bundle_passes_the_check(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    ca = pki.make_ca_and_cert(tmp_path / "certs", ["central.test"], dt.datetime.now(dt.UTC)).ca
    env = {**env_without(CA_ENV), CENTRAL_ENV: f"rediss://127.0.0.1:{free_port()}/0"}  # nothing listens there
    out = run_cli("usage", "--ca-file", str(ca), cwd=tmp_path, env=env, timeout=60)
    assert (out.returncode, out.stderr) == (3, "error: central usage store unreachable (ConnectionError)\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_ca_file_with_a_plain_store_url_is_refused(project: Path, listener: socket.socket, command: str) -> None:
    ca = pki.make_ca_and_cert(project / "certs", ["central.test"], dt.datetime.now(dt.UTC)).ca
    env = _env(listener)
    env[CENTRAL_ENV] = env[CENTRAL_ENV].replace("rediss://", "redis://:pw-not-shown@")
    out = run_cli(*COMMANDS[command], "--ca-file", str(ca), cwd=project, env=env, timeout=60)  # was a TypeError
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        "",
        f"error: --ca-file: ${CENTRAL_ENV} is not a rediss:// URL, so there is no certificate to check\n",
    )
