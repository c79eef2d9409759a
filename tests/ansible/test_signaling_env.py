"""The signaling role's environment file carries the quota gate's reader of the usage store.

`turnkit deploy` hands the signaling host the read-only `usage` user's URL (a secret) and the store's
CA (public) (turnkit.meter.remote); the role's own configure tasks, run for real by ansible-playbook
on this machine with every path in a temporary directory, must merge the URL into the root-only
environment file next to the operator's JWT secret, write the CA where that file names it, and never
show a secret in Ansible's output.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests import daemons
from turnkit import ansible, localmeter, resources
from turnkit.meter import remote
from turnkit.nodes import Node

NODES = [Node("turn-1", "eu", "turn-1.eu.example.test", "203.0.113.10")]
JWT = "jwt-secret-0123456789abcdef0123456789"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBlab\n-----END CERTIFICATE-----\n"

PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the signaling role's configure tasks
      ansible.builtin.import_role:
        name: signaling
        tasks_from: configure.yml
"""


def run_configure(tmp: Path, extra: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    etc = tmp / "etc"
    role_vars = {
        "turnkit_header": "managed by turnkit (test)",
        "turnkit_templates_dir": str(resources.template_dir()),
        "ansible_python_interpreter": "/usr/bin/python3",
        "signaling_config_dir": str(etc),
        "signaling_env_file": str(etc / "signaling.env"),
        "signaling_secrets_file": str(etc / "turnkit.secrets.json"),
        "signaling_unit_file": str(tmp / "turnkit-signaling@.service"),
        "signaling_usage_store_ca_file": str(etc / "usage-store-ca.pem"),
        "signaling_manage_service": False,
        **extra,
    }
    (tmp / "play.yml").write_text(PLAY)
    secrets = tmp / "vars.json"
    secrets.write_text(json.dumps(role_vars))
    secrets.chmod(0o600)
    env = {**os.environ, **ansible.plugin_env(), "ANSIBLE_ROLES_PATH": str(resources.playbook_dir() / "roles")}
    env["ANSIBLE_NOCOLOR"] = "1"
    return subprocess.run(
        [ansible.ansible_playbook(), "-i", "localhost,", "-c", "local", "-e", f"@{secrets}", str(tmp / "play.yml")],
        capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_gate_reader_url_and_ca_land_in_the_root_only_environment_file(tmp_path: Path) -> None:
    extra = '\n[signaling]\nserver_name = "call.example.test"\n\n[regions.eu]\nprovider = "aws"\nnodes = 1\n'
    cfg = daemons.local_config(tmp_path, extra)
    keys = localmeter.load_keys(remote.paths(cfg, "eu"))
    url = f"rediss://usage:{keys.central('usage')}@call.example.test:{cfg.meter.central_port}/0"
    handed = {
        "signaling_environment": {"TURNKIT_JWT_SECRET": JWT},
        **remote.signaling_secrets(cfg, keys, NODES),
        **remote.ca_vars(ca_file(tmp_path)),
    }
    out = run_configure(tmp_path, handed)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    env_file = tmp_path / "etc/signaling.env"
    assert env_file.read_text() == (
        f"TURNKIT_JWT_SECRET={JWT}\nTURNKIT_METER_CENTRAL_URL={url}\n"
        f"TURNKIT_METER_CENTRAL_CA={tmp_path / 'etc/usage-store-ca.pem'}\n"
    )
    assert env_file.stat().st_mode & 0o777 == 0o600
    ca = tmp_path / "etc/usage-store-ca.pem"
    assert ca.read_text() == CA_PEM and ca.stat().st_mode & 0o777 == 0o644
    for secret in (JWT, keys.central("usage"), url):
        assert secret not in out.stdout and secret not in out.stderr


def test_without_a_store_ca_or_reader_the_file_holds_the_operator_environment_only(tmp_path: Path) -> None:
    out = run_configure(tmp_path, {"signaling_environment": {"TURNKIT_JWT_SECRET": JWT}})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "etc/signaling.env").read_text() == f"TURNKIT_JWT_SECRET={JWT}\n"
    assert not (tmp_path / "etc/usage-store-ca.pem").exists()


def ca_file(tmp: Path) -> Path:
    path = tmp / "lab-root.pem"
    path.write_text(CA_PEM)
    return path
