"""Where the shipped `templates/` and `playbooks/` live: inside the wheel, or in a checkout."""

from __future__ import annotations

from pathlib import Path

from turnkit.errors import TurnkitError

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`templates` or `playbooks`: the wheel's copy (turnkit/_data/NAME) or the checkout's."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise TurnkitError(f"cannot find turnkit's `{name}` directory (broken installation?)")


def template_dir() -> Path:
    return data_dir("templates")


def playbook_dir() -> Path:
    return data_dir("playbooks")
