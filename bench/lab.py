"""Section 6: the fleet lab (issue 11) — deploy from nothing, an unchanged re-deploy, NATed browser calls.

`python -m bench.lab` (root, one lab per machine: run it under `flock /tmp/turnkit-lab.lock`) makes
a project with 3 TURN hosts + the signaling host in a temporary directory and, through the real CLI:
`turnkit provision` and `turnkit deploy` from nothing (Ansible's per-task times via the
`ansible.posix.profile_tasks` callback), a second `turnkit deploy` with nothing changed (changed
tasks counted from Ansible's PLAY RECAP lines), then NATed Chromium calls through the deployed
stack (bench/labcall.py) and `systemd-analyze security` on the hosts. The lab is destroyed
afterwards (also after a failure) and checked for leftovers; the section goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench import gaps, labcall, report
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, percentile
from turnkit import config as config_mod
from turnkit.lab import acme, image, lab
from turnkit.provision.lab import SIGNALING_HOST, LabProvider

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
KEY = "lab"
NODES = 3


def project_toml(name: str, nodes: int, allow_lab_peers: bool = True) -> str:
    """The one lab project file (`make lab`, this benchmark, tests/lab): a `lab` region of `nodes` TURN
    hosts behind `call.example.test`, certificates from the lab's pebble on the bridge."""
    return (
        f'[project]\nname = {json.dumps(name)}\ndomain = "example.test"\n\n'
        '[signaling]\nserver_name = "call.example.test"\n\n'
        f"[tls]\nacme_server = {json.dumps(acme.DIRECTORY_URL)}\n\n"
        f'[regions.lab]\nprovider = "lab"\nnodes = {nodes}\n' + ("allow_lab_peers = true\n" if allow_lab_peers else "")
    )


COLD = Target("lab deploy from nothing (provision + deploy, 3 TURN + signaling)", "<=", 180, "s", "issue 11")
AGAIN = Target("second `turnkit deploy --region lab`, nothing changed", "<=", 60, "s", "issue 11")
CHANGED = Target("tasks changed by the second deploy", "<=", 0, "", "issue 11")
#: Units whose sandbox the section reports (host → units).
SECURITY = {
    SIGNALING_HOST: ("turnkit-signaling@8080.service", "turnkit-probe.service", "nginx.service"),
    "turn-1": ("coturn.service",),
}
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)")
_PROFILE = re.compile(r"^(?P<task>.+?) -{2,} (?P<secs>\d+\.\d+)s$")
_PHASE = re.compile(r"^(==> |building the wheelhouse|configuring )")
#: The label deploy puts before each line of a run among parallel ones (`[turn-1] TASK …`).
_RUN_LABEL = re.compile(r"^\[[A-Za-z0-9._-]+\] ")
_EXPOSURE = re.compile(r"Overall exposure level for (?P<unit>\S+): (?P<score>[\d.]+) (?P<band>\w+)")


@dataclass
class Run:
    """One CLI command: how long it took and what Ansible said."""

    seconds: float
    rc: int
    changed: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, float] = field(default_factory=dict)
    tail: str = ""
    phases: list[tuple[str, float]] = field(default_factory=list)

    @property
    def changed_total(self) -> int:
        return sum(self.changed.values())


def parse_ansible(text: str) -> tuple[dict[str, int], dict[str, float]]:
    """(changed tasks per host summed over every playbook run, seconds per task name summed likewise)."""
    changed: Counter[str] = Counter()
    tasks: dict[str, float] = {}
    for raw in text.splitlines():
        line = _RUN_LABEL.sub("", raw, count=1)
        if m := _RECAP.match(line):
            changed[m["host"]] += int(m["changed"])
        elif m := _PROFILE.match(line.strip()):
            task = m["task"].strip()
            tasks[task] = tasks.get(task, 0.0) + float(m["secs"])
    return dict(changed), tasks


def slowest(tasks: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(tasks.items(), key=lambda item: -item[1])[:n]


def exposure(text: str) -> tuple[str, str] | None:
    """(score, band) from `systemd-analyze security UNIT`'s last line."""
    m = _EXPOSURE.search(text)
    return (m["score"], m["band"]) if m else None


def phases(lines: list[tuple[float, str]], end: float) -> list[tuple[str, float]]:
    """Seconds from each of deploy's progress markers (`==> render`, `configuring turn-1`, …) to the next."""
    marks = [(t, line.strip()) for t, line in lines if _PHASE.match(line)]
    ends = [t for t, _ in marks[1:]] + [end] if marks else []
    return [(label, stop - t) for (t, label), stop in zip(marks, ends, strict=True)]


def cli(site: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """Run `turnkit ARGS`, timing it and each line of its stderr (progress and Ansible's output)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnkit", *args, "--config", str(site / "turnkit.toml")],
        cwd=site, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else ""), daemon=True)
    reader.start()
    lines = [(time.monotonic() - start, line) for line in proc.stderr]
    rc = proc.wait(timeout=3600)
    reader.join()
    seconds = time.monotonic() - start
    stderr = "".join(line for _, line in lines)
    log = site / "logs" / f"{args[0]}-{int(start)}.log"  # the whole output, for a look afterwards (with --dir)
    log.parent.mkdir(exist_ok=True)
    log.write_text("".join(out) + "\n---- stderr ----\n" + stderr)
    changed, tasks = parse_ansible(stderr)
    return Run(seconds, rc, changed, tasks, stderr[-2000:], phases(lines, seconds))


def must(run: Run, what: str) -> Run:
    if run.rc != 0:
        raise SystemExit(f"bench.lab: {what} failed (exit {run.rc}):\n{run.tail}")
    return run


def security(provider: LabProvider) -> list[tuple[str, str, str, str]]:
    """(host, unit, exposure, band) measured inside the deployed hosts."""
    rows = []
    topo = provider.lab_spec().topology
    for name, units in SECURITY.items():
        for unit in units:
            res = labcall.ssh(provider, topo.host(name).ip, f"systemd-analyze security --no-pager {unit}")
            found = exposure(res.stdout)
            rows.append((name, unit, *(found or ("n/a", res.stderr.strip()[-60:] or "no answer"))))
    return rows


@dataclass
class Result:
    cached: bool
    provision: Run
    deploy: Run
    again: Run
    calls: list[labcall.Call]
    security: list[tuple[str, str, str, str]]
    table: str


def measure(site: Path, count: int, keep: bool) -> Result:
    cached = (image.cache_dir() / f"base-{image.default_spec().key}" / "etc/os-release").exists()
    site.mkdir(parents=True, exist_ok=True)
    (site / "turnkit.toml").write_text(project_toml("labbench", NODES))
    provider = LabProvider(config_mod.load(site / "turnkit.toml"), labcall.REGION)
    jwt_secret = secrets.token_urlsafe(32)
    env = {"TURNKIT_JWT_SECRET": jwt_secret}
    try:
        must(cli(site, "secret", "init"), "secret init")
        prov = must(cli(site, "provision", "--region", "lab"), "provision")
        profiled = {
            **env,
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
        }
        first = must(cli(site, "deploy", "--region", "lab", "--json", env=profiled), "deploy")
        again = must(cli(site, "deploy", "--region", "lab", "--json", env=env), "second deploy")
        with tempfile.TemporaryDirectory(prefix="turnkit-benchlab-") as tmp:
            made = asyncio.run(labcall.calls(provider, jwt_secret, count + 1, Path(tmp)))[1:]  # first: warm-up
        sec = security(provider)
        shown = labcall.report(provider, site / "turnkit.toml", made[0])
        return Result(cached, prov, first, again, made, sec, shown)
    finally:
        if not keep:
            cli(site, "destroy", "--region", "lab", "--yes")
            left = lab.leftovers(provider.lab_spec())
            if left:
                print(f"bench.lab: LEFTOVERS after destroy: {left}", file=sys.stderr)


def versions() -> dict[str, str]:
    chromium = subprocess.run([labcall.CHROMIUM, "--version"], capture_output=True, text=True, check=False)
    return {
        "python": platform.python_version(),
        "ansible-core": metadata.version("ansible-core"),
        "chromium": (chromium.stdout.split() or ["?", "?"])[1],
        "playwright": metadata.version("playwright"),
    }


def section(r: Result, count: int, command: str, load: tuple[float, float]) -> str:
    cold = r.provision.seconds + r.deploy.seconds
    setups = [c.setup_ms for c in r.calls]
    pairs = Counter(c.pair for c in r.calls)
    relayed = sum(c.relayed for c in r.calls)
    top = slowest(r.deploy.tasks, 8)
    method = f"""\
`{command}` as root on this machine, under `flock /tmp/turnkit-lab.lock`. A fresh project in a temporary
directory with {NODES} TURN hosts + the signaling host (`provider = "lab"`, systemd-nspawn containers on
198.18.0.0/24), driven through the real CLI: `turnkit provision --region lab` (containers from the cached
base image; the base image was {"**already cached**, as the goal assumes" if r.cached else "**built in this run**"},
the apt repository likewise), then `turnkit deploy --region lab` (wheelhouse, Ansible over SSH: apt in every
host, coturn, certbot HTTP-01 against pebble, NGINX, the signaling instances, the probe timer, then the probe),
then the same deploy again with nothing changed. "changed" sums `changed=` over every PLAY RECAP line of the
deploy's Ansible runs (one per TURN node and one for the signaling host, at the same time). Then
{count} NATed calls (after one warm-up) between two headless Chromium ({labcall.CHROMIUM}) in two homes, each
behind its own symmetric NAT box (nftables `masquerade fully-random`), through the deployed demo page, NGINX,
signaling and coturn; setup = the second page's `join-room` frame → both RTCPeerConnections `connected`, taken
in the pages; each call is judged up only once remote video decodes. The lab is destroyed afterwards."""
    verdicts = [
        Verdict(COLD, cold, f"provision {fmt(r.provision.seconds)} s + deploy {fmt(r.deploy.seconds)} s"),
        Verdict(AGAIN, r.again.seconds),
        Verdict(
            CHANGED, float(r.again.changed_total), ", ".join(f"{h} {n}" for h, n in sorted(r.again.changed.items()))
        ),
    ]
    calls = Table(
        ("NATed browser calls", "p50 ms", "p90 ms", "max ms", "relayed", "selected pairs (caller side)"),
        (
            (
                f"{len(setups)} calls, second join → both connected",
                fmt(median(setups)),
                fmt(percentile(setups, 90)),
                fmt(max(setups)),
                f"{relayed}/{len(setups)}",
                "; ".join(f"{p} ×{n}" for p, n in pairs.most_common()),
            ),
        ),
    )
    slow = Table(
        ("slowest tasks of the cold deploy (profile_tasks, summed over hosts' runs)", "s"),
        tuple((t, fmt(s)) for t, s in top),
    )
    again = dict(r.again.phases)
    steps = Table(
        ("`turnkit deploy` step (from its progress lines)", "from nothing s", "unchanged s"),
        tuple((label, fmt(t), fmt(again[label]) if label in again else "–") for label, t in r.deploy.phases),
    )
    sec = Table(("host", "unit", "exposure", "band"), tuple(r.security))
    parallel = next((t for label, t in r.deploy.phases if label.endswith("in parallel")), float("nan"))
    parallel_again = next((t for label, t in r.again.phases if label.endswith("in parallel")), float("nan"))
    pip = max((t for name, t in r.deploy.tasks.items() if "Install turnkit from the wheelhouse" in name), default=0.0)
    gaps = (
        "**Where the time goes.** `turnkit deploy` configures the TURN hosts and the signaling host in parallel "
        "Ansible runs, one per machine (`Fleet._push_turn` in turnkit/deploy.py; a node whose running coturn must "
        "restart leaves its parallel run untouched and is configured alone afterwards, one at a time, drained "
        "first), over pipelined SSH, with the wheelhouse shipped as one reproducible archive: "
        f"{fmt(parallel)} s from nothing and {fmt(parallel_again)} s with nothing changed for that step. "
        "Unchanged, every task is a check: a file or directory that already is what its task asks costs one "
        "shell round trip (`turnkit_copy`/`turnkit_template`/`turnkit_file`, turnkit/fastpath.py) instead of "
        "one or two Python module runs on the host (about 0.3 s of host CPU each), each role installs its "
        "packages in one apt transaction, the venv's wheelhouse is checked by one command instead of pip, and "
        "the roles' filter plugin no longer imports turnkit's config (pydantic) in every forked Ansible worker; "
        "what is left is the controllers' per-task cost (a forked worker per task and host) on 2 cores shared by "
        "four ansible-playbook runs and the hosts. From nothing, the slowest steps are pip installing the "
        f"wheelhouse into each host's venv (up to {fmt(pip)} s per host, the four at once) and apt installing "
        "certbot, coturn and NGINX from the lab's repository."
    )
    notes = [
        gaps,
        f"_Machine: load average {load[0]:.2f} before, {load[1]:.2f} after; 2 cores shared with other work "
        "(absolute figures are noisy)._",
        "`make lab` prints this table for its own lab (bench/labcall.py):\n\n```\n" + r.table + "\n```",
    ]
    header = report.run_header(command, datetime.date.today().isoformat(), os.cpu_count() or 1, versions(), "")
    return report.render_section(
        Section(KEY, "6. The fleet lab (issue 11)", method, [calls, steps, slow, sec], verdicts, notes), header
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12, help="NATed calls to time (after one warm-up)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up (destroy it yourself)")
    parser.add_argument("--dir", type=Path, default=None, help="project directory (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md")
    parser.add_argument("--print-toml", metavar="NAME", help="print the lab project file `make lab` uses; no lab")
    args = parser.parse_args(argv)
    if args.print_toml:
        print(project_toml(args.print_toml, NODES), end="")
        return 0
    command = "python -m bench.lab" + (f" --calls {args.calls}" if args.calls != 12 else "")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="turnkit-benchlab-") as tmp:
        result = measure(args.dir or Path(tmp) / "project", args.calls, args.keep)
    text = section(result, args.calls, command, (load_start, os.getloadavg()[0]))
    print(text)
    print(json.dumps({"slowest_tasks": slowest(result.deploy.tasks, 25)}, indent=1), file=sys.stderr)
    if not args.no_write:
        doc = report.update(DOC.read_text() if DOC.exists() else "", {KEY: text}, [KEY])
        derived = f"_Derived by `{command}` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC from the sections as they stand._"
        doc = report.update(doc, {gaps.KEY: gaps.render(doc, derived)})
        tmp = DOC.with_name(DOC.name + ".tmp")
        tmp.write_text(doc)
        tmp.replace(DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
