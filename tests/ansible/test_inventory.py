"""turnkit.ansible without running Ansible: inventory contents, secret handling, output parsing."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests import daemons
from turnkit import ansible, keyring, render, resources
from turnkit.config import Config
from turnkit.errors import TurnkitError
from turnkit.nodes import Node

NODES = [
    Node("turn-1", "eu", "turn-1.eu.example.test", "203.0.113.10", "10.0.0.10"),
    Node("turn-2", "eu", "turn-2.eu.example.test", "203.0.113.11", None),
]

FAILED_OUTPUT = """\
PLAY [Configure the TURN relays] ***********************************************

TASK [coturn : Install the coturn package] *************************************
ok: [turn-1]
ok: [turn-2]

TASK [coturn : Write the coturn configuration] *********************************
fatal: [turn-2]: FAILED! => {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result", "changed": false}
changed: [turn-1]

TASK [signaling : Enable one signaling instance per port] **********************
failed: [turn-1] (item=8080) => {"ansible_loop_var": "item", "changed": false, "item": 8080, "msg": "Unit not found.\\nsecond line"}

PLAY RECAP *********************************************************************
turn-1                     : ok=2    changed=1    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
turn-2                     : ok=1    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
"""


def eu_config(tmp: Path) -> Config:
    return daemons.local_config(tmp, '\n[regions.eu]\nprovider = "aws"\nnodes = 2\n')


def test_turn_hosts_carry_the_coturn_context_without_secrets(tmp_path: Path) -> None:
    cfg = eu_config(tmp_path)
    inventory = ansible.region_inventory(
        cfg, NODES, "4.6.1", signaling=(), user="admin", node_overrides={"coturn_max_bps": 5}
    )
    hosts = inventory.turn
    assert [h.address for h in hosts] == ["203.0.113.10", "203.0.113.11"]
    expected = render.coturn_context(cfg, NODES[0], ["x"], "4.6.1")
    for secret in ansible.SECRET_VARS & set(expected):  # the TURN secrets and the statsdb password
        del expected[secret]
    host_vars = hosts[0].inventory_vars()
    assert {k: v for k, v in host_vars.items() if k.startswith("coturn_")} == {**expected, "coturn_max_bps": 5}
    assert host_vars["coturn_external_ip"] == "203.0.113.10/10.0.0.10"
    assert host_vars["certbot_domains"] == ["turn-1.eu.example.test"]
    assert host_vars["ansible_connection"] == "ansible.builtin.ssh"
    assert host_vars["ansible_user"] == "admin"
    assert host_vars["ansible_become"] is True
    assert host_vars["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=accept-new"


def test_chroot_hosts_use_the_chroot_plugin(tmp_path: Path) -> None:
    cfg = eu_config(tmp_path)
    hosts = ansible.region_inventory(
        cfg, NODES[:1], "4.6.1", connection="chroot", addresses={"turn-1": "/srv/root"}, certificates=False
    ).turn
    host_vars = hosts[0].inventory_vars()
    assert host_vars["ansible_connection"] == "community.general.chroot"
    assert host_vars["ansible_host"] == "/srv/root"
    assert "ansible_user" not in host_vars
    assert "certbot_domains" not in host_vars


def test_inventory_groups(tmp_path: Path) -> None:
    cfg = eu_config(tmp_path)
    inventory = ansible.region_inventory(
        cfg, NODES, "4.6.1", signaling=[ansible.Host("signal-1", "203.0.113.20")], certificates=False,
        region_overrides={"nginx_http_port": 8080},
    )  # fmt: skip
    data = json.loads(json.dumps(inventory.to_dict()))
    groups = data["all"]["children"]
    assert sorted(groups["turn"]["hosts"]) == ["turn-1", "turn-2"]
    assert list(groups["signaling"]["hosts"]) == ["signal-1"]
    assert groups["signaling"]["vars"]["nginx_http_port"] == 8080
    assert groups["signaling"]["vars"]["signaling_ports"] == [8080, 8081]
    assert groups["turn"]["vars"]["certbot_deploy_hook_path"].endswith("turnkit-install-certs.sh")


def test_secret_variables_never_enter_the_inventory(tmp_path: Path) -> None:
    cfg = eu_config(tmp_path)
    hosts = ansible.region_inventory(cfg, NODES, "4.6.1", node_overrides={"coturn_static_auth_secrets": ["leak"]}).turn
    assert "coturn_static_auth_secrets" not in hosts[0].inventory_vars()
    host = ansible.Host("turn-1", "203.0.113.10", vars={"coturn_key_pem": "KEY"})
    with pytest.raises(TurnkitError, match=r"^host `turn-1`: secret variable `coturn_key_pem` must not go in"):
        host.inventory_vars()
    with pytest.raises(TurnkitError, match=r"^secret variable `signaling_secrets_json` must not go in"):
        ansible.Inventory(signaling_vars={"signaling_secrets_json": "{}"}).to_dict()
    with pytest.raises(TurnkitError, match=r"^secret variable `signaling_environment` must not go in"):
        ansible.Inventory(signaling_vars={"signaling_environment": {"TURNKIT_JWT_SECRET": "x"}}).to_dict()


def test_unknown_connection_is_named() -> None:
    with pytest.raises(TurnkitError) as info:
        ansible.Host("turn-1", "x", connection="docker").inventory_vars()
    assert str(info.value) == "host `turn-1`: unknown connection `docker` (known: chroot, ssh)"


def fake_playbook(tmp_path: Path, output: str, rc: int) -> Path:
    """A stand-in ansible-playbook printing canned output, to test parsing alone."""
    script = tmp_path / "ansible-playbook"
    (tmp_path / "out.txt").write_text(output)
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'out.txt'}\nexit {rc}\n")
    script.chmod(0o755)
    return script


def test_failure_names_the_first_failed_host_and_task(tmp_path: Path) -> None:
    script = fake_playbook(tmp_path, FAILED_OUTPUT, 2)
    stream = io.StringIO()
    with pytest.raises(ansible.PlaybookError) as info:
        ansible._run([str(script)], dict(os.environ), stream, 30, tmp_path)
    assert str(info.value) == (
        "ansible: host `turn-1` failed at task `signaling : Enable one signaling instance per port`: Unit not found."
    )
    assert stream.getvalue() == FAILED_OUTPUT  # progress is streamed as it comes


def test_censored_failure_keeps_the_censored_note(tmp_path: Path) -> None:
    only_turn2 = FAILED_OUTPUT.replace("failed: [turn-1] (item=8080)", "ok: [turn-1] (item=8080)").replace(
        "turn-1                     : ok=2    changed=1    unreachable=0    failed=1",
        "turn-1                     : ok=2    changed=1    unreachable=0    failed=0",
    )
    with pytest.raises(ansible.PlaybookError) as info:
        ansible._run([str(fake_playbook(tmp_path, only_turn2, 2))], dict(os.environ), io.StringIO(), 30, tmp_path)
    assert info.value.host == "turn-2"
    assert info.value.task == "coturn : Write the coturn configuration"
    assert "no_log: true" in str(info.value)


def test_error_without_a_failed_task_reports_the_last_line(tmp_path: Path) -> None:
    output = "ERROR! the playbook: site.yml could not be found\n"
    with pytest.raises(ansible.PlaybookError) as info:
        ansible._run([str(fake_playbook(tmp_path, output, 1))], dict(os.environ), io.StringIO(), 30, tmp_path)
    assert str(info.value) == "ansible-playbook exited with 1: ERROR! the playbook: site.yml could not be found"


def test_recap_of_a_successful_run(tmp_path: Path) -> None:
    output = "PLAY RECAP ***\nturn-1 : ok=3 changed=0 unreachable=0 failed=0 skipped=1 rescued=0 ignored=0\n"
    result = ansible._run([str(fake_playbook(tmp_path, output, 0))], dict(os.environ), io.StringIO(), 30, tmp_path)
    assert result.changed() == {"turn-1": 0}
    assert result.recap["turn-1"]["skipped"] == 1


def test_ansible_playbook_is_found_next_to_python() -> None:
    assert Path(ansible.ansible_playbook()).parent == Path(sys.executable).parent


ROLE_CONTEXTS = {
    "coturn": lambda cfg, nodes: render.coturn_context(cfg, nodes[0], ["s"], "4.6.1"),
    "nginx": render.nginx_context,
    "certbot": render.certbot_context,
    "signaling": lambda cfg, nodes: {**render.signaling_context(cfg, nodes), **render.usage_store_context(cfg, nodes)},
    "probe": render.probe_context,
}


@pytest.mark.parametrize("role", sorted(ROLE_CONTEXTS))
def test_role_defaults_and_readme_cover_the_render_context(role: str, tmp_path: Path) -> None:
    """Every template variable has a role default and a README row (one template set, one name each)."""
    role_dir = resources.playbook_dir() / "roles" / role
    defaults = yaml.safe_load((role_dir / "defaults/main.yml").read_text())
    readme = (role_dir / "README.md").read_text()
    context = ROLE_CONTEXTS[role](eu_config(tmp_path), NODES)
    assert sorted(set(context) - set(defaults)) == []
    assert all(name.startswith(f"{role}_") for name in defaults)
    assert [name for name in defaults if f"| `{name}` |" not in readme] == []


def test_secrets_travel_in_a_private_file_not_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ansible-playbook reports its argv and the modes of the files it was given."""
    script = tmp_path / "ansible-playbook"
    script.write_text(
        '#!/bin/sh\necho "argv: $*"\nfor a in "$@"; do case "$a" in @*) f="${a#@}"; '
        'echo "file $(basename "$f") $(stat -c %a "$f") dir $(stat -c %a "$(dirname "$f")")"; '
        'cat "$f"; echo;; esac; done\n'
    )
    script.chmod(0o755)
    monkeypatch.setattr(ansible, "ansible_playbook", lambda: str(script))
    stream = io.StringIO()
    ansible.run_playbook(
        ansible.Inventory(), {"coturn_static_auth_secrets": ["top-secret-value"]}, stream=stream, timeout=30
    )
    lines = stream.getvalue().splitlines()
    argv = lines[0]
    assert "top-secret-value" not in argv
    assert argv.endswith("/site.yml")
    assert "file vars.json 600 dir 700" in lines
    assert "file secrets.json 600 dir 700" in lines
    secrets_json = lines[lines.index("file secrets.json 600 dir 700") + 1]
    assert json.loads(secrets_json) == {"coturn_static_auth_secrets": ["top-secret-value"]}
    vars_json = json.loads(lines[lines.index("file vars.json 600 dir 700") + 1])
    assert vars_json["turnkit_header"] == render.HEADER
    assert vars_json["turnkit_templates_dir"] == str(resources.template_dir())


def test_region_inventory_and_secret_vars(tmp_path: Path) -> None:
    cfg = eu_config(tmp_path)
    signaling = [ansible.Host("signal-1", "198.51.100.7", user="root")]
    inventory = ansible.region_inventory(cfg, NODES, "4.6.1", signaling=signaling, user="admin")
    groups = inventory.to_dict()["all"]["children"]
    assert groups["signaling"]["vars"]["certbot_domains"] == ["turn.example.test"]
    assert groups["signaling"]["hosts"]["signal-1"]["ansible_become"] is False
    assert groups["turn"]["hosts"]["turn-2"]["certbot_domains"] == ["turn-2.eu.example.test"]
    ring = keyring.rotate(keyring.init(1_700_000_000), 1_700_000_100)
    secrets = ansible.secret_vars(ring)
    assert secrets["coturn_static_auth_secrets"] == ring.accepted
    assert len(secrets["coturn_static_auth_secrets"]) == 2
    assert keyring.from_json(secrets["signaling_secrets_json"], "test") == ring
    assert "signaling_environment" not in secrets
    with_env = ansible.secret_vars(ring, {"TURNKIT_JWT_SECRET": "s"})
    assert with_env["signaling_environment"] == {"TURNKIT_JWT_SECRET": "s"}


def test_a_signaling_machine_of_its_own_a_region_key_and_the_wheelhouse(tmp_path: Path) -> None:
    """What a provider's fleet_options hand the one builder (the lab: its key and signaling host)."""
    from turnkit import __version__

    cfg = eu_config(tmp_path)
    key, house = tmp_path / "id_ed25519", tmp_path / "wheelhouse"
    machine = Node("signaling", "eu", "call.example.test", "198.18.0.10")
    inventory = ansible.region_inventory(
        cfg, NODES, "4.6.1", user="admin", private_key=key, signaling_node=machine, wheelhouse=house
    ).to_dict()["all"]["children"]
    assert list(inventory["turn"]["hosts"]) == ["turn-1", "turn-2"]
    (host,) = inventory["signaling"]["hosts"].items()
    assert host[0] == "signaling"
    assert (host[1]["ansible_host"], host[1]["ansible_ssh_private_key_file"]) == ("198.18.0.10", str(key))
    assert inventory["turn"]["hosts"]["turn-2"]["ansible_ssh_private_key_file"] == str(key)
    assert inventory["signaling"]["vars"]["signaling_wheelhouse"] == str(house)
    assert inventory["signaling"]["vars"]["signaling_turnkit_version"] == __version__
    plain = ansible.region_inventory(cfg, NODES, "4.6.1", turn=()).to_dict()["all"]["children"]["signaling"]
    assert list(plain["hosts"]) == ["turn-1"]
    assert "signaling_wheelhouse" not in plain["vars"]


def test_a_hanging_run_is_killed_at_the_timeout(tmp_path: Path) -> None:
    script = tmp_path / "ansible-playbook"
    script.write_text("#!/bin/sh\necho 'TASK [coturn : Install the coturn package] ***'\nsleep 60 &\nwait\n")
    script.chmod(0o755)
    with pytest.raises(ansible.PlaybookError) as info:
        ansible._run([str(script)], dict(os.environ), io.StringIO(), 1, tmp_path)
    assert str(info.value) == (
        "ansible-playbook did not finish within 1s (last task: coturn : Install the coturn package)"
    )


def test_coturn_role_is_hardened_by_default() -> None:
    """Running the role without turnkit's variables must still deny every special-purpose range."""
    import yaml

    from turnkit import render

    defaults = yaml.safe_load(Path("playbooks/roles/coturn/defaults/main.yml").read_text())
    assert defaults["coturn_denied_peer_ranges"] == render.peer_ranges()
    assert defaults["coturn_allow_loopback_peers"] is False


def test_one_host_in_both_groups_must_agree_on_its_certificate(tmp_path: Path) -> None:
    """Host vars beat group vars: turn-1's own certbot_domains would hide the signaling server_name."""
    cfg = eu_config(tmp_path)
    with pytest.raises(TurnkitError) as info:
        ansible.region_inventory(cfg, NODES, "4.6.1").to_dict()
    assert str(info.value) == (
        "host `turn-1` is in both groups with different `certbot_domains`: "
        "configure its TURN and signaling roles in separate runs"
    )
    both = ansible.region_inventory(cfg, NODES, "4.6.1", certificates=False).to_dict()["all"]["children"]
    assert list(both["signaling"]["hosts"]) == ["turn-1"]
    signaling_only = ansible.region_inventory(cfg, NODES, "4.6.1", turn=()).to_dict()["all"]["children"]
    assert signaling_only["turn"]["hosts"] == {}
    assert signaling_only["signaling"]["vars"]["certbot_domains"] == ["turn.example.test"]
    assert "certbot_domains" not in signaling_only["signaling"]["hosts"]["turn-1"]


def test_inventory_command_writes_what_deploy_runs(tmp_path: Path) -> None:
    """`turnkit inventory` for running site.yml by hand: the builder deploy uses, readable by Ansible."""
    import subprocess

    (tmp_path / "turnkit.toml").write_text(
        '[project]\ndomain = "example.test"\n[signaling]\nserver_name = "signal.example.test"\n'
        '[regions.st]\nprovider = "static"\nnodes = 2\n'
        '[[regions.st.hosts]]\naddress = "turn-1.st.example.test"\n[[regions.st.hosts]]\naddress = "198.51.100.8"\n'
    )
    keyring.save(tmp_path / "turnkit.secrets.json", keyring.init(1_700_000_000))
    run = subprocess.run(
        [sys.executable, "-m", "turnkit", "inventory", "--region", "st", "--out", "inv"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = tmp_path / "inv"
    assert run.stdout.splitlines() == [str(Path("inv") / n) for n in ("turn.yml", "signaling.yml", "vars.json")]
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        "turn.yml": 0o600, "signaling.yml": 0o600, "vars.json": 0o600,
    }  # fmt: skip
    listed = subprocess.run(
        [str(Path(ansible.ansible_playbook()).with_name("ansible-inventory")), "-i", str(out / "signaling.yml"), "--list"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    parsed = json.loads(listed.stdout)
    assert parsed["signaling"]["hosts"] == ["turn-1"]
    assert parsed["_meta"]["hostvars"]["turn-1"]["certbot_domains"] == ["signal.example.test"]
    turn = json.loads((out / "turn.yml").read_text())["all"]["children"]
    assert turn["turn"]["hosts"]["turn-2"]["certbot_domains"] == ["198.51.100.8"]
    assert turn["signaling"]["hosts"] == {}
    assert json.loads((out / "vars.json").read_text())["turnkit_header"] == render.HEADER

    secret = keyring.load(tmp_path / "turnkit.secrets.json").primary.value
    assert secret not in "".join(p.read_text() for p in out.iterdir())
    again = subprocess.run(
        [sys.executable, "-m", "turnkit", "inventory", "--region", "st", "--out", "inv", "--with-secrets"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0 and secret not in again.stdout + again.stderr
    secrets = json.loads((out / "secrets.json").read_text())
    assert secrets["coturn_static_auth_secrets"] == [secret]
    assert (out / "secrets.json").stat().st_mode & 0o777 == 0o600


DRAIN_OUTPUT = """\
TASK [coturn : Mark the node draining where signaling reads node health] *******
skipping: [turn-2]
changed: [turn-1 -> signaling]

TASK [coturn : Write the coturn configuration] *********************************
changed: [turn-1] => (item=x)
ok: [turn-2]

PLAY RECAP *********************************************************************
turn-1                     : ok=2    changed=2    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
turn-2                     : ok=1    changed=0    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
"""


def test_task_statuses_per_host_and_the_total_of_changes(tmp_path: Path) -> None:
    """deploy reads the drain mark's status per node (delegated: `host -> other`) and sums the changes."""
    result = ansible._run(
        [str(fake_playbook(tmp_path, DRAIN_OUTPUT, 0))], dict(os.environ), io.StringIO(), 30, tmp_path
    )
    mark = "coturn : Mark the node draining where signaling reads node health"
    assert result.statuses[("turn-1", mark)] == "changed"
    assert result.statuses[("turn-2", mark)] == "skipping"
    assert result.statuses[("turn-2", "coturn : Write the coturn configuration")] == "ok"
    assert result.total_changed() == 2


def test_node_runs_name_the_health_host_and_carry_the_meter_settings(tmp_path: Path) -> None:
    cfg = eu_config(tmp_path)
    signaling = Node("signaling", "eu", "call.example.test", "203.0.113.5")
    inventory = ansible.region_inventory(
        cfg, NODES, "4.6.1", turn=["turn-2"], signaling=(), signaling_node=signaling, health=True,
        wheelhouse=tmp_path / "wheels",
    )  # fmt: skip
    groups = inventory.to_dict()["all"]["children"]
    # Not named `signaling`: the signaling play would match a host named like its group.
    assert list(groups[ansible.HEALTH_GROUP]["hosts"]) == ["turnkit_health-signaling"]
    assert groups[ansible.HEALTH_GROUP]["hosts"]["turnkit_health-signaling"]["ansible_host"] == "203.0.113.5"
    turn_vars = groups["turn"]["vars"]
    assert turn_vars["coturn_meter_config_toml"] == cfg.path.read_text()
    assert turn_vars["coturn_drain_timeout"] == cfg.coturn.drain_timeout
    assert turn_vars["coturn_meter_wheelhouse"] == str(tmp_path / "wheels")
    plain = ansible.region_inventory(cfg, NODES, "4.6.1", signaling=()).to_dict()["all"]["children"]
    assert ansible.HEALTH_GROUP not in plain
