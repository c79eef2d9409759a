"""Probe history in a small SQLite file: one row per check result, appended per run."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from turnkit.errors import TurnkitError
from turnkit.probe.result import CheckResult

FILE_NAME = "probe-history.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run_at INTEGER NOT NULL,
    region TEXT NOT NULL,
    node TEXT NOT NULL,
    transport TEXT NOT NULL,
    check_name TEXT NOT NULL,
    status TEXT NOT NULL,
    failure TEXT,
    duration REAL NOT NULL,
    rtt_p50 REAL
);
CREATE INDEX IF NOT EXISTS results_by_time ON results (run_at);
"""

#: Pass rate and RTT per node and time bucket (skipped checks do not count).
_SUMMARY = """
SELECT region, node, (run_at / :bucket) * :bucket AS period,
       COUNT(DISTINCT run_at) AS runs,
       SUM(status = 'pass') AS passed,
       SUM(status = 'fail') AS failed,
       AVG(CASE WHEN check_name = 'relay' THEN rtt_p50 END) AS relay_rtt_p50,
       MAX(CASE WHEN check_name = 'relay' THEN rtt_p50 END) AS relay_rtt_worst
FROM results
WHERE run_at >= :since AND status != 'skip'
GROUP BY region, node, period
ORDER BY region, node, period
"""


class HistoryError(TurnkitError):
    """The history database cannot be opened or is not a probe history."""


@dataclass(frozen=True)
class Period:
    """One node's results in one time bucket."""

    region: str
    node: str
    period: int
    runs: int
    passed: int
    failed: int
    relay_rtt_p50: float | None
    relay_rtt_worst: float | None

    @property
    def pass_rate(self) -> float:
        total = self.passed + self.failed
        return self.passed / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pass_rate": round(self.pass_rate, 4)}


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"{path}: cannot open probe history: {exc}") from None
    try:
        with db:
            db.executescript(_SCHEMA)
            yield db
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: not a probe history database: {exc}") from None
    finally:
        db.close()


def append(path: Path, run_at: int, results: Sequence[CheckResult]) -> None:
    """Add one run's results (one transaction)."""
    rows = [
        (
            run_at,
            r.region,
            r.node,
            r.transport.value,
            r.check,
            r.status.value,
            r.failure.value if r.failure else None,
            r.duration,
            r.details.get("rtt_p50"),
        )
        for r in results
    ]
    with _connect(path) as db:
        db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def summary(path: Path, since: int, bucket: int = 86400) -> list[Period]:
    """Pass rate and relay RTT per node per `bucket` seconds, from `since` (unix seconds) on."""
    if not path.exists():
        return []
    with _connect(path) as db:
        rows = db.execute(_SUMMARY, {"since": since, "bucket": bucket}).fetchall()
    return [Period(*row) for row in rows]
