"""One lab host: an overlay root over the base image, prepared once, booted with systemd-nspawn.

This machine has no systemd as PID 1, so every nspawn would land in the caller's cgroup: each
container is started from its own cgroup directory under the `systemd`, `unified` and `memory`
hierarchies (`/sys/fs/cgroup/*/turnkit-lab/<lab>-<host>`), which is also how teardown finds and
kills every process of a host. `--network-namespace-path` alone does not grant CAP_NET_ADMIN.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from turnkit.lab.sh import LabError, run
from turnkit.lab.topology import BRIDGE_IP, HostNet

CGROUP_ROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("systemd", "unified", "memory")
CGROUP_PARENT = "turnkit-lab"
MARKER = "etc/turnkit-lab-host"


@dataclass(frozen=True)
class HostPaths:
    """Where a host's overlay lives under the lab directory."""

    base: Path
    dir: Path

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def log(self) -> Path:
        return self.dir / "nspawn.log"


def cgroup_dirs(unit: str) -> list[Path]:
    return [CGROUP_ROOT / h / CGROUP_PARENT / unit for h in HIERARCHIES]


def mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as fh:
        return any(line.split()[1] == target for line in fh)


def lab_mounts(under: Path) -> list[str]:
    """Mount points at or below `under` (deepest first, for unmounting)."""
    prefix = str(under.resolve())
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)


def mount_overlay(paths: HostPaths) -> None:
    for d in (paths.upper, paths.work, paths.root):
        d.mkdir(parents=True, exist_ok=True)
    if not mounted(paths.root):
        opts = f"lowerdir={paths.base},upperdir={paths.upper},workdir={paths.work}"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, str(paths.root)])


@dataclass(frozen=True)
class Identity:
    """What makes a host itself: its name, address, login and resolver."""

    hostname: str
    ip: str
    user: str
    authorized_key: str
    apt_source: str | None = None


def prepare(paths: HostPaths, who: Identity) -> None:
    """Fresh SSH host keys and machine-id, hostname, resolver, login user with the region key."""
    root = paths.root
    if (root / MARKER).exists():
        return
    run(["ssh-keygen", "-A", "-f", str(root)])
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hostname").write_text(who.hostname.split(".")[0] + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n{who.ip} {who.hostname} {who.hostname.split('.')[0]}\n")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text(f"nameserver {BRIDGE_IP}\n")
    if who.apt_source:
        (root / "etc/apt/sources.list").write_text(who.apt_source + "\n")
    home = Path("/root") if who.user == "root" else Path("/home") / who.user
    exists = run(["chroot", str(root), "id", "-u", who.user], check=False).returncode == 0
    if who.user != "root" and not exists:  # a re-run after a kill half-way through prepare
        run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", who.user])
        sudoers = root / "etc/sudoers.d/turnkit-lab"
        sudoers.write_text(f"{who.user} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
    ssh_dir = root / str(home).lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(who.authorized_key.strip() + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    ids = run(["chroot", str(root), "id", "-u", who.user]).stdout.strip()
    gid = run(["chroot", str(root), "id", "-g", who.user]).stdout.strip()
    os.chown(ssh_dir, int(ids), int(gid))
    os.chown(ssh_dir / "authorized_keys", int(ids), int(gid))
    (root / MARKER).write_text(who.hostname + "\n")


def trust(paths: HostPaths, certs: dict[str, Path]) -> None:
    """Add the lab's CA certificates to the host's system store (rebuilt only when one changed)."""
    store = paths.root / "usr/local/share/ca-certificates"
    changed = False
    for name, src in certs.items():
        dest = store / f"{name}.crt"
        data = src.read_bytes()
        if not dest.exists() or dest.read_bytes() != data:
            store.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            changed = True
    if changed:
        run(["chroot", str(paths.root), "update-ca-certificates", "--fresh"], timeout=120)


def host_keys(paths: HostPaths) -> list[str]:
    """The host's public keys as `type base64` (what the controller's known_hosts should trust)."""
    keys = []
    for pub in sorted((paths.root / "etc/ssh").glob("ssh_host_*_key.pub")):
        kind, blob = pub.read_text().split()[:2]
        keys.append(f"{kind} {blob}")
    return keys


def procs(unit: str) -> list[int]:
    """Every process in the host's cgroup tree (the `systemd` hierarchy sees all of them)."""
    top = CGROUP_ROOT / "systemd" / CGROUP_PARENT / unit
    pids: list[int] = []
    if not top.exists():
        return pids
    for d, _, _ in os.walk(top):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (Path(d) / "cgroup.procs").read_text().split()]
    return pids


def running(unit: str) -> bool:
    return bool(procs(unit))


def _enter_cgroups(unit: str) -> None:
    """Runs in the child before exec: move it into the host's own cgroup directories."""
    for d in cgroup_dirs(unit):
        (d / "cgroup.procs").write_text(str(os.getpid()))


def boot(paths: HostPaths, unit: str, net: HostNet, hostname: str) -> int:
    """Start systemd-nspawn in the background; returns its pid."""
    for d in cgroup_dirs(unit):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabError(f"lab: cannot create cgroup {d}: {exc.strerror}") from None
    argv = [
        "systemd-nspawn", "-D", str(paths.root), "-M", unit, f"--hostname={hostname.split('.')[0]}",
        "--register=no", "--keep-unit", "-b", "--console=passive", "--link-journal=no",
        "--resolv-conf=off", "--timezone=off", "--capability=CAP_NET_ADMIN",
        f"--network-namespace-path=/run/netns/{net.netns}",
    ]  # fmt: skip
    with open(paths.log, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            preexec_fn=lambda: _enter_cgroups(unit),
        )  # fmt: skip
    return proc.pid


def wait_ssh(ip: str, unit: str, timeout: float = 60) -> None:
    """Until sshd accepts on port 22 (systemd inside reached multi-user), or fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(unit):
            raise LabError(f"lab: host `{unit}` exited during boot")
        with contextlib.suppress(OSError), socket.create_connection((ip, 22), timeout=1) as s:
            if s.recv(4).startswith(b"SSH"):
                return
        time.sleep(0.3)
    raise LabError(f"lab: host `{unit}` at {ip} did not open SSH within {timeout:g}s")


def kill(unit: str, grace: float = 5) -> bool:
    """SIGKILL every process of the host (its root is a throwaway overlay) and drop its cgroups."""
    pids = procs(unit)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while procs(unit) and time.monotonic() < deadline:
        for pid in procs(unit):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if procs(unit):
        raise LabError(f"lab: host `{unit}` still has processes after SIGKILL")
    for d in cgroup_dirs(unit):
        _rmtree_cgroup(d)
    return bool(pids)


def _rmtree_cgroup(top: Path) -> None:
    if not top.exists():
        return
    for d, _, _ in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(d)


def drop_parents() -> None:
    """Remove the shared `turnkit-lab` cgroup directories once no lab uses them."""
    for h in HIERARCHIES:
        with contextlib.suppress(OSError):
            os.rmdir(CGROUP_ROOT / h / CGROUP_PARENT)


def cgroup_units(prefix: str) -> list[str]:
    """Host cgroup directories left under any hierarchy for this lab."""
    found: set[str] = set()
    for h in HIERARCHIES:
        parent = CGROUP_ROOT / h / CGROUP_PARENT
        if parent.exists():
            found |= {p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith(prefix)}
    return sorted(found)


def unmount(under: Path) -> list[str]:
    """Unmount everything below `under` (lazily when busy)."""
    gone = []
    for point in lab_mounts(under):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "-l", point], check=False)
        gone.append(point)
    return gone
