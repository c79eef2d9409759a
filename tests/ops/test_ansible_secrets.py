"""The coturn role's tasks/secrets.yml, run by the real ansible-playbook against this host (connection local).

The play sits in a `playbooks/` directory beside a `turnkit/secretdb.py`, as in a checkout, so the
role's default `coturn_secretdb_source` lookup is exercised too. Secrets travel in an extra-vars
file, as `turnkit deploy` passes them.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from turnkit import ansible, resources, secretdb

ROLE_TASKS = resources.playbook_dir() / "roles" / "coturn" / "tasks"
PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.import_role:
        name: coturn
        tasks_from: secrets
"""


def run(tmp: Path, secrets: list[str]) -> subprocess.CompletedProcess[str]:
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    variables = {
        "coturn_userdb": str(tmp / "var/lib/turn/turndb"),
        "coturn_realm": "ex.test",
        "coturn_user": user,
        "coturn_group": group,
        "coturn_secretdb_script": str(tmp / "usr/local/lib/turnkit/secretdb.py"),
        "coturn_secretdb_python": sys.executable,
        "ansible_python_interpreter": sys.executable,
    }
    (tmp / "vars.json").write_text(json.dumps(variables))
    (tmp / "secrets.json").write_text(json.dumps({"coturn_static_auth_secrets": secrets}))
    env = {
        **os.environ,
        **ansible.ANSIBLE_ENV,
        **ansible.plugin_env(),
        "ANSIBLE_ROLES_PATH": str(resources.playbook_dir() / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }
    argv = [ansible.ansible_playbook(), "-e", f"@{tmp / 'vars.json'}", "-e", f"@{tmp / 'secrets.json'}"]
    return subprocess.run(
        [*argv, str(tmp / "playbooks" / "play.yml")], env=env, capture_output=True, text=True, timeout=300
    )


def recap(out: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.startswith("localhost") and "ok=" in line)
    return {k: int(v) for k, v in (part.split("=") for part in line.split()[2:])}


def test_secrets_task_writes_exactly_the_accepted_set_without_leaking_or_restarting(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "play.yml").write_text(PLAY)
    (tmp_path / "turnkit").mkdir()
    (tmp_path / "turnkit" / "secretdb.py").symlink_to(Path(secretdb.__file__))
    db = tmp_path / "var/lib/turn/turndb"

    first = run(tmp_path, ["ansible-secret-one", "ansible-secret-two"])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert secretdb.read(db, "ex.test") == {"ansible-secret-one", "ansible-secret-two"}
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert recap(first.stdout)["failed"] == 0 and recap(first.stdout)["changed"] >= 1

    second = run(tmp_path, ["ansible-secret-two", "ansible-secret-three"])
    assert second.returncode == 0, second.stdout[-3000:]
    con = sqlite3.connect(db)
    assert sorted(r[0] for r in con.execute("SELECT value FROM turn_secret")) == [
        "ansible-secret-three",
        "ansible-secret-two",
    ]
    con.close()

    third = run(tmp_path, ["ansible-secret-three", "ansible-secret-two"])  # same set: nothing changes
    assert third.returncode == 0 and recap(third.stdout)["changed"] == 0

    for out in (first, second, third):
        assert "ansible-secret" not in out.stdout + out.stderr  # no_log, and stdin instead of argv
    assert "RUNNING HANDLER" not in first.stdout + second.stdout


def test_secrets_task_notifies_no_handler_and_runs_before_the_config() -> None:
    """A secret change must never restart coturn; the table is full before a config switch restarts it."""
    tasks = yaml.safe_load((ROLE_TASKS / "secrets.yml").read_text())
    assert [t["name"] for t in tasks if "notify" in t] == []
    assert all(t.get("no_log") for t in tasks if "stdin" in t.get("ansible.builtin.command", {}))
    order = [t["ansible.builtin.import_tasks"] for t in yaml.safe_load((ROLE_TASKS / "main.yml").read_text())]
    assert order.index("secrets.yml") < order.index("configure.yml")
