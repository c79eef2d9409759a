"""The foundation commands end to end: exit codes, stdout/stderr, and one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from turnkit import __version__, config, credentials, keyring


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TURNKIT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "turnkit", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "secret", "init").returncode == 0
    return tmp_path


def test_version() -> None:
    out = run(Path.cwd(), "--version")
    assert out.returncode == 0 and out.stdout == f"turnkit {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [[], ["init"], ["secret"], ["secret", "rotate"], ["creds"], ["creds", "issue"], ["creds", "verify"], ["render"]],
)
def test_every_command_has_help_with_an_example(args: list[str]) -> None:
    out = run(Path.cwd(), *args, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    if args and args[-1] not in ("secret", "creds"):
        assert "Example:" in out.stdout


def test_init_writes_starter_and_refuses_overwrite(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    assert config.load(tmp_path / "turnkit.toml").regions["local"].provider == "local"
    again = run(tmp_path, "init")
    assert again.returncode == 2
    assert again.stderr == "error: `turnkit.toml` already exists (use --force to overwrite)\n"
    assert run(tmp_path, "init", "--force").returncode == 0


def test_secret_init_creates_0600_keyring_and_never_prints_values(project: Path) -> None:
    path = project / "turnkit.secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    value = keyring.load(path).primary.value
    listing = run(project, "secret", "list")
    assert listing.returncode == 0 and value not in listing.stdout + listing.stderr
    assert "\tprimary\t" in listing.stdout
    shown = run(project, "secret", "list", "--show")
    assert value in shown.stdout
    again = run(project, "secret", "init")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_secret_rotate_stage_promote_prune_cycle(project: Path) -> None:
    assert run(project, "secret", "rotate", "--stage").returncode == 0
    rows = json.loads(run(project, "secret", "list", "--json").stdout)
    assert [r["state"] for r in rows] == ["staged", "primary"]
    assert "value" not in rows[0]
    assert run(project, "secret", "promote", rows[0]["id"]).returncode == 0
    rows = json.loads(run(project, "secret", "list", "--json").stdout)
    assert [r["state"] for r in rows] == ["primary", "retired"]
    kept = run(project, "secret", "prune")
    assert kept.returncode == 0 and "pruned 0 secret(s)" in kept.stderr
    dropped = run(project, "secret", "prune", "--grace", "0")
    assert dropped.returncode == 0 and f"pruned 1 secret(s): {rows[1]['id']}" in dropped.stderr
    assert len(json.loads(run(project, "secret", "list", "--json").stdout)) == 1


def test_secret_errors_are_one_line(project: Path) -> None:
    out = run(project, "secret", "promote", "nope")
    assert (out.returncode, out.stderr) == (2, "error: secret keyring: no secret with id `nope`\n")
    out = run(project, "secret", "prune", "--grace", "-1")
    assert (out.returncode, out.stderr) == (2, "error: --grace: must be ≥ 0, got -1\n")
    os.chmod(project / "turnkit.secrets.json", 0o644)
    out = run(project, "secret", "list")
    assert out.returncode == 2 and out.stderr.endswith("mode 0644 is too open, expected 0600\n")
    assert out.stderr.count("\n") == 1


def test_creds_issue_prints_ice_servers_and_verify_accepts_them(project: Path) -> None:
    out = run(project, "creds", "issue", "--user", "alice", "--ttl", "120")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["iceServers"][0] == {"urls": ["stun:127.0.0.1:3478"]}
    turn = doc["iceServers"][1]
    assert turn["urls"] == [
        "turn:127.0.0.1:3478?transport=udp",
        "turn:127.0.0.1:3478?transport=tcp",
        "turns:127.0.0.1:5349?transport=tcp",
    ]
    expiry = int(turn["username"].split(":")[0])
    assert abs(expiry - (time.time() + 120)) < 30 and turn["username"].endswith(":alice")
    ok = run(project, "creds", "verify", turn["username"], turn["credential"])
    assert (ok.returncode, ok.stdout) == (0, "ok\n")
    wrong = run(project, "creds", "verify", turn["username"], "AAAA" + turn["credential"][4:])
    assert (wrong.returncode, wrong.stdout) == (1, "wrong\n")


def test_creds_verify_expired_and_malformed(project: Path) -> None:
    secret = keyring.load(project / "turnkit.secrets.json").primary.value
    old = credentials.issue("bob", secret, int(time.time()) - 7200, 60)
    out = run(project, "creds", "verify", old.username, old.password)
    assert (out.returncode, out.stdout) == (1, "expired\n")
    out = run(project, "creds", "verify", "bob", old.password)
    assert (out.returncode, out.stdout) == (2, "malformed\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", ""], "error: user id: must not be empty\n"),
        (["--user", "a", "--ttl", "10"], "error: ttl: must be between 60 and 172800 seconds, got 10\n"),
        (["--user", "a", "--region", "mars"], "error: turnkit.toml: regions.mars: no such region (known: local)\n"),
    ],
)
def test_creds_issue_bad_input(project: Path, args: list[str], message: str) -> None:
    out = run(project, "creds", "issue", *args)
    assert (out.returncode, out.stderr, out.stdout) == (2, message, "")


def test_bad_flag_is_usage_error_without_traceback(project: Path) -> None:
    out = run(project, "creds", "issue", "--user", "a", "--ttl", "soon")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "Error: Invalid value for '--ttl'" in out.stderr


def test_bad_config_names_file_key_and_value(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\nnodes = 0\n')
    out = run(tmp_path, "render", "--region", "eu", "--out", "x")
    assert (out.returncode, out.stderr) == (2, "error: turnkit.toml: regions.eu.nodes: must be ≥ 1, got 0\n")
    assert not (tmp_path / "x").exists()


def test_missing_config(tmp_path: Path) -> None:
    out = run(tmp_path, "secret", "list")
    assert (out.returncode, out.stderr) == (2, "error: turnkit.toml: not found (create one with `turnkit init`)\n")


def test_render_writes_tree_and_lists_files(project: Path) -> None:
    out = run(project, "render", "--region", "local", "--out", "out", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["region"] == "local" and "turn-1/turnserver.conf" in doc["files"]
    conf = project / "out" / "turn-1" / "turnserver.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    secret = keyring.load(project / "turnkit.secrets.json").primary.value
    assert "userdb=/var/lib/turn/turndb\n" in conf.read_text()  # secrets live in coturn's table, not here
    assert secret not in conf.read_text()
    assert secret not in out.stdout + out.stderr
    assert not list((project / "out").rglob("*.tmp"))


def test_render_without_keyring_and_bad_version(tmp_path: Path) -> None:
    assert run(tmp_path, "init").returncode == 0
    out = run(tmp_path, "render", "--region", "local", "--out", "o")
    assert out.returncode == 2 and "no secret keyring (run `turnkit secret init`)" in out.stderr
    assert run(tmp_path, "secret", "init").returncode == 0
    out = run(tmp_path, "render", "--region", "local", "--out", "o", "--coturn-version", "latest")
    assert (out.returncode, out.stderr) == (2, "error: --coturn-version: expected a version like 4.6.1, got 'latest'\n")


def test_unwritable_output_is_one_line_not_a_traceback(project: Path) -> None:
    (project / "blocker").write_text("")
    out = run(project, "render", "--region", "local", "--out", "blocker/out")
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
    assert "cannot write: Not a directory" in out.stderr


def test_corrupt_node_state_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    assert run(tmp_path, "secret", "init").returncode == 0
    state = tmp_path / ".turnkit" / "regions" / "eu" / "nodes.json"
    state.parent.mkdir(parents=True)
    state.write_text('[{"name": "turn-1", "bogus": 1}]')
    out = run(tmp_path, "render", "--region", "eu", "--out", "o")
    assert (out.returncode, out.stderr) == (2, f"error: {state}: corrupt node state\n")


@pytest.mark.parametrize("version", ["4..6", "4.", "latest"])
def test_render_refuses_malformed_coturn_versions(project: Path, version: str) -> None:
    out = run(project, "render", "--region", "local", "--out", "o", "--coturn-version", version)
    assert (out.returncode, out.stderr) == (
        2,
        f"error: --coturn-version: expected a version like 4.6.1, got {version!r}\n",
    )


def test_a_hostile_region_name_is_one_quoted_line(project: Path) -> None:
    out = run(project, "render", "--region", "a\nb $(id)", "--out", "o")
    assert (out.returncode, out.stderr) == (
        2,
        "error: turnkit.toml: regions.'a\\nb $(id)': no such region (known: local)\n",
    )


def test_every_error_is_one_line_whatever_its_message_holds() -> None:
    from turnkit.cli import one_line

    assert one_line("bad value 'x\ny'\r") == "bad value 'x\\ny'\\r"


def test_turnkit_debug_shows_the_traceback_with_its_chain(project: Path) -> None:
    plain = run(project, "render", "--region", "mars", "--out", "o")
    assert (plain.returncode, plain.stderr) == (2, "error: turnkit.toml: regions.mars: no such region (known: local)\n")
    env = {**os.environ, "TURNKIT_DEBUG": "1"}
    env.pop("TURNKIT_CONFIG", None)
    debug = subprocess.run(
        [sys.executable, "-m", "turnkit", "render", "--region", "mars", "--out", "o"],
        cwd=project, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert debug.returncode == 2
    lines = debug.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "KeyError: 'mars'" in lines  # the chain the one-line error hides
    assert "During handling of the above exception, another exception occurred:" in lines
    assert lines[-2] == "turnkit.errors.ConfigError: turnkit.toml: regions.mars: no such region (known: local)"
    assert lines[-1] == "error: turnkit.toml: regions.mars: no such region (known: local)"


def test_abort_is_the_one_way_a_command_fails() -> None:
    from turnkit.cli import output
    from turnkit.errors import ExitCode, TurnkitError

    with pytest.raises(TurnkitError) as info:
        output.abort("`x` already exists", ExitCode.USAGE)
    assert (str(info.value), info.value.exit_code) == ("`x` already exists", ExitCode.USAGE)
    cli_dir = Path(output.__file__).parent
    offenders = [
        path.name
        for path in sorted(cli_dir.glob("*.py"))
        for pattern in ("sys.exit(", "typer.Exit(int", "SystemExit(")
        if pattern in path.read_text() and path.name != "__init__.py"
    ]
    assert offenders == []
