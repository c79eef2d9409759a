"""A lab's lifecycle: `up` converges it (idempotent, resumable after a kill), `down` removes all of it.

`down` does not trust records alone: it finds the lab's cgroups, mounts, namespaces and links by
their prefix, so it also cleans up after a controller killed half-way or a failed `up`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from turnkit.lab import acme, apt, daemon, host, hostsfile, image, nat, network
from turnkit.lab.sh import LabError, need
from turnkit.lab.topology import Topology, topology

Progress = Callable[[str], None]
#: Helper processes on this machine, by pidfile name → program in their command line.
PROGRAMS = {"apt": "http.server", **acme.PROGRAMS}
SERVICES = ("pebble", "challtestsrv", "apt")
TOOLS = (
    "systemd-nspawn",
    "ip",
    "mount",
    "umount",
    "ssh-keygen",
    "chroot",
    "debootstrap",
    "apt-get",
    "dpkg-scanpackages",
    "openssl",
    "pebble",
    "pebble-challtestsrv",
)


@dataclass(frozen=True)
class LabHost:
    """A container to run: its short name (turn-1, signaling) and its FQDN."""

    name: str
    hostname: str


@dataclass(frozen=True)
class LabSpec:
    """Everything `up` needs: where the lab lives, its id, hosts and login."""

    dir: Path
    lab: str
    hosts: tuple[LabHost, ...]
    user: str
    authorized_key: str

    @property
    def topology(self) -> Topology:
        return topology(self.lab, [h.name for h in self.hosts])

    def unit(self, name: str) -> str:
        return f"{self.lab}-{name}"

    def paths(self, name: str, base: Path) -> host.HostPaths:
        return host.HostPaths(base, self.dir / "hosts" / name)

    @property
    def services(self) -> Path:
        """Pidfiles, logs and ACME files of the lab's helper processes on this machine."""
        return self.dir / "services"


def require_root() -> None:
    need(*TOOLS)
    if os.geteuid() != 0:
        raise LabError("lab: needs root (network namespaces, overlay mounts, systemd-nspawn)")


def recorded_hosts(spec: LabSpec) -> list[str]:
    """Host directories on disk (what an earlier `up` created, perhaps for more hosts)."""
    d = spec.dir / "hosts"
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.exists() else []


#: The usage meter's Redis (coturn role tasks/meter.yml: the node's statsdb; signaling role
#: tasks/usage_store.yml: the central store), on top of what apt.PACKAGES lists for the roles.
METER_PACKAGES: tuple[str, ...] = ("redis-server",)
#: The repository with those packages has its own port: a server of the plain repository left
#: running on apt.APT_PORT by another lab can then never answer for it.
APT_PORT = apt.APT_PORT + 1


def running(spec: LabSpec) -> dict[str, bool]:
    """Host name → whether its container has processes."""
    return {h.name: host.running(spec.unit(h.name)) for h in spec.hosts}


def up(spec: LabSpec, progress: Progress) -> Topology:
    """Base image, package repository, bridge (guard route first), then each host booted with SSH up."""
    require_root()
    network.assert_no_forwarding()
    img = image.default_spec()
    base = image.ensure(img, progress)
    repo = apt.ensure_repo(img, base, image.cache_dir(), progress, apt.PACKAGES + METER_PACKAGES)
    topo = spec.topology
    network.up_bridge(topo)
    spec.services.mkdir(parents=True, exist_ok=True)
    apt.server(repo, APT_PORT).start(spec.services)
    names = {h.hostname: topo.host(h.name).ip for h in spec.hosts}
    hostsfile.publish(spec.lab, names)  # this machine resolves the lab's names locally, never via outside DNS
    acme_root = acme.up(spec.services, names)
    trusted = {"turnkit-lab-acme-listener": acme.listener_cert(spec.services), "turnkit-lab-acme-root": acme_root}
    wanted = {h.name for h in spec.hosts}
    for stale in set(recorded_hosts(spec)) - wanted:
        progress(f"lab: removing host {stale}")
        _remove_host(spec, stale)
    for h in spec.hosts:
        net = topo.host(h.name)
        unit = spec.unit(h.name)
        if host.running(unit):
            continue
        progress(f"lab: starting {h.name} ({h.hostname}, {net.ip})")
        network.up_host(topo, net)
        paths = spec.paths(h.name, base)
        host.mount_overlay(paths)
        host.prepare(
            paths, host.Identity(h.hostname, net.ip, spec.user, spec.authorized_key, apt.source_line(APT_PORT))
        )
        host.trust(paths, trusted)
        host.boot(paths, unit, net, h.hostname)
    for h in spec.hosts:
        host.trust(spec.paths(h.name, base), trusted)  # pebble's root is new whenever pebble restarted
        host.wait_ssh(topo.host(h.name).ip, spec.unit(h.name))
    network.assert_no_forwarding()
    return topo


def host_keys(spec: LabSpec) -> dict[str, list[str]]:
    """Host name → its SSH public host keys (read from its overlay)."""
    return {h.name: host.host_keys(host.HostPaths(Path("/"), spec.dir / "hosts" / h.name)) for h in spec.hosts}


def _remove_host(spec: LabSpec, name: str) -> None:
    host.kill(spec.unit(name))
    host.unmount(spec.dir / "hosts" / name)
    network.down(spec.unit(name))
    shutil.rmtree(spec.dir / "hosts" / name, ignore_errors=True)


def down(spec: LabSpec, progress: Progress) -> list[str]:
    """Remove containers, cgroups, mounts, the package server, namespaces, links, bridge, route, files."""
    removed: list[str] = []
    for unit in host.cgroup_units(spec.lab):
        if host.kill(unit):
            progress(f"lab: stopped {unit}")
        removed.append(f"container {unit}")
    host.drop_parents()
    removed += [f"process {name}" for name in daemon.stop_all(spec.services, SERVICES, PROGRAMS)]
    removed += [f"process {pid}" for pid in daemon.stop_in_dir(spec.services)]  # helpers without a pidfile
    if spec.dir.exists():
        removed += [f"mount {p}" for p in host.unmount(spec.dir)]
    removed += network.down(spec.lab)
    removed += nat.forget(spec.lab)
    if hostsfile.withdraw(spec.lab):
        removed.append("names in /etc/hosts")
    if spec.dir.exists():
        shutil.rmtree(spec.dir)
        removed.append(f"dir {spec.dir}")
    return removed


def leftovers(spec: LabSpec) -> list[str]:
    """Anything of this lab still on the machine (empty after a clean `down`)."""
    found = [f"cgroup {u}" for u in host.cgroup_units(spec.lab)]
    found += [f"mount {p}" for p in host.lab_mounts(spec.dir)] if spec.dir.exists() else []
    found += [f"netns {n}" for n in network.namespaces(spec.lab)]
    found += [f"link {n}" for n in network.links(spec.lab)]
    found += [f"dir {d}" for d in nat.etc_dirs(spec.lab)]
    found += [f"process {n}" for n in SERVICES if daemon.running_pid(spec.services / f"{n}.pid", PROGRAMS[n])]
    found += [f"process {pid}" for pid in daemon.in_dir(spec.services)]
    if hostsfile.markers(spec.lab)[0] in hostsfile.HOSTS.read_text():
        found.append("names in /etc/hosts")
    if network.guard_route_present() and not network.links(spec.lab):
        found.append("route unreachable 198.18.0.0/15")
    return found
