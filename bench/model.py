"""`python -m bench.model`: the capacity and cost model of docs/capacity.md, recomputed.

Every input is named with its value and source: measured here (read from the latest
docs/benchmarks.md tables, or measured by `--measure-meter`), or cited. The table between the
`model` markers of docs/capacity.md is rewritten; `--print` only prints it.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
CAPACITY = ROOT / "docs" / "capacity.md"
START, END = "<!-- model:start -->", "<!-- model:end -->"

SECONDS_PER_MONTH = 730 * 3600  # the average month cloud providers bill (8,760 h / 12)
CALLS = (1_000, 10_000, 100_000, 1_000_000)
RELAYED = (0.10, 0.20)
MBPS = (1.5, 2.5)


@dataclass(frozen=True)
class Input:
    name: str
    value: float
    unit: str
    source: str


#: The model's inputs; `from_benchmarks` replaces the measured ones with the latest figures.
INPUTS: dict[str, Input] = {
    i.name: i
    for i in (
        Input("signaling_msgs_per_s", 28_472, "msgs/s per process", "measured: docs/benchmarks.md §1, turnkit (memory)"),
        Input("signaling_redis_msgs_per_s", 9_204, "msgs/s for 2 processes", "measured: docs/benchmarks.md §1, turnkit (Redis, 2 processes)"),
        Input("kib_per_connection", 10.1, "KiB RSS", "measured: docs/benchmarks.md §2"),
        Input("ice_req_per_s", 2_248, "req/s per process", "measured: docs/benchmarks.md §3, GET /api/ice-servers"),
        Input("connections_per_process", 50_000, "WebSockets", "assumption: LimitNOFILE=65536 in turnkit-signaling@.service, 25% kept free"),
        Input("headroom", 0.5, "× of measured capacity", "assumption: plan for half of the measured peak"),
        Input("call_minutes", 10, "min mean call length", "assumption (sets the call-setup rate)"),
        Input("msgs_per_setup", 30, "signaling msgs per call", "assumption: join, all-users, offer, answer, ~12 candidates each way, ice-servers"),
        Input("redis_ops_per_s", 100_000, "pub/sub msgs/s per Redis", "cited: redis.io 'Redis benchmark', >100k ops/s on one core"),
        Input("turn_node_mbps", 700, "Mbit/s egress per node", "assumption: a 1 Gbit/s NIC at 70%; coturn is network-bound long before CPU-bound"),
        Input("relays_per_call", 1, "TURN allocations carrying a relayed call", "assumption: one side relays (the seed's model)"),
        Input("per_gb", 0.09, "$/GB egress", "cited: AWS EC2 data transfer out, first 10 TB/month (turnkit [cost] default for aws)"),
        Input("meter_events_per_s", 0, "statsdb events/s per core", "measured by `python -m bench.model --measure-meter` (0: not measured yet)"),
    )
}  # fmt: skip

#: Input name → a regex over docs/benchmarks.md whose first group is the figure (commas allowed).
FROM_BENCHMARKS: dict[str, str] = {
    "signaling_msgs_per_s": r"^\| turnkit \(memory\) \| ([\d,]+) \|",
    "signaling_redis_msgs_per_s": r"^\| turnkit \(Redis, 2 processes\) \| ([\d,]+) \|",
    "kib_per_connection": r"^\| turnkit \(memory\) \| ([\d.]+) \| [\d,]+ \|",
    "ice_req_per_s": r"^\| GET /api/ice-servers \(JWT\) \| ([\d,]+) \|",
}


def from_benchmarks(inputs: dict[str, Input], text: str) -> dict[str, Input]:
    """The inputs with the measured figures of a docs/benchmarks.md text (unchanged where absent)."""
    out = dict(inputs)
    for name, pattern in FROM_BENCHMARKS.items():
        m = re.search(pattern, text, re.MULTILINE)
        if m:
            out[name] = replace(out[name], value=float(m[1].replace(",", "")))
    return out


@dataclass(frozen=True)
class Row:
    calls: int
    relayed: float
    mbps: float
    signaling_processes: int
    redis: int
    turn_nodes: int
    egress_gbps: float
    monthly_cost: float


def plan(calls: int, relayed: float, mbps: float, inputs: dict[str, Input]) -> Row:
    """Processes, Redis instances, TURN nodes and monthly relay cost for `calls` concurrent calls. Pure."""
    v = {k: i.value for k, i in inputs.items()}
    connections = 2 * calls
    setup_msgs = calls / (v["call_minutes"] * 60) * v["msgs_per_setup"]
    by_conns = math.ceil(connections / v["connections_per_process"])
    by_msgs = math.ceil(setup_msgs / (v["signaling_msgs_per_s"] * v["headroom"]))
    processes = max(2, by_conns, by_msgs)  # two for a rolling restart
    redis = max(1, math.ceil(setup_msgs / (v["redis_ops_per_s"] * v["headroom"])))
    relayed_calls = calls * relayed * v["relays_per_call"]
    egress_mbps = relayed_calls * 2 * mbps  # each direction leaves the relay once
    nodes = max(1, math.ceil(egress_mbps / v["turn_node_mbps"]))
    monthly_gb = egress_mbps * 1e6 / 8 * SECONDS_PER_MONTH / 1e9
    return Row(calls, relayed, mbps, processes, redis, nodes, egress_mbps / 1000, monthly_gb * v["per_gb"])


def table(rows: Sequence[Row]) -> str:
    out = [
        "| concurrent calls | relayed | Mbit/s per direction | signaling processes | Redis | TURN nodes | relay egress Gbit/s | relay cost $/month |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        out.append(
            f"| {r.calls:,} | {r.relayed:.0%} | {r.mbps:g} | {r.signaling_processes} | {r.redis} | {r.turn_nodes:,} "
            f"| {r.egress_gbps:,.1f} | {r.monthly_cost:,.0f} |"
        )
    return "\n".join(out)


def inputs_table(inputs: dict[str, Input]) -> str:
    out = ["| input | value | unit | source |", "| --- | ---: | --- | --- |"]
    out += [f"| `{i.name}` | {i.value:,g} | {i.unit} | {i.source} |" for i in inputs.values()]
    return "\n".join(out)


def measure_meter(events: int = 50_000) -> float:
    """statsdb events/s through the meter's core and its SQLite buffer on one core (measured here)."""
    from turnkit.meter import events as ev
    from turnkit.meter import ledger
    from turnkit.meter.buffer import Buffer

    with tempfile.TemporaryDirectory() as tmp:
        buf = Buffer(Path(tmp) / "bench.sqlite")
        sessions: dict[str, ledger.Session] = {}
        msgs = [
            (f"turn/realm/r/user/1764003600:user{n % 500}/allocation/{n % 1000:018d}/traffic",
             "rcvp=2048, rcvb=2053500, sentp=3, sentb=228")
            for n in range(events)
        ]  # fmt: skip
        start = time.process_time()
        for channel, payload in msgs:
            event = ev.parse(channel, payload)
            assert event is not None
            step = ledger.step(sessions, event, 1_764_000_000.0)
            buf.apply(step)
            sessions.update({s.key: s for s in step.upsert})
        spent = time.process_time() - start
        buf.close()
    return events / spent


def render(inputs: dict[str, Input]) -> str:
    rows = [plan(c, r, m, inputs) for c in CALLS for r in RELAYED for m in MBPS]
    return f"{START}\n### Inputs\n\n{inputs_table(inputs)}\n\n### Plan\n\n{table(rows)}\n{END}"


def update(doc: str, block: str) -> str:
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    return doc.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.model", description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the model instead of updating docs/capacity.md")
    parser.add_argument("--measure-meter", action="store_true", help="measure the meter's events/s per core first")
    args = parser.parse_args(argv)
    inputs = from_benchmarks(INPUTS, BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "")
    old = CAPACITY.read_text(encoding="utf-8") if CAPACITY.exists() else ""
    m = re.search(r"^\| `meter_events_per_s` \| ([\d,.]+) \|", old, re.MULTILINE)
    if m:  # keep the last measurement unless asked to measure again
        inputs["meter_events_per_s"] = replace(inputs["meter_events_per_s"], value=float(m[1].replace(",", "")))
    if args.measure_meter:
        measured = round(measure_meter())
        inputs["meter_events_per_s"] = replace(
            inputs["meter_events_per_s"],
            value=measured,
            source="measured here: `python -m bench.model --measure-meter`",
        )
    block = render(inputs)
    if args.print:
        print(block)
    else:
        CAPACITY.write_text(update(old, block), encoding="utf-8")
        print(f"updated {CAPACITY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
