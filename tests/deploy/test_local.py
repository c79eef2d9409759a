"""`turnkit deploy --region local`: real coturn and signaling processes on loopback, probed, then taken down."""

from __future__ import annotations

import json
import socket
import stat
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.helpers.cli import run_cli
from tests.helpers.deploy import Site, alive
from turnkit import keyring, localstack, secretdb
from turnkit.nodes import region_nodes

#: What a one-node local region runs: the central usage store, statsdb + coturn + meter, signaling.
SERVICES = ("meter-central", "statsdb-turn-1", "coturn-turn-1", "meter-turn-1", "signaling")


def ice_servers(site: Site, token: str) -> dict[str, object]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{site.signaling}/api/ice-servers", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        doc: dict[str, object] = json.loads(resp.read())
    return doc


def demo_token(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("demo page: "))
    url = urlparse(line.removeprefix("demo page: "))
    assert f"{url.scheme}://{url.netloc}/" == f"http://127.0.0.1:{url.port}/"
    return parse_qs(url.query)["token"][0]


def test_deploy_local_brings_up_a_probed_stack_and_down_stops_it(site: Site) -> None:
    first = site.cli("deploy", "--region", "local", "--show-token")
    assert first.returncode == 0, first.stderr
    cfg = site.load()
    lay = localstack.layout(cfg, "local")

    # Secrets were generated: the keyring and the JWT secret, both 0600.
    assert stat.S_IMODE(cfg.secrets_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(lay.jwt_secret.stat().st_mode) == 0o600
    assert keyring.load(cfg.secrets_path).primary.value not in first.stdout + first.stderr

    # The demo URL carries a working dev token; the signaling service answers with these nodes.
    token = demo_token(first.stdout)
    doc = ice_servers(site, token)
    urls = [u for server in doc["iceServers"] for u in server["urls"]]  # type: ignore[attr-defined, index]
    assert f"turn:127.0.0.1:{site.listening}?transport=udp" in urls
    assert f"turns:127.0.0.1:{site.tls}?transport=tcp" in urls

    # `turnkit probe --region local` passes against it: TLS is checked against the local CA by default.
    probe = site.cli("probe", "--region", "local", "--json")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    tls = [r for r in json.loads(probe.stdout)["results"] if r["transport"] == "tls"]
    assert tls and all(r["ok"] for r in tls)

    status = site.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)
    assert (row["name"], row["hostname"], row["probe"]) == ("turn-1", "127.0.0.1", "pass")

    # Re-running changes nothing that is up to date: same processes.
    pids = localstack.status(cfg, "local")
    assert set(pids) == set(SERVICES) and all(pids.values())
    again = site.cli("deploy", "--region", "local", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ok"] is True
    assert localstack.status(cfg, "local") == pids
    # Without --show-token the token is nowhere in the output (it would end up in CI logs).
    assert json.loads(again.stdout)["demo_url"] == f"http://127.0.0.1:{site.signaling}/"
    assert "token=" not in again.stdout + again.stderr
    text = site.cli("deploy", "--region", "local")
    assert f"demo page: http://127.0.0.1:{site.signaling}/\n" in text.stdout
    assert "token=" not in text.stdout + text.stderr

    down = site.cli("down", "--region", "local")
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"stopped {len(SERVICES)} process(es) of region `local`"
    assert not any(alive(pid) for pid in pids.values() if pid)
    assert list(lay.run.glob("*.json")) == []
    assert site.cli("down", "--region", "local").stdout.strip() == "stopped 0 process(es) of region `local`"


def test_changed_config_restarts_only_what_changed(site: Site) -> None:
    assert site.cli("deploy", "--region", "local").returncode == 0
    cfg = site.load()
    before = localstack.status(cfg, "local")
    ring = keyring.rotate(keyring.load(cfg.secrets_path), 1, stage=True)
    keyring.save(cfg.secrets_path, ring)
    out = site.cli("deploy", "--region", "local", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["promoted"] == ring.secrets[0].id
    after = localstack.status(cfg, "local")
    assert after["coturn-turn-1"] == before["coturn-turn-1"]  # new accepted secret: a table row, no restart
    assert after["signaling"] == before["signaling"]  # it re-reads the keyring itself
    lay, node = localstack.layout(cfg, "local"), region_nodes(cfg, "local")[0]
    conf = lay.coturn_dir(node) / "turnserver.conf"
    assert "static-auth-secret=" not in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert sorted(secretdb.read(lay.userdb(node), cfg.project.effective_realm)) == sorted(ring.accepted)
    assert stat.S_IMODE(lay.userdb(node).stat().st_mode) == 0o600


def test_dry_run_only_plans(site: Site) -> None:
    out = site.cli("deploy", "--region", "local", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"create process meter-central (central usage store rediss://127.0.0.1:{site.central})",
        f"create process statsdb-turn-1 (statsdb redis-server on 127.0.0.1:{site.statsdb})",
        f"create process coturn-turn-1 (turnserver on 127.0.0.1:{site.listening}/udp+tcp, {site.tls}/tls)",
        f"create process meter-turn-1 (turnkit meter for turn-1, /metrics on 127.0.0.1:{site.metrics})",
        f"create process signaling (turnkit signaling on http://127.0.0.1:{site.signaling})",
    ]
    assert localstack.status(site.load(), "local") == {}
    assert not site.load().secrets_path.exists()


def test_busy_port_is_one_line_naming_the_port(site: Site) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", site.tls))
        blocker.listen()
        out = site.cli("deploy", "--region", "local")
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == f"error: ports.tls: port {site.tls}/tcp on 127.0.0.1 is already in use"
    assert "Traceback" not in out.stderr
    assert localstack.status(site.load(), "local") == {}


def test_unknown_region_and_missing_config_exit_2(site: Site, tmp_path: Path) -> None:
    out = site.cli("deploy", "--region", "mars")
    assert (out.returncode, out.stderr.strip()) == (
        2,
        "error: turnkit.toml: regions.mars: no such region (known: local)",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run_cli("deploy", "--region", "local", cwd=empty)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "error: turnkit.toml: not found (create one with `turnkit init`)",
    )
    down = site.cli("down", "--region", "mars")
    assert down.returncode == 2


def test_down_refuses_a_cloud_region(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    out = run_cli("down", "--region", "eu", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: --region: `down` stops a local region; use `turnkit destroy --region eu`, got 'eu'"
    )
