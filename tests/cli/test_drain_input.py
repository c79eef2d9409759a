"""`turnkit drain`: hostile --statsdb, --node and --timeout values are one-line errors that connect to
nothing and mark nothing (the daemon side is in tests/ops/test_drain.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemons import env_without
from tests.helpers.cli import run_cli

TOML = '[regions.eu]\nprovider = "static"\nhosts = [{address = "198.18.0.10"}]\n'
EXPECTED = "error: --statsdb: expected redis://HOST:PORT/DB, got "


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "turnkit.toml").write_text(TOML)
    return tmp_path


def drain(project: Path, *args: str) -> tuple[int, str, str]:
    out = run_cli("drain", "--region", "eu", *args, cwd=project, env=env_without("TURNKIT_STATSDB_URL"), timeout=60)
    assert sorted(p.name for p in project.iterdir()) == ["turnkit.toml"]  # nothing marked, nothing written
    return out.returncode, out.stdout, out.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:1/0\n$(touch pwned)", "`'redis://127.0.0.1:1/0\\n$(touch pwned)'`"),  # urlsplit drops \n
        ("redis://127.0.0.1:99999/0", "`redis://127.0.0.1:99999/0`"),  # was a ValueError traceback
        ("redis://127.0.0.1:0/0", "`redis://127.0.0.1:0/0`"),
        ("redis://[::1/0", "`redis://[::1/0`"),  # was a ValueError traceback
        ("redis://127.0.0.1:1/0?socket_timeout=x", "`redis://127.0.0.1:1/0?socket_timeout=x`"),  # redis-py options
        ("redis://127.0.0.1:1/db", "`redis://127.0.0.1:1/db`"),
        ("redis://127.0.0.1:1/0#x", "`redis://127.0.0.1:1/0#x`"),
        ("redis://" + "h" * 10_000, "`'redis://" + "h" * 50 + "…`"),  # was a UnicodeError traceback
        ("redis://$(id)/0", "`redis://$(id)/0`"),  # no host name to resolve
        ("redis://", "`redis://`"),
    ],
    ids=["newline", "port-range", "port-0", "ipv6", "query", "db-name", "fragment", "10kb", "host", "no-host"],
)
def test_a_statsdb_url_that_is_not_plain_redis_is_one_line(project: Path, url: str, shown: str) -> None:
    code, out, err = drain(project, "--node", "turn-1", "--count-only", "--statsdb", url)
    assert (code, out, err) == (2, "", EXPECTED + shown + "\n")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_timeout_that_never_ends_is_refused(project: Path, value: str) -> None:
    code, out, err = drain(project, "--node", "turn-1", "--count-only", "--statsdb", "redis://127.0.0.1:1/0",
                           "--timeout", value)  # fmt: skip
    assert (code, out, err) == (2, "", f"error: --timeout: must be a finite number of seconds, got {value}\n")


@pytest.mark.parametrize("mode", ["--mark-only", "--count-only"])
@pytest.mark.parametrize(
    ("node", "shown"),
    [("turn-1\nturn-2", "'turn-1\\nturn-2'"), ("turn|1", "'turn|1'"), ("n" * 10_000, "'" + "n" * 58 + "…")],
    ids=["newline", "bar", "10kb"],
)
def test_a_hostile_node_name_is_one_line(project: Path, mode: str, node: str, shown: str) -> None:
    code, out, err = drain(project, "--node", node, mode, "--statsdb", "redis://127.0.0.1:1/0")
    assert (code, out, err) == (2, "", f"error: --node: expected a node name like turn-1, got {shown}\n")


def test_an_unknown_node_is_named(project: Path) -> None:
    code, out, err = drain(project, "--node", "turn-9", "--mark-only")
    assert (code, out, err) == (2, "", "error: --node: no node `turn-9` in region `eu` (nodes: turn-1)\n")


def test_undrain_checks_the_node_name_too(project: Path) -> None:
    out = run_cli("undrain", "--region", "eu", "--node", "turn-1\n$(id)", cwd=project, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (
        2,
        "",
        "error: --node: expected a node name like turn-1, got 'turn-1\\n$(id)'\n",
    )
    assert sorted(p.name for p in project.iterdir()) == ["turnkit.toml"]
