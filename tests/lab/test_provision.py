"""`turnkit provision|plan|status|destroy --region lab` on real systemd-nspawn containers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.conftest import LabSite
from turnkit.lab import host, lab, network
from turnkit.provision.lab import known_hosts


def _actions(site: LabSite) -> list[dict[str, str]]:
    out = site.cli("plan", "--region", "lab", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["actions"]


def test_provision_converges_and_destroy_leaves_nothing(lab_site: LabSite) -> None:
    first = _actions(lab_site)
    assert {(a["verb"], a["kind"], a["name"]) for a in first} == {
        ("create", "bridge", lab_site.spec().topology.bridge),
        ("create", "container", "signaling"),
        ("create", "container", "turn-1"),
        ("create", "container", "turn-2"),
    }

    up = lab_site.cli("provision", "--region", "lab", "--json")
    assert up.returncode == 0, up.stderr
    nodes = json.loads(up.stdout)["nodes"]
    assert [(n["name"], n["hostname"], n["public_ip"]) for n in nodes] == [
        ("turn-1", "turn-1.lab.example.test", "198.18.0.11"),
        ("turn-2", "turn-2.lab.example.test", "198.18.0.12"),
    ]
    # The network rule: the host does not forward, and the whole range has a guard route.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    assert network.guard_route_present()

    # Each host: systemd as PID 1 reached `running`, SSH with the region key, no way out of the lab,
    # names resolved by the lab's DNS, packages from the controller's repository.
    for ip in ("198.18.0.10", "198.18.0.11", "198.18.0.12"):
        res = lab_site.ssh(
            ip, "sudo systemctl is-system-running; ip route get 192.0.2.1 2>&1; getent hosts call.example.test"
        )
        lines = res.stdout.splitlines()
        assert lines[0] == "running", res.stdout + res.stderr
        assert "Network is unreachable" in res.stdout
        assert lines[-1].split()[:2] == ["198.18.0.10", "call.example.test"]
    apt = lab_site.ssh("198.18.0.11", "sudo apt-get update -q >/dev/null && apt-cache policy coturn")
    assert f"http://198.18.0.1:{lab.APT_PORT} ./ Packages" in apt.stdout, apt.stdout + apt.stderr

    # Re-run: everything is kept, nothing is created or restarted.
    assert {a["verb"] for a in _actions(lab_site)} == {"keep"}
    pids = {u: sorted(host.procs(u))[0] for u in host.cgroup_units(lab_site.spec().lab)}
    again = lab_site.cli("provision", "--region", "lab")
    assert again.returncode == 0, again.stderr
    assert "lab: starting" not in again.stderr
    assert {u: sorted(host.procs(u))[0] for u in host.cgroup_units(lab_site.spec().lab)} == pids

    status = lab_site.cli("status", "--region", "lab", "--json")
    assert status.returncode == 0, status.stderr
    assert [(r["name"], r["provider"], r["public_ip"]) for r in json.loads(status.stdout)] == [
        ("turn-1", "lab", "198.18.0.11"),
        ("turn-2", "lab", "198.18.0.12"),
    ]

    gone = lab_site.cli("destroy", "--region", "lab", "--yes", "--json")
    assert gone.returncode == 0, gone.stderr
    removed = {a["detail"] for a in json.loads(gone.stdout)["destroyed"]}
    assert f"link {lab_site.spec().topology.bridge}" in removed
    assert "route unreachable 198.18.0.0/15" in removed
    assert not host.cgroup_units(lab_site.spec().lab)
    assert not network.namespaces(lab_site.spec().lab)
    assert not lab_site.spec().dir.exists()
    assert "198.18.0.11 " not in (known_hosts().read_text() if known_hosts().exists() else "")
    after = lab_site.cli("status", "--region", "lab", "--json")
    assert (after.returncode, after.stdout, after.stderr.strip()) == (
        2,
        "",
        "error: region `lab`: not provisioned yet (run `turnkit provision --region lab`)",
    )


def test_a_provision_killed_half_way_converges_on_the_next_run(lab_site: LabSite) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnkit", "provision", "--region", "lab", "--config", str(lab_site.config)],
        cwd=lab_site.root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "lab: starting turn-1" in line:
            time.sleep(0.3)  # somewhere inside preparing or booting turn-1
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)

    up = lab_site.cli("provision", "--region", "lab", "--json")
    assert up.returncode == 0, up.stderr
    spec = lab_site.spec()
    assert sorted(network.namespaces(spec.lab)) == sorted(f"{spec.lab}-{n}" for n in ("signaling", "turn-1", "turn-2"))
    assert all(host.running(spec.unit(h.name)) for h in spec.hosts)
    assert {a["verb"] for a in _actions(lab_site)} == {"keep"}
    for ip in ("198.18.0.10", "198.18.0.11", "198.18.0.12"):
        assert lab_site.ssh(ip, "sudo systemctl is-system-running").stdout.strip() == "running"
