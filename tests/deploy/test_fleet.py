"""A remote region's configuration order with the real ansible-playbook: one TURN node per run, signaling last.

The hosts are reached through Ansible's chroot connection into `/` (this machine), and the
playbook records what each host was handed, so the order of a rotation is visible end to end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from turnkit import config as config_mod
from turnkit import keyring
from turnkit.deploy import Fleet, rollout
from turnkit.nodes import region_nodes

RECORDER = """\
- name: Record what each TURN node is given
  hosts: turn
  gather_facts: false
  tasks:
    - name: Append the accepted secrets (by id order) for this node
      ansible.builtin.lineinfile:
        path: "{{ record_file }}"
        create: true
        mode: "0600"
        insertafter: EOF
        line: "turn {{ inventory_hostname }} {{ coturn_static_auth_secrets | length }} {{ coturn_static_auth_secrets | sort(case_sensitive=true) | join(',') | hash('sha1') }}"
      no_log: true

- name: Record which secret the signaling host issues with
  hosts: signaling
  gather_facts: false
  tasks:
    - name: Append the keyring's primary id
      ansible.builtin.lineinfile:
        path: "{{ record_file }}"
        create: true
        mode: "0600"
        insertafter: EOF
        line: "signaling {{ inventory_hostname }} {{ (signaling_secrets_json | from_json).secrets | selectattr('primary') | map(attribute='id') | first }}"
      no_log: true
"""

TOML = """
[project]
domain = "example.test"
[regions.st]
provider = "static"
nodes = 2
[[regions.st.hosts]]
address = "turn-1.st.example.test"
[[regions.st.hosts]]
address = "turn-2.st.example.test"
"""


def test_rotation_reaches_every_node_before_signaling_issues_with_it(tmp_path: Path) -> None:
    (tmp_path / "turnkit.toml").write_text(TOML)
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    old = keyring.init(100)
    ring = keyring.rotate(old, 200, stage=True)
    keyring.save(cfg.secrets_path, ring)
    staged = ring.secrets[0]
    playbook, record = tmp_path / "record.yml", tmp_path / "record.txt"
    playbook.write_text(RECORDER)
    nodes = region_nodes(cfg, "st")
    fleet = Fleet(
        cfg, "st", nodes, connection="chroot", addresses={n.name: "/" for n in nodes},
        playbook=playbook, extra_vars={"record_file": str(record)},
    )  # fmt: skip

    promoted = rollout(cfg, lambda: fleet.push_all(print), lambda: fleet.push_signaling(print), print)

    both = hashlib.sha1(",".join(sorted([old.primary.value, staged.value])).encode()).hexdigest()
    assert promoted == staged.id
    assert record.read_text().splitlines() == [
        f"turn turn-1 2 {both}",
        f"turn turn-2 2 {both}",
        f"signaling turn-1 {old.primary.id}",
        f"signaling turn-1 {staged.id}",
    ]


NODE_STATE_RECORDER = """\
- name: Record the node state the signaling host is handed
  hosts: signaling
  gather_facts: false
  tasks:
    - name: Write it
      ansible.builtin.copy:
        content: "{{ {'dir': signaling_state_dir, 'nodes': signaling_node_state, 'env': signaling_environment | default({})} | to_json }}"
        dest: "{{ record_file }}"
        mode: "0600"
"""


def test_cloud_region_nodes_reach_the_signaling_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from turnkit.fsutil import atomic_write
    from turnkit.nodes import Node
    from turnkit.provision.base import state_file

    (tmp_path / "turnkit.toml").write_text('[regions.eu]\nprovider = "aws"\n')
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    keyring.save(cfg.secrets_path, keyring.init(100))
    nodes = [Node("turn-1", "eu", "turn-1.eu.example.test", "198.51.100.7", "10.0.0.7")]
    atomic_write(state_file(cfg, "eu"), json.dumps([n.to_dict() for n in nodes]))
    playbook, record = tmp_path / "record.yml", tmp_path / "record.json"
    playbook.write_text(NODE_STATE_RECORDER)
    fleet = Fleet(
        cfg, "eu", region_nodes(cfg, "eu"), connection="chroot", addresses={"turn-1": "/"},
        playbook=playbook, extra_vars={"record_file": str(record)},
    )  # fmt: skip
    monkeypatch.setenv("TURNKIT_JWT_SECRET", "operator-jwt-secret")
    fleet.push_signaling(print)
    handed = json.loads(record.read_text())
    assert handed["env"] == {"TURNKIT_JWT_SECRET": "operator-jwt-secret"}  # via the 0600 secrets file
    assert handed["dir"] == "/etc/turnkit/.turnkit"
    assert handed["nodes"] == {"eu": [nodes[0].to_dict()]}


def recorded_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Fleet, list[dict[str, Any]]]:
    """A fleet for region `st` whose playbook runs only record their inventories."""
    from turnkit import ansible

    (tmp_path / "turnkit.toml").write_text(TOML + '[signaling]\nserver_name = "signal.example.test"\n')
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    keyring.save(cfg.secrets_path, keyring.init(100))
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(
        ansible,
        "run_playbook",
        lambda inventory, secrets, **_: runs.append(inventory.to_dict()) or ansible.RunResult({}, []),
    )
    return Fleet(cfg, "st", region_nodes(cfg, "st")), runs


def test_signaling_run_asks_certbot_for_the_server_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signaling host's certificate is its `server_name` (what NGINX serves), not turn-1's hostname."""
    fleet, runs = recorded_runs(tmp_path, monkeypatch)
    fleet.push_signaling(print)
    (signaling,) = [run["all"]["children"]["signaling"] for run in runs]
    effective = {**signaling["vars"], **signaling["hosts"]["turn-1"]}
    assert effective["nginx_cert_file"] == "/etc/letsencrypt/live/signal.example.test/fullchain.pem"
    assert effective["certbot_domains"] == ["signal.example.test"]
    assert not [k for k in signaling["hosts"]["turn-1"] if k.startswith("coturn_")]


def test_push_nodes_configures_each_turn_node_and_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, runs = recorded_runs(tmp_path, monkeypatch)
    fleet.push_nodes(print)
    groups = sorted((run["all"]["children"] for run in runs), key=lambda g: sorted(g["turn"]["hosts"]))
    assert [(sorted(g["turn"]["hosts"]), sorted(g["signaling"]["hosts"])) for g in groups] == [
        (["turn-1"], []),
        (["turn-2"], []),
    ]
    assert groups[0]["turn"]["hosts"]["turn-1"]["certbot_domains"] == ["turn-1.st.example.test"]


def test_nodes_whose_coturn_restarts_are_configured_alone_after_the_parallel_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Separate machines run at once with `coturn_restart_defer`; a node that left its run because its
    coturn must restart (restart_check.yml) gets a run of its own afterwards, without the flag, and is
    probed before it is handed out again; the others are not run twice. The signaling host of its own
    runs alongside the nodes."""
    from dataclasses import replace

    from turnkit import ansible, deploy
    from turnkit.nodes import Node

    (tmp_path / "turnkit.toml").write_text(TOML)
    cfg = config_mod.load(tmp_path / "turnkit.toml")
    keyring.save(cfg.secrets_path, keyring.init(100))
    calls: list[tuple[tuple[str, ...], tuple[str, ...], bool]] = []

    def run(inventory: ansible.Inventory, secrets: Any, *, extra_vars: Any, **_: Any) -> ansible.RunResult:
        turn, sig = tuple(h.name for h in inventory.turn), tuple(h.name for h in inventory.signaling)
        deferring = bool(extra_vars.get("coturn_restart_defer"))
        calls.append((turn, sig, deferring))
        restarts = turn == ("turn-2",)
        task = deploy.RESTART_DEFER_TASK if deferring else deploy.DRAIN_MARK_TASK
        return ansible.RunResult({}, [], {("turn-2", task): "changed"} if restarts else {})

    probed: list[str] = []
    monkeypatch.setattr(ansible, "run_playbook", run)
    monkeypatch.setattr(Fleet, "_passes_probe", lambda self, node, progress: probed.append(node.name) or True)
    machine = Node("signaling", "st", "signal.example.test", "198.18.0.10")
    fleet = replace(Fleet(cfg, "st", region_nodes(cfg, "st")), signaling_node=machine)
    fleet.push_all(print)
    parallel, after = calls[:3], calls[3:]
    assert sorted(parallel) == [((), ("signaling",), False), (("turn-1",), (), True), (("turn-2",), (), True)]
    assert after[0] == (("turn-2",), (), False)  # alone, drained, then probed and undrained:
    assert probed == ["turn-2"] and after[1][1] == ("signaling",) and len(after) == 2


def test_nodes_on_one_machine_are_never_configured_at_the_same_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    fleet, runs = recorded_runs(tmp_path, monkeypatch)
    fleet = replace(fleet, addresses={"turn-1": "198.18.0.11", "turn-2": "198.18.0.11"})
    fleet.push_all(print)
    assert [(sorted(r["all"]["children"]["turn"]["hosts"]), sorted(r["all"]["children"]["signaling"]["hosts"]))
            for r in runs] == [(["turn-1"], []), (["turn-2"], []), ([], ["turn-1"])]  # fmt: skip


def test_a_provider_signaling_machine_key_and_wheelhouse_reach_the_signaling_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Provider.fleet_options (the lab's key and signaling host) and the wheelhouse go through Fleet."""
    from dataclasses import replace

    from turnkit.nodes import Node

    fleet, runs = recorded_runs(tmp_path, monkeypatch)
    machine = Node("signaling", "st", "signal.example.test", "198.18.0.10")
    key, house = tmp_path / "id_ed25519", tmp_path / "wheelhouse"
    replace(fleet, private_key=key, signaling_node=machine, wheelhouse=house).push_all(print)
    groups = [run["all"]["children"] for run in runs]
    # Three runs at once (each machine its own): their order is whichever started first.
    assert sorted((sorted(g["turn"]["hosts"]), sorted(g["signaling"]["hosts"])) for g in groups) == [
        ([], ["signaling"]),
        (["turn-1"], []),
        (["turn-2"], []),
    ]
    groups.sort(key=lambda g: sorted(g["turn"]["hosts"]))
    signaling = groups[0]["signaling"]
    assert signaling["hosts"]["signaling"]["ansible_host"] == "198.18.0.10"
    assert signaling["hosts"]["signaling"]["ansible_ssh_private_key_file"] == str(key)
    assert groups[1]["turn"]["hosts"]["turn-1"]["ansible_ssh_private_key_file"] == str(key)
    assert signaling["vars"]["signaling_wheelhouse"] == str(house)
    assert signaling["vars"]["certbot_domains"] == ["signal.example.test"]
