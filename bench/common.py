"""What every benchmark section gets: rounds, durations, a work directory and the process registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.procs import Procs


@dataclass
class Ctx:
    rounds: int
    quick: bool
    workdir: Path
    procs: Procs
    profile: bool = False

    def seconds(self, full: float, quick: float = 1.0) -> float:
        """A load duration: `full` normally, `quick` with --quick (smoke runs)."""
        return quick if self.quick else full

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full
