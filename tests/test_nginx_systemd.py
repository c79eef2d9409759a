"""`nginx -t` and `systemd-analyze verify` accept what turnkit renders."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests import daemons
from turnkit import config, nodes, pki, render, resources

TOML = """
[project]
domain = "call.example.test"
[ports]
tls_443 = {tls_443}
[regions.us]
provider = "static"
nodes = 1
[[regions.us.hosts]]
address = "turn-1.us.example.test"
public_ip = "198.51.100.7"
private_ip = "10.0.0.7"
"""


def rendered(tmp_path: Path, tls_443: bool, overrides: dict[str, object]) -> dict[str, render.Rendered]:
    path = tmp_path / "turnkit.toml"
    path.write_text(TOML.format(tls_443=str(tls_443).lower()))
    cfg = config.load(path)
    return render.render_region(cfg, nodes.region_nodes(cfg, "us"), ["s"], "4.6.1", resources.template_dir(), overrides)


def nginx_overrides(tmp_path: Path) -> dict[str, object]:
    certs = pki.make_ca_and_cert(tmp_path / "certs", ["call.example.test"], dt.datetime.now(dt.UTC))
    for sub in ("logs", "temp", "acme"):
        (tmp_path / sub).mkdir()
    return {
        "nginx_cert_file": str(certs.cert),
        "nginx_key_file": str(certs.key),
        "nginx_pid_file": str(tmp_path / "nginx.pid"),
        "nginx_log_dir": str(tmp_path / "logs"),
        "nginx_temp_dir": str(tmp_path / "temp"),
        "nginx_acme_webroot": str(tmp_path / "acme"),
        "nginx_user": "root",
    }


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("tls_443", [False, True], ids=["plain", "shared-443"])
def test_nginx_accepts_rendered_config(tmp_path: Path, tls_443: bool) -> None:
    files = rendered(tmp_path, tls_443, nginx_overrides(tmp_path))
    conf = tmp_path / "nginx.conf"
    conf.write_text(files["signaling/nginx/nginx.conf"].content)
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr
    assert ("stream {" in conf.read_text()) is tls_443


def test_nginx_test_catches_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a missing certificate is refused."""
    overrides = nginx_overrides(tmp_path) | {"nginx_cert_file": str(tmp_path / "missing.pem")}
    conf = tmp_path / "nginx.conf"
    conf.write_text(rendered(tmp_path, False, overrides)["signaling/nginx/nginx.conf"].content)
    assert nginx_test(conf).returncode != 0


def verify(units: list[Path], unit_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if unit_path is not None:
        env["SYSTEMD_UNIT_PATH"] = f"{unit_path}:"
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, env=env, timeout=60
    )


def systemd_files(tmp_path: Path) -> dict[str, render.Rendered]:
    turnkit_bin = str(Path(sys.executable).parent / "turnkit")
    return rendered(tmp_path, False, {"signaling_exec": turnkit_bin, "probe_exec": turnkit_bin})


def test_systemd_verify_accepts_signaling_and_probe_units(tmp_path: Path) -> None:
    files = systemd_files(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    for name in ("turnkit-probe.service", "turnkit-probe.timer"):
        (units / name).write_text(files[f"signaling/systemd/{name}"].content)
    # A template unit is verified through an instance name (instance = port).
    (units / "turnkit-signaling@8080.service").write_text(files["signaling/systemd/turnkit-signaling@.service"].content)
    result = verify(sorted(units.iterdir()), units)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_systemd_verify_accepts_coturn_dropin(tmp_path: Path) -> None:
    files = systemd_files(tmp_path)
    units = tmp_path / "units"
    (units / "coturn.service.d").mkdir(parents=True)
    shutil.copy("/lib/systemd/system/coturn.service", units / "coturn.service")
    (units / "coturn.service.d" / "turnkit.conf").write_text(
        files["turn-1/systemd/coturn.service.d/turnkit.conf"].content
    )
    result = verify([Path("coturn.service")], units)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_systemd_verify_reports_a_bad_dropin(tmp_path: Path) -> None:
    """The check above can fail: systemd warns (exit 0) on a bad value, and the test reads stderr."""
    units = tmp_path / "units"
    (units / "coturn.service.d").mkdir(parents=True)
    shutil.copy("/lib/systemd/system/coturn.service", units / "coturn.service")
    (units / "coturn.service.d" / "turnkit.conf").write_text("[Service]\nLimitNOFILE=lots\n")
    assert "Failed to parse" in verify([Path("coturn.service")], units).stderr


def test_signaling_unit_runs_instances_hardened(tmp_path: Path) -> None:
    unit = systemd_files(tmp_path)["signaling/systemd/turnkit-signaling@.service"].content
    for line in (
        "Restart=always",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "PrivateTmp=true",
        "DynamicUser=true",
    ):
        assert line in unit.splitlines()
    assert "--port %i" in unit and "LimitNOFILE=65536" in unit


def test_probe_timer_is_nightly_persistent_randomized(tmp_path: Path) -> None:
    timer = systemd_files(tmp_path)["signaling/systemd/turnkit-probe.timer"].content.splitlines()
    assert "Persistent=true" in timer and "RandomizedDelaySec=30min" in timer
    assert any(line.startswith("OnCalendar=") for line in timer)


#: Variables an access log line may use: the path without its query string, never the request line.
LEAKY_LOG_VARIABLES = ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$arg_", "$http_referer")


def test_access_log_format_records_paths_without_query_strings(tmp_path: Path) -> None:
    conf = rendered(tmp_path, False, {})["signaling/nginx/nginx.conf"].content
    log_format = conf.split("log_format turnkit ", 1)[1].split(";", 1)[0]
    assert "$uri" in log_format
    assert [v for v in LEAKY_LOG_VARIABLES if v in log_format] == []
    access_logs = [line.strip() for line in conf.splitlines() if line.strip().startswith("access_log")]
    assert access_logs == ["access_log /var/log/nginx/access.log turnkit;"]


def test_real_nginx_logs_ws_and_api_requests_without_their_tokens(tmp_path: Path) -> None:
    """nginx runs the rendered config; /ws and /api/ requests with a token in the query are logged
    by path only (the upstream is down: 502 over HTTPS, 301 on plain HTTP)."""
    http_port, https_port, dead_upstream = daemons.free_port(), daemons.free_port(), daemons.free_port()
    overrides = nginx_overrides(tmp_path) | {
        "nginx_http_port": http_port,
        "nginx_https_listen": f"127.0.0.1:{https_port}",
        "nginx_upstream_servers": [f"127.0.0.1:{dead_upstream}"],
    }
    conf = tmp_path / "nginx.conf"
    conf.write_text(rendered(tmp_path, False, overrides)["signaling/nginx/nginx.conf"].content)
    token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        daemons.wait_port(https_port)
        daemons.wait_port(http_port)
        context = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.pem"))
        context.check_hostname = False  # the certificate names call.example.test; we dial 127.0.0.1
        statuses = []
        for path in (f"/ws?token={token}", f"/api/ice-servers?token={token}&region=us"):
            https = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=10)
            https.request("GET", path, headers={"Host": "call.example.test", "Referer": f"https://x/?token={token}"})
            statuses.append(https.getresponse().status)
            https.close()
            plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
            plain.request("GET", path)
            statuses.append(plain.getresponse().status)
            plain.close()
        for path in ("/metrics", "/healthz", "/readyz"):  # internals stay on the instance ports
            https = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=10)
            https.request("GET", path, headers={"Host": "call.example.test"})
            statuses.append(https.getresponse().status)
            https.close()
    finally:
        daemons.stop_process(proc)
    assert statuses == [502, 301, 502, 301, 404, 404, 404]
    log = (tmp_path / "logs" / "access.log").read_text()
    assert len(log.splitlines()) == 7
    assert log.count('"GET /ws HTTP/1.1"') == 2 and log.count('"GET /api/ice-servers HTTP/1.1"') == 2
    assert token not in log and "token=" not in log
