"""A tiny end-to-end run of the benchmark runner (`--quick`): servers start, load flows, the doc is written.

No timing is asserted: only that every server relayed messages and every section produced its tables.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _section(doc: str, key: str) -> str:
    return doc.split(f"<!-- bench:{key}:start -->", 1)[1].split(f"<!-- bench:{key}:end -->", 1)[0]


def _row(doc: str, name: str) -> list[str]:
    """The cells of the first table row whose first cell is `name`."""
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{doc}")


def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    doc_path = tmp_path / "benchmarks.md"
    argv = [sys.executable, "-m", "bench", "--only", "relay", "capacity", "creds", "call", "browser", "meter"]
    argv += ["--quick", "--rounds", "1", "--doc", str(doc_path)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = doc_path.read_text()
    for key in ("relay", "capacity", "creds", "call", "browser", "meter", "gaps"):
        assert doc.count(f"<!-- bench:{key}:start -->") == 1
    assert "Not measured" not in doc
    assert "_Run: `python -m bench --only relay capacity creds call browser meter --quick --rounds 1 --doc " in doc
    assert "socket.io 4.8.1, socket.io-client 4.8.1, ws 8.18.3" in doc  # the pins of bench/package-lock.json
    assert "--quick smoke run" in doc
    relay, capacity = _section(doc, "relay"), _section(doc, "capacity")
    for server in ("Socket.IO reference", "bare ws ceiling", "turnkit (memory)", "turnkit (Redis, 2 processes)"):
        msgs, cpu = _row(relay, server)[1:3]
        assert re.fullmatch(r"[\d,]+", msgs) and msgs != "0", f"{server} relayed nothing: {msgs}"
        assert re.fullmatch(r"[\d.,]+", cpu) and float(cpu.replace(",", "")) > 0, f"{server}: no server µs/msg: {cpu}"
    for server in ("Socket.IO reference", "bare ws ceiling", "turnkit (memory)"):
        assert re.fullmatch(r"-?[\d.,]+", _row(capacity, server)[1]), capacity  # every server held its connections
    assert re.search(r"\| GET /api/ice-servers \(JWT\) \| [\d,]+ \|", doc)
    assert "2/2 calls relay↔relay" in doc
    browser = _section(doc, "browser")
    for interval in (
        "demo pages: second join-room → both connected",
        "floor: two connections in one page, no signaling",
    ):
        assert _row(browser, interval)[4] == "2/2", browser  # every call and every floor run relayed
    meter = _section(doc, "meter")
    for mode in ("statsdb off", "statsdb on"):
        packets = _row(meter, mode)[1]
        assert re.fullmatch(r"[\d,]+", packets) and packets != "0", f"{mode}: nothing relayed: {packets}"
    assert re.fullmatch(r"[\d,]+", _row(meter, "events → ledger → SQLite buffer")[1]), meter
    for mark in re.findall(r"\| (✓|✗|–) \| issue", doc):
        assert mark in "✓✗"  # every target got a figure
