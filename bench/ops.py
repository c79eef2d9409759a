"""Section 8: operations under change (issue 12), measured by the tests that prove them against the real daemons.

Those tests assert the outcome (nothing lost), never a time; they print their times, and this section runs them
(`pytest -s`, a child process: bench never imports tests) and reads the printed figures. The parsers are pure.
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import Ctx
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Reading:
    value: float  # the goal's figure (NaN: not read)
    detail: str


def _rotation(out: str, passed: bool) -> Reading:
    m = re.search(r"rotation: (\d+) allocations, (\d+) packets per direction over (\d+) relays", out)
    detail = f"{m[3]} relays, {m[2]} packets each way, {m[1]} allocations" if m else "no figures printed"
    return Reading(0.0 if passed and m else math.nan, detail + ("; 0 failed, coturn not restarted" if passed else ""))


def _rolling(out: str, passed: bool) -> Reading:
    """The test asserts that every message that had to arrive did (sent outside the restart guard)."""
    runs = re.findall(r"\[([^\]]+)\] rooms=(\d+) resumes=\d+ resume latency median=(\d+) ms.*?required=(\d+) ", out)
    if not runs:
        return Reading(math.nan, "no figures printed")
    required = sum(int(req) for *_, req in runs)
    detail = "; ".join(f"{label}: {rooms} rooms, resume median {ms} ms" for label, rooms, ms, _ in runs)
    return Reading(0.0 if passed else math.nan, f"{required:,} messages had to arrive; {detail}")


def _ice_restart(out: str, passed: bool) -> Reading:
    m = re.search(r"call recovered through node 2 ([\d.]+)s after node 1 was killed", out)
    return Reading(float(m[1]) if m and passed else math.nan, "Chromium, two coturn nodes" if m else "no figure")


def _sentinel(out: str, passed: bool) -> Reading:
    m = re.search(
        r"promoted ([\d.]+)s after the kill, first relay ([\d.]+)s after it, largest relay gap ([\d.]+)s", out
    )
    if not m:
        return Reading(math.nan, "no figure printed")
    return Reading(float(m[3]) if passed else math.nan, f"replica promoted after {m[1]} s, first relay after {m[2]} s")


@dataclass(frozen=True)
class Op:
    target: Target
    test: str  # the pytest node id (file, or file::test)
    read: Callable[[str, bool], Reading]


_ROTATION = "tests/ops/test_rotation.py"
_ROLLING = "tests/signaling/test_rolling.py"
_ICE_RESTART = "tests/signaling/test_browser_ice_restart.py"
_SENTINEL = "tests/signaling/test_sentinel.py::test_relays_resume_after_the_primary_is_killed"

#: Each issue-12 figure: its goal (metric, limit, unit), the test that measures it, and how its printed line is read.
OPS: tuple[Op, ...] = tuple(
    Op(Target(metric, "<=", limit, unit, "issue 12"), test, read)
    for metric, limit, unit, test, read in (
        ("live relays interrupted across secret stage → promote → prune", 0, "", _ROTATION, _rotation),
        ("relay messages lost across rolling signaling restarts", 0, "", _ROLLING, _rolling),
        ("browser call recovery after its TURN node dies", 10, "s", _ICE_RESTART, _ice_restart),
        ("largest relay gap during a Redis Sentinel failover", 5, "s", _SENTINEL, _sentinel),
    )
)


def command(test: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", test]


def _run(test: str) -> tuple[str, bool, str]:
    """(output, passed, last line) of one test run."""
    try:
        done = subprocess.run(command(test), cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        return "", False, "timed out after 900 s"
    out = done.stdout + done.stderr
    tail = next((line for line in reversed(out.splitlines()) if line.strip()), "")
    return out, done.returncode == 0, tail.strip("= ")


def bench(ctx: Ctx) -> Section:
    rounds = 1 if ctx.quick else max(1, min(ctx.rounds, 2))
    verdicts: list[Verdict] = []
    rows: list[tuple[str, ...]] = []
    for op in OPS:
        readings: list[Reading] = []
        for _ in range(rounds):
            out, passed, tail = _run(op.test)
            reading = op.read(out, passed)
            readings.append(reading if passed else Reading(math.nan, f"test failed: {tail[-200:]}"))
        values = [r.value for r in readings if not math.isnan(r.value)]
        worst = max(values) if values else math.nan
        verdicts.append(Verdict(op.target, worst, readings[-1].detail))
        per_run = " / ".join(fmt(r.value) for r in readings)
        cmd = f"`python -m pytest -s {op.test}`"
        rows.append((op.target.metric, per_run, fmt(statistics.median(values)) if values else "n/a", cmd))
    method = f"""\
Issue 12's figures come from the tests that prove them against the real daemons (coturn, redis-server,
redis-sentinel, Chromium): the tests assert the outcome and print the times, and this section runs each of them
{rounds} time(s) in a child process (`pytest -s`, nothing pinned) and reads the printed line; the verdict takes the
worst run. A failed test is shown as not measured, with its last line."""
    return Section(
        "ops",
        "8. Operations under change (issue 12)",
        method,
        tables=[Table(("figure", "per run", "median", "command"), tuple(rows))],
        verdicts=verdicts,
    )
