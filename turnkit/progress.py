"""The one progress callback type: long operations report each step as one line for the operator."""

from __future__ import annotations

from collections.abc import Callable

#: Receives a human-readable line (`started coturn-turn-1 (pid 4242)`); the CLI prints it to stderr.
Progress = Callable[[str], None]
