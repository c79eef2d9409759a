"""`python -m bench.model`: the capacity and cost model of docs/capacity.md, recomputed.

Every input is named with its value and source: measured here (read from the latest
docs/benchmarks.md tables, or measured by `--measure-meter`), or cited. The table between the
`model` markers of docs/capacity.md is rewritten; `--print` only prints it.
"""

from __future__ import annotations

import argparse
import math
import re
import tomllib
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


#: The model's inputs, from bench/model-inputs.toml; `from_benchmarks` replaces the measured ones with the latest figures.
INPUTS: dict[str, Input] = {
    name: Input(name, float(row["value"]), row["unit"], row["source"])
    for name, row in tomllib.loads(Path(__file__).with_name("model-inputs.toml").read_text(encoding="utf-8")).items()
}

_COUNT = r"[\d,]*\.?\d+"
#: Measured input → (docs/benchmarks.md section key, first cell of its table row, column holding the figure).
#: A KiB figure has no thousands separator, which tells it from a msgs/s figure in text without section markers.
FROM_BENCHMARKS: dict[str, tuple[str, str, int, str]] = {
    "signaling_msgs_per_s": ("relay", "turnkit (memory)", 1, _COUNT),
    "signaling_redis_msgs_per_s": ("relay", "turnkit (Redis, 2 processes)", 1, _COUNT),
    "kib_per_connection": ("capacity", "turnkit (memory)", 1, r"\d+(?:\.\d+)?"),
    "ice_req_per_s": ("creds", "GET /api/ice-servers (JWT)", 1, _COUNT),
    "meter_events_per_s": ("meter", "events → ledger → SQLite buffer", 1, _COUNT),
}


def _figure(text: str, section: str, label: str, column: int, shape: str) -> float | None:
    """The number in `column` of the first table row labelled `label`, within `section` if the text marks it."""
    marked = re.search(rf"<!-- bench:{section}:start -->(.*?)<!-- bench:{section}:end -->", text, re.DOTALL)
    for line in (marked.group(1) if marked else text).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label and len(cells) > column and re.fullmatch(shape, cells[column]):
            return float(cells[column].replace(",", ""))
    return None


def from_benchmarks(inputs: dict[str, Input], text: str) -> dict[str, Input]:
    """The inputs with the measured figures of a docs/benchmarks.md text (unchanged where absent)."""
    out = dict(inputs)
    for name, (section, label, column, shape) in FROM_BENCHMARKS.items():
        value = _figure(text, section, label, column, shape)
        if value is not None:
            out[name] = replace(out[name], value=value)
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
    if args.measure_meter:
        from bench.meter import measure_events

        measured = round(measure_events())
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
