"""`python -m bench`: run the side-by-side benchmarks and update docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import browser, call, capacity, creds, env, gaps, latency, meter, ops, probe, relay, report
from bench.common import Ctx
from bench.procs import CLIENT_CORE, SERVER_CORE, core, managed, raise_nofile

#: Section key → (title, benchmark), in document order.
SECTIONS: dict[str, tuple[str, Callable[[Ctx], report.Section]]] = {
    "relay": ("1. Signaling relay throughput and CPU per message", relay.bench),
    "capacity": ("2. Capacity: memory per idle joined connection", capacity.bench),
    "creds": ("3. Credentials endpoint", creds.bench),
    "probe": ("4. Probe speed", probe.bench),
    "latency": ("4b. Probe fleet at real latency (50 ms RTT)", latency.bench),
    "call": ("5. Call setup (aiortc peers)", call.bench),
    "browser": ("5b. Browser call setup", browser.bench),
    "meter": ("7. Usage metering (issue 14)", meter.bench),
    "ops": ("8. Operations under change (issue 12)", ops.bench),
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds per comparison (median; ≥ 3 for the doc)")
    p.add_argument("--quick", action="store_true", help="tiny durations and counts: a smoke run, not a measurement")
    p.add_argument("--profile", action="store_true", help="py-spy the relay server even if its targets are met")
    p.add_argument("--doc", type=Path, default=DOC, help="Markdown file to update (default: docs/benchmarks.md)")
    p.add_argument("--note", default="", help="free text about the machine, added to each section's header")
    p.add_argument("--keep", action="store_true", help="keep the work directory with server logs")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds: must be ≥ 1, got {args.rounds}")
    return args


def failed_section(key: str, exc: BaseException) -> report.Section:
    title = SECTIONS[key][0]
    last = "".join(traceback.format_exception_only(exc)).strip().splitlines()
    return report.Section(key, title, f"**Not measured in this run:** `{last[-1] if last else exc!r}`")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="bench: %(message)s")
    log = logging.getLogger("bench")
    log.setLevel(logging.INFO)
    keys = args.only or list(SECTIONS)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    raise_nofile()
    load_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="turnkit-bench-"))
    rendered: dict[str, report.Section] = {}
    failures = 0
    try:
        with managed(workdir / "logs") as procs:
            ctx = Ctx(args.rounds, args.quick, workdir, procs, args.profile)
            for key in keys:
                log.info("%s …", SECTIONS[key][0])
                try:
                    rendered[key] = SECTIONS[key][1](ctx)
                except Exception as exc:  # one broken section must not lose the others' figures
                    failures += 1
                    log.error("%s failed: %s", key, exc)
                    rendered[key] = failed_section(key, exc)
                finally:
                    procs.stop_all()
                for v in rendered[key].verdicts:
                    log.info("  %s %s: %s", v.mark, v.target.metric, v.value)
    finally:
        if args.keep or failures:
            log.info("logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = report.run_header(
        command,
        date,
        os.cpu_count() or 0,
        env.versions(),
        env.machine_note(
            load_start, os.getloadavg()[0], args.note, args.quick, env.pinning(core(SERVER_CORE), core(CLIENT_CORE))
        ),
    )
    text = {key: report.render_section(section, header) for key, section in rendered.items()}
    old = args.doc.read_text() if args.doc.exists() else ""
    doc = report.update(old, text, list(SECTIONS))
    doc = report.update(
        doc, {gaps.KEY: gaps.render(doc, f"_Derived by `{command}` on {date} from the sections as they stand._")}
    )
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.doc.with_name(args.doc.name + ".tmp")
    tmp.write_text(doc)
    tmp.replace(args.doc)
    log.info("wrote %s", args.doc)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
