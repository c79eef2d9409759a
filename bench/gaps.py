"""The document's last section: every missed goal of docs/benchmarks.md with its gap and the profile's top frames.

Derived from the other sections' text (their verdict tables and profile lists), so it also covers sections
refreshed by an earlier `--only` run or written by another runner (`python -m bench.lab`). Pure text in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.report import Table, blocks, table
from bench.stats import fmt

KEY = "gaps"
TITLE = "Gaps and where the time goes"
#: How many own-time frames of a section's (first) profile the table names.
FRAMES = 3

_VERDICT_HEADER = "| target | measured | goal | met | from |"
_NUMBER = re.compile(r"-?[\d,]*\.?\d+")
_GOAL = re.compile(r"^(≤|≥) (-?[\d,]*\.?\d+) ?(.*)$")
_FRAME = re.compile(r"^- ([\d.]+%) `([^`]+)`")


@dataclass(frozen=True)
class Gap:
    section: str
    target: str
    measured: str
    goal: str
    gap: str
    frames: str


def gap_text(measured: str, goal: str) -> str:
    """`1.06 × (53.3 vs 50.4 µs/msg)` against `≤ 0.67 ×` → `0.39 × over`; `–` when either is not a number."""
    m, g = _NUMBER.search(measured), _GOAL.match(goal.strip())
    if m is None or g is None:
        return "–"
    value, limit = float(m.group(0).replace(",", "")), float(g.group(2).replace(",", ""))
    over = g.group(1) == "≤"
    size = value - limit if over else limit - value
    unit = g.group(3).strip()
    pct = f", {abs(size) / limit:.0%} of the goal" if limit else ""
    return f"{fmt(size)}{(' ' + unit) if unit else ''} {'over' if over else 'short'}{pct}"


def _title(text: str) -> str:
    m = re.search(r"^## (.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else "?"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def top_frames(text: str, target: str = "", n: int = FRAMES) -> str:
    """The first `n` own-time frames of the section's profile that fits `target` best (the one whose title
    shares most words with it, e.g. the Redis-backed server's for a Redis goal), or a note that none exists."""
    profiles = text.split("**Profile** of ")[1:]
    if not profiles:
        return "no profile in this section"
    words = {w for w in re.findall(r"\w{4,}", target.lower())}
    best = max(profiles, key=lambda p: len(words & set(re.findall(r"\w{4,}", p.splitlines()[0].lower()))))
    at = best.find("Top functions by own time:")
    frames: list[str] = []
    for line in best[at:].splitlines()[1:] if at >= 0 else ():
        m = _FRAME.match(line)
        if m:
            frames.append(f"{m.group(1)} `{m.group(2)}`")
            if len(frames) == n:
                break
        elif frames:
            break
    return "; ".join(frames) if frames else "no profile in this section"


def collect(document: str) -> list[Gap]:
    """Every ✗ row of every verdict table in the document's marked sections (this one's excepted)."""
    found: list[Gap] = []
    for key, text in blocks(document)[1]:
        if key is None or key == KEY:
            continue
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.strip() != _VERDICT_HEADER:
                continue
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                target, measured, goal, met, _source = (_cells(row) + [""] * 5)[:5]
                if met == "✗":
                    found.append(
                        Gap(_title(text), target, measured, goal, gap_text(measured, goal), top_frames(text, target))
                    )
    return found


def render(document: str, header: str) -> str:
    """The marked gaps section for `document` (its other sections as they are now)."""
    gaps = collect(document)
    method = (
        "Every goal above that this document marks ✗, with the measured gap (how far the median is from the goal)\n"
        "and the top frames by own time of the section's profile (py-spy of the process the goal is about; the full\n"
        "lists are in the sections). Derived from the sections' tables when the document is written, so it always\n"
        "matches them."
    )
    headers = ("section", "goal", "measured", "target", "gap", "profile: top frames by own time")
    rows = tuple((g.section, g.target, g.measured, g.goal, g.gap, g.frames) for g in gaps)
    body = table(Table(headers, rows)) if rows else "Every goal in this document is met."
    text = "\n\n".join((f"## {TITLE}", header, method, body))
    return f"<!-- bench:{KEY}:start -->\n{text}\n<!-- bench:{KEY}:end -->"
