"""Section 3: the credentials endpoint (`GET /api/ice-servers` with a JWT) vs `GET /healthz`, with wrk."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from bench import profile, stack
from bench.common import Ctx
from bench.procs import CLIENT_CORE, SERVER_CORE, core, run
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, ratio

CONNECTIONS = 32
ROUNDS = 5  # at least: 16 s a round, and the ratio is noisy on a shared machine
RATIO = Target("ice-servers req/s ÷ healthz req/s", ">=", 0.8, "×", "issue 6")

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_P = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Wrk:
    rps: float
    p50_ms: float
    p99_ms: float


def parse_wrk(out: str) -> Wrk:
    """Requests/sec and the 50%/99% latency of `wrk --latency` output; a non-2xx answer is an error."""
    bad = _NON2XX.search(out)
    if bad:
        raise RuntimeError(f"wrk: {bad.group(1)} non-2xx answers")
    rps = _RPS.search(out)
    if rps is None:
        raise RuntimeError(f"wrk: no Requests/sec in output: {out[-500:]!r}")
    lat = {q: float(v) * _UNIT_MS[u] for q, v, u in _P.findall(out)}
    return Wrk(float(rps.group(1)), lat.get("50", float("nan")), lat.get("99", float("nan")))


def lua_script(token: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def wrk(url: str, seconds: float, script: str | None = None) -> Wrk:
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency"]
    argv += ["-s", script] if script else []
    return parse_wrk(run([*argv, url], pin=core(CLIENT_CORE), timeout=seconds + 60))


def bench(ctx: Ctx) -> Section:
    seconds = ctx.seconds(8.0)
    server = stack.start_turnkit(ctx.procs, ctx.workdir, core(SERVER_CORE))
    token = jwt.encode({"sub": "bench-wrk", "exp": int(time.time()) + 3600}, stack.JWT_SECRET, algorithm="HS256")
    script = ctx.workdir / "auth.lua"
    script.write_text(lua_script(token))
    base = f"http://127.0.0.1:{server.port}"
    endpoints = {
        "GET /healthz": (f"{base}/healthz", None),
        "GET /api/ice-servers (JWT)": (f"{base}/api/ice-servers", str(script)),
    }
    results: dict[str, list[Wrk]] = {name: [] for name in endpoints}
    rounds = max(ctx.rounds, ROUNDS) if not ctx.quick else ctx.rounds
    for _ in range(rounds):
        for name, (url, lua) in endpoints.items():
            results[name].append(wrk(url, seconds, lua))
    med = {
        name: Wrk(median([x.rps for x in r]), median([x.p50_ms for x in r]), median([x.p99_ms for x in r]))
        for name, r in results.items()
    }
    health, ice = med["GET /healthz"], med["GET /api/ice-servers (JWT)"]
    # Each round's two runs sit next to each other in time: their ratio is what survives the shared machine's drift.
    paired = [
        ratio(i.rps, h.rps) for h, i in zip(results["GET /healthz"], results["GET /api/ice-servers (JWT)"], strict=True)
    ]
    rows = tuple(
        (name, fmt(m.rps), fmt(m.p50_ms), fmt(m.p99_ms), " / ".join(fmt(x.rps) for x in results[name]))
        for name, m in med.items()
    )
    method = f"""\
One `turnkit signaling serve` (memory backend) pinned to core 0; `wrk -t1 -c{CONNECTIONS} -d{max(1, round(seconds))}s --latency`
pinned to core 1, alternating the two routes, {rounds} rounds; the ratio is the median of the rounds' own ratios (each
round's two runs are seconds apart, so a load swing on the shared machine hits both), the table shows medians. `/api/ice-servers` carries an HS256 JWT
(`Authorization: Bearer`, set by a wrk Lua script) and answers with freshly minted TURN REST credentials (HMAC);
`/healthz` does no work, so the ratio is the cost of auth + credentials. Every answer was 2xx (checked)."""
    section = Section(
        "creds",
        "3. Credentials endpoint",
        method,
        tables=[Table(("route", "req/s", "p50 ms", "p99 ms", "req/s per round"), rows)],
        verdicts=[
            Verdict(
                RATIO,
                median(paired),
                f"per round {' / '.join(fmt(x) for x in paired)}; ratio of the medians {fmt(ratio(ice.rps, health.rps))}",
            )
        ],
    )
    if ctx.profile or section.verdicts[0].met is False:
        url, lua = endpoints["GET /api/ice-servers (JWT)"]
        try:
            text = profile.during(
                server.proc.pid, seconds, lambda: wrk(url, seconds, lua), ctx.workdir / "creds.prof", core(CLIENT_CORE)
            )
            section.notes.append(
                profile.summary(text, "the server answering `/api/ice-servers` under wrk", "signaling/")
            )
        except RuntimeError as exc:
            section.notes.append(f"Profile not taken: {exc}")
    return section
