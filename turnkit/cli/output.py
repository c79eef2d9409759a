"""All CLI output goes through here: results to stdout, diagnostics to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from turnkit.errors import ExitCode, TurnkitError

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


class Abort(TurnkitError):
    """A command gave up: `turnkit.cli.main` prints the text (if any) as one `error:` line and exits with `code`."""

    def __init__(self, text: str, code: ExitCode) -> None:
        super().__init__(text)
        self.exit_code = code


def abort(text: str = "", code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """The one way a command fails: one `error: …` line on stderr (none when `text` is empty, e.g. after
    a results table that already says what failed) and the named exit code."""
    raise Abort(text, code)
