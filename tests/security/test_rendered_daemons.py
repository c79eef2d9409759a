"""Odd-but-valid values through the real consumers: `nginx -t` on the rendered config, and a shell
run of the rendered certbot deploy hook (config-valid paths, and paths only the quoting keeps safe)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.security.test_template_structure import ODD
from turnkit import config, nodes, pki, render, resources

HOOK = "signaling/letsencrypt/renewal-hooks/deploy/turnkit-install-certs.sh"


def odd_config(tmp_path: Path) -> config.Config:
    """ODD with its paths moved under tmp_path (still the odd characters)."""
    text = ODD.replace('"/etc/lets+encrypt/live=1"', f'"{tmp_path}/lets+encrypt/live=1"')
    text = text.replace('"/var/www/acme=a,b:c@d+e-f_g.h"', f'"{tmp_path}/www/acme=a,b:c@d+e-f_g.h"')
    text = text.replace('"/srv/turn+kit/certs=a,b:c@d-e_f.g"', f'"{tmp_path}/turn+kit/certs=a,b:c@d-e_f.g"')
    path = tmp_path / "turnkit.toml"
    path.write_text(text)
    return config.load(path)


def render_odd(tmp_path: Path, overrides: dict[str, Any]) -> dict[str, render.Rendered]:
    cfg = odd_config(tmp_path)
    return render.render_region(cfg, nodes.region_nodes(cfg, "us"), ["s"], "4.6.1", resources.template_dir(), overrides)


def test_nginx_accepts_config_rendered_from_odd_values(tmp_path: Path) -> None:
    cfg = odd_config(tmp_path)
    server_name = cfg.signaling.server_name
    assert server_name is not None
    pki.make_ca_and_cert(Path(cfg.tls.live_dir) / server_name, [server_name], dt.datetime.now(dt.UTC))
    Path(cfg.tls.webroot).mkdir(parents=True)
    for sub in ("logs", "temp"):
        (tmp_path / sub).mkdir()
    overrides = {
        "nginx_pid_file": str(tmp_path / "nginx.pid"),
        "nginx_log_dir": str(tmp_path / "logs"),
        "nginx_temp_dir": str(tmp_path / "temp"),
        "nginx_user": "root",
    }
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_odd(tmp_path, overrides)["signaling/nginx/nginx.conf"].content)
    result = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr
    text = conf.read_text()
    assert f"root {cfg.tls.webroot};" in text and "server [::1]:8080 max_fails=3" in text


def run_hook(tmp_path: Path, cert_dir: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    lineage = tmp_path / "lineage"
    pki.make_ca_and_cert(lineage, ["turn.example.test"], dt.datetime.now(dt.UTC))
    marker = tmp_path / "reloaded"
    overrides = {
        "certbot_coturn_cert_dir": cert_dir,
        "certbot_coturn_user": "nobody-turnkit-test",  # no such user: the hook skips chown
        "certbot_coturn_reload_command": f"touch {marker}",
        "certbot_nginx_reload_command": "true",
    }
    hook = tmp_path / "hook.sh"
    hook.write_text(render_odd(tmp_path, overrides)[HOOK].content)
    hook.chmod(0o755)
    env = {**os.environ, "RENEWED_LINEAGE": str(lineage)}
    result = subprocess.run([str(hook)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    return result, marker


def test_deploy_hook_installs_into_a_config_valid_odd_path(tmp_path: Path) -> None:
    cfg = odd_config(tmp_path)
    result, marker = run_hook(tmp_path, cfg.coturn.cert_dir)
    assert result.returncode == 0, result.stderr
    dest = Path(cfg.coturn.cert_dir)
    assert sorted(p.name for p in dest.iterdir()) == ["fullchain.pem", "privkey.pem"]
    assert (dest / "privkey.pem").read_bytes() == (tmp_path / "lineage" / "privkey.pem").read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o700 and marker.exists()


def test_deploy_hook_quotes_a_path_that_bypassed_the_config(tmp_path: Path) -> None:
    """Spaces, quotes, `;`, `$(…)` and backticks (refused by the config) stay one word in the hook."""
    cert_dir = str(tmp_path / "c d'\"; touch pwned1 #$(touch pwned2)`touch pwned3`")
    result, _ = run_hook(tmp_path, cert_dir)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in Path(cert_dir).iterdir()) == ["fullchain.pem", "privkey.pem"]
    assert not any(tmp_path.glob("pwned*")) and not any(Path.cwd().glob("pwned*"))
