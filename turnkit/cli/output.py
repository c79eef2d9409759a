"""All CLI output goes through here: results to stdout, diagnostics to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from turnkit.errors import ExitCode

stdout = Console(soft_wrap=True, highlight=False)
stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def result(text: str) -> None:
    """A result line a script may read (plain stdout, no markup)."""
    sys.stdout.write(text + "\n")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def info(text: str) -> None:
    """A diagnostic for the operator (stderr)."""
    stderr.print(text, markup=False)


def abort(text: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """Print one `error: …` line to stderr and exit with a named code."""
    stderr.print(f"error: {text}", markup=False)
    raise SystemExit(int(code))
