"""Sampling profiles of a running server with py-spy, reduced to top frames (pure parsing of collapsed stacks)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"\s*\(([^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Frame:
    name: str
    share: float  # fraction of all samples


def _function(frame: str) -> str:
    """`handle (/x/site-packages/signaling/hub.py:42)` → `handle (signaling/hub.py)`: one row per function."""
    m = _LINE.search(frame)
    if not m:
        return frame.strip()
    where = m.group(1)
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{frame[: m.start()].strip()} ({where})"


def parse_collapsed(text: str) -> tuple[Counter[str], Counter[str], int]:
    """(self samples per function, inclusive samples per function, total samples) of py-spy raw output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return own, inclusive, total


def top(counter: Counter[str], total: int, n: int = 10, contains: str = "") -> list[Frame]:
    rows = [(k, v) for k, v in counter.most_common() if contains in k]
    return [Frame(k, v / total) for k, v in rows[:n]] if total else []


def pyspy() -> str | None:
    """The py-spy binary next to this interpreter or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, pin: int | None) -> str:
    """Sample `pid` for `seconds` (non-blocking, so the server is not paused); collapsed stacks as text."""
    binary = pyspy()
    if binary is None:
        raise RuntimeError("py-spy not installed (pip install py-spy)")
    argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "200"]
    argv += ["--format", "raw", "--nonblocking", "--output", str(out)]
    full = argv if pin is None else ["taskset", "-c", str(pin), *argv]
    done = subprocess.run(full, capture_output=True, timeout=seconds + 60)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {done.stderr.decode(errors='replace')[-500:]}")
    return out.read_text(errors="replace")


#: Frames whose own time is native code below them (py-spy without --native shows the Python caller).
NATIVE_HINTS: dict[str, str] = {
    "Runner.run (asyncio/runners.py)": "event loop in C (uvloop: socket syscalls, callbacks' C parts)",
    "run (asyncio/runners.py)": "event loop in C (uvloop: socket syscalls, callbacks' C parts)",
}


def summary(text: str, what: str, contains: str, n: int = 12) -> str:
    """Markdown: top functions by own time, and by inclusive time within `contains` (e.g. `signaling/`)."""
    own, inclusive, total = parse_collapsed(text)
    if not total:
        return f"Profile of {what}: no samples."

    def row(f: Frame) -> str:
        hint = next((h for k, h in NATIVE_HINTS.items() if f.name.startswith(k)), "")
        return f"- {f.share:.1%} `{f.name}`" + (f" — {hint}" if hint else "")

    lines = [
        f"**Profile** of {what} (py-spy, {total} non-idle samples at 200 Hz):",
        "",
        "Top functions by own time:",
        "",
    ]
    lines += [row(f) for f in top(own, total, n)]
    lines += ["", f"Top `{contains}` functions by inclusive time:", ""]
    lines += [row(f) for f in top(inclusive, total, n, contains=contains)]
    return "\n".join(lines)


def during(pid: int, seconds: float, workload: Callable[[], object], out: Path, pin: int | None) -> str:
    """Collapsed stacks of `pid` sampled while `workload()` runs in this thread; raises if py-spy failed."""
    box: dict[str, str] = {}

    def sample() -> None:
        try:
            box["text"] = record(pid, seconds, out, pin)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            box["error"] = str(exc)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    workload()
    thread.join(seconds + 90)
    if "text" not in box:
        raise RuntimeError(box.get("error", "py-spy did not finish"))
    return box["text"]


def while_running(pid: int, workload: Callable[[], object], out: Path, pin: int | None) -> str:
    """Collapsed stacks of `pid` sampled for as long as `workload()` runs (py-spy stopped with SIGINT after it)."""
    binary = pyspy()
    if binary is None:
        raise RuntimeError("py-spy not installed (pip install py-spy)")
    argv = [binary, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking"]
    argv += ["--output", str(out)]
    full = argv if pin is None else ["taskset", "-c", str(pin), *argv]
    spy = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # py-spy attaches
        workload()
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
        try:
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            err = b"py-spy did not stop"
    if not out.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    return out.read_text(errors="replace")
