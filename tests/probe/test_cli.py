"""`turnkit probe` end to end: exit codes, JSON, Prometheus textfile, history and node health."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests import daemons
from tests.probe.conftest import Project, turnkit
from turnkit import config as config_mod
from turnkit import health, keyring


def run_probe(conf: Path, *extra: str) -> tuple[int, dict, str]:
    proc = turnkit("probe", "--config", str(conf), "--region", "local", "--json", *extra)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.startswith("{") else {}, proc.stderr


def failed_checks(doc: dict) -> dict[str, str]:
    return {f"{r['check']}/{r['transport']}": r["failure"] for r in doc["results"] if not r["ok"]}


def test_healthy_local_node_passes_and_records_everything(
    project: Project, coturn: daemons.Coturn, redis_url: str
) -> None:
    conf = project.write_config(coturn, toml=f'\n[signaling]\nredis_url = "{redis_url}"\n')
    prom = project.tmp / "textfile" / "turnkit.prom"
    code, doc, err = run_probe(conf, "--ca-file", str(coturn.certs.ca), "--prometheus", str(prom))
    assert code == 0, err
    assert doc["ok"] is True and doc["counts"] == {"pass": 10, "fail": 0, "skip": 1}
    skipped = [r for r in doc["results"] if r["status"] == "skip"]
    assert [(r["check"], r["reason"][:38]) for r in skipped] == [
        ("hardening", "local region allows loopback peers (sk")
    ]
    # Prometheus textfile: parses, one success series per check that ran.
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    success = [s for s in families["turnkit_probe_success"].samples]
    assert len(success) == 10 and all(s.value == 1 for s in success)
    assert {s.labels["transport"] for s in success} == {"udp", "tcp", "tls"}
    assert families["turnkit_probe_cert_expiry_days"].samples[0].value > 89
    # Health: file and Redis both say the node is fine.
    cfg = config_mod.load(conf)
    assert health.read_file(health.path_for(cfg))["local/turn-1"].ok is True
    raw = redis.Redis.from_url(redis_url).get(health.REDIS_KEY)
    assert raw is not None and health.from_json(raw.decode())["local/turn-1"].ok is True
    # History: one run, read back by `turnkit probe history`.
    shown = turnkit("probe", "history", "--config", str(conf), "--json")
    assert shown.returncode == 0, shown.stderr
    [period] = json.loads(shown.stdout)
    assert (period["node"], period["runs"], period["pass_rate"], period["failed"]) == ("turn-1", 1, 1.0, 0)
    assert period["relay_rtt_p50"] > 0


def test_table_output_and_summary_line(project: Project, coturn: daemons.Coturn) -> None:
    conf = project.write_config(coturn)
    proc = turnkit(
        "probe", "--config", str(conf), "--region", "local", "--ca-file", str(coturn.certs.ca), "--no-record"
    )
    assert proc.returncode == 0, proc.stderr
    assert "local/turn-1" in proc.stdout and "✓" in proc.stdout and "rtt p50" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "checks: 10 ok, 0 failing, 1 skipped"
    assert project.secret not in proc.stdout + proc.stderr
    assert not (project.tmp / ".turnkit" / "probe-history.sqlite").exists()


def test_stopped_node_fails_and_drops_out_of_health(project: Project, coturn: daemons.Coturn) -> None:
    conf = project.write_config(coturn)
    coturn.stop()
    code, doc, _ = run_probe(conf, "--ca-file", str(coturn.certs.ca), "--timeout", "3")
    assert code == 1
    assert set(failed_checks(doc).values()) == {"refused"}
    verdict = health.read_file(health.path_for(config_mod.load(conf)))["local/turn-1"]
    assert verdict.ok is False and "allocate/udp" in verdict.failed
    proc = turnkit(
        "probe", "--config", str(conf), "--region", "local", "--timeout", "3", "--check", "stun", "--no-record"
    )
    assert proc.returncode == 1
    assert "✗" in proc.stdout and "[refused] binding 1: connection refused" in proc.stdout


def test_wrong_secret_in_keyring_fails_with_401(project: Project, coturn: daemons.Coturn) -> None:
    conf = project.write_config(coturn)
    keyring.save(project.cfg.secrets_path, keyring.init(1))  # a fresh keyring coturn has never seen
    code, doc, _ = run_probe(conf, "--ca-file", str(coturn.certs.ca), "--no-record")
    assert code == 1
    assert failed_checks(doc) == {
        "allocate/udp": "401", "relay/udp": "401", "allocate/tcp": "401", "relay/tcp": "401",
        "allocate/tls": "401", "relay/tls": "401",
    }  # fmt: skip


def test_node_relaying_to_loopback_fails_hardening(project: Project, coturn: daemons.Coturn) -> None:
    """turnkit.toml says the local node is hardened, but the running coturn allows loopback peers."""
    conf = project.write_config(coturn, loopback=False)
    code, doc, _ = run_probe(conf, "--ca-file", str(coturn.certs.ca), "--no-record")
    assert code == 1
    assert failed_checks(doc) == {"hardening/udp": "allowed"}
    [hardening] = [r for r in doc["results"] if r["check"] == "hardening"]
    assert hardening["reason"] == "relay allowed forbidden peer(s): 127.0.0.1, 127.255.255.254"


def test_explicit_urls_with_secrets_file_env_and_no_config(
    project: Project, coturn: daemons.Coturn, tmp_path: Path
) -> None:
    urls = [
        f"stun:127.0.0.1:{coturn.port}",
        f"turn:127.0.0.1:{coturn.port}?transport=tcp",
        f"turns:127.0.0.1:{coturn.tls_port}",
    ]
    proc = turnkit(
        "probe", *urls, "--config", str(tmp_path / "absent.toml"), "--ca-file", str(coturn.certs.ca), "--json",
        env={"TURNKIT_SECRETS_FILE": str(project.cfg.secrets_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    plain, tls = f"127.0.0.1:{coturn.port}", f"127.0.0.1:{coturn.tls_port}"
    assert {(r["node"], r["transport"], r["check"]) for r in doc["results"]} == {
        (plain, "udp", "stun"), (plain, "tcp", "stun"), (plain, "tcp", "allocate"),
        (plain, "tcp", "relay"), (tls, "tls", "allocate"), (tls, "tls", "relay"),
    }  # fmt: skip
    assert len(doc["results"]) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: nothing to probe: give --region R, --all-regions or URLs (e.g. turn:host:3478?transport=udp)"),
        (["turn:host:70000"], "error: url `turn:host:70000`: port must be 1..65535, got '70000'"),
        (["ftp://host"], "error: url `ftp://host`: expected stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]"),
        (["--region", "local", "--all-regions"], "error: --region and --all-regions: give one, not both"),
        (["--region", "mars"], "error: turnkit.toml: regions.mars: no such region (known: local)"),
        (["--region", "local", "--timeout", "0"], "error: --timeout: must be > 0 seconds, got 0"),
        (["--region", "local", "--concurrency", "0"], "error: --concurrency: must be ≥ 1, got 0"),
        (["--region", "local", "--check", "ping"], "error: --check: unknown check `ping` (known: stun, unauth, allocate, relay, hardening, expired)"),
        (["--region", "local", "--forbidden-peer", "metadata"], "error: --forbidden-peer: not an IP address, got 'metadata'"),
        (["--region", "local", "--ca-file", "/nonexistent/ca.pem"], "error: --ca-file: `/nonexistent/ca.pem` is not a file"),
        (["--via-signaling", "http://127.0.0.1:9"], "error: --via-signaling: needs a JWT: set $TURNKIT_PROBE_TOKEN or pass --token-file FILE"),
        (["--via-signaling", "http://127.0.0.1:9", "--token-file", "/nonexistent/jwt"], "error: --token-file: cannot read `/nonexistent/jwt`: No such file or directory"),
    ],
)  # fmt: skip
def test_bad_usage_is_one_line_and_exit_2(project: Project, args: list[str], message: str) -> None:
    proc = turnkit("probe", "--config", str(project.cfg.path), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert proc.stdout == ""


def test_bad_signaling_url_is_one_line(project: Project) -> None:
    proc = turnkit(
        "probe", "--config", str(project.cfg.path), "--via-signaling", "ftp://x", env={"TURNKIT_PROBE_TOKEN": "t"}
    )
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "error: --via-signaling: expected an http(s):// URL, got 'ftp://x'",
    )


def test_the_probe_token_never_comes_from_argv(project: Project) -> None:
    """A JWT on the command line lands in shell history and `ps`: only a file or the environment."""
    proc = turnkit("probe", "--config", str(project.cfg.path), "--via-signaling", "http://127.0.0.1:9", "--token", "t")
    assert proc.returncode == 2
    assert "No such option: --token" in proc.stderr
    empty = project.tmp / "empty.jwt"
    empty.write_text("\n")
    proc = turnkit(
        "probe", "--config", str(project.cfg.path), "--via-signaling", "http://127.0.0.1:9", "--token-file", str(empty)
    )
    assert (proc.returncode, proc.stderr.strip()) == (2, f"error: --token-file: `{empty}` is empty")


def test_unknown_flag_is_a_usage_error(project: Project) -> None:
    proc = turnkit("probe", "--config", str(project.cfg.path), "--regoin", "local")
    assert proc.returncode == 2
    assert "No such option: --regoin" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_keyring_is_one_line(project: Project, coturn: daemons.Coturn) -> None:
    conf = project.write_config(coturn)
    project.cfg.secrets_path.unlink()
    proc = turnkit("probe", "--config", str(conf), "--region", "local")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {project.cfg.secrets_path}: no secret keyring (run `turnkit secret init`)"


def test_history_with_no_runs_and_bad_bucket(project: Project) -> None:
    empty = turnkit("probe", "history", "--config", str(project.cfg.path))
    assert empty.returncode == 0 and empty.stderr.strip().startswith("no probe history in ")
    bad = turnkit("probe", "history", "--config", str(project.cfg.path), "--bucket", "week")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --bucket: must be one of hour, day, got 'week'"


def test_all_regions_probes_every_configured_node(project: Project, coturn: daemons.Coturn) -> None:
    lab = '\n[regions.lab]\nprovider = "static"\nnodes = 1\n[[regions.lab.hosts]]\nname = "turn-b"\naddress = "127.0.0.2"\n'
    conf = project.write_config(coturn, toml=lab)
    code, doc, _ = run_probe_all(conf)
    assert code == 1  # nothing listens on 127.0.0.2
    nodes = {(r["region"], r["node"]): r["ok"] for r in doc["results"]}
    assert nodes == {("local", "turn-1"): True, ("lab", "turn-b"): False}


def run_probe_all(conf: Path) -> tuple[int, dict, str]:
    proc = turnkit(
        "probe", "--config", str(conf), "--all-regions", "--check", "stun", "--json", "--no-record", "--timeout", "3"
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_unwritable_textfile_is_a_runtime_error_after_the_results(project: Project, coturn: daemons.Coturn) -> None:
    blocker = project.tmp / "not-a-dir"
    blocker.write_text("")
    target = blocker / "turnkit.prom"
    proc = turnkit(
        "probe", f"stun:127.0.0.1:{coturn.port}", "--config", str(project.cfg.path), "--prometheus", str(target)
    )
    assert proc.returncode == 3
    assert proc.stdout.rstrip().splitlines()[-1] == "checks: 1 ok, 0 failing, 0 skipped"  # stun over udp
    assert proc.stderr.strip() == f"error: --prometheus: {target}: cannot write: File exists"  # its directory is a file


def test_history_table_per_node_and_day(project: Project, tmp_path: Path) -> None:
    from turnkit import clock
    from turnkit.probe import history
    from turnkit.probe.result import CheckResult, Failure, Status, Transport

    db = tmp_path / "h.sqlite"
    now = clock.now()
    ok = CheckResult("relay", "eu", "turn-1", Transport.UDP, Status.PASS, 0.01, details={"rtt_p50": 0.0042})
    bad = CheckResult(
        "allocate", "eu", "turn-1", Transport.TLS, Status.FAIL, 5.0, Failure.TLS, "TLS: certificate has expired"
    )
    day = now - now % 86400  # both runs inside today's bucket, whatever the time of day
    history.append(db, day, [ok, bad])
    history.append(db, min(day + 1, now), [ok, ok])
    proc = turnkit("probe", "history", "--config", str(project.cfg.path), "--history", str(db), "--days", "1")
    assert proc.returncode == 0, proc.stderr
    [row] = [line for line in proc.stdout.splitlines() if "eu/turn-1" in line]
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[2:] == ["2", "75%", "1", "4.2 ms", "4.2 ms"]
