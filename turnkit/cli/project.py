"""`turnkit init`: write a commented starter turnkit.toml."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from turnkit.cli import output
from turnkit.fsutil import atomic_write


def starter_text() -> str:
    return resources.files("turnkit").joinpath("starter.toml").read_text(encoding="utf-8")


def init(
    path: Path = typer.Argument(Path("turnkit.toml"), help="Where to write the file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented starter turnkit.toml.

    Example: turnkit init && turnkit secret init
    """
    if path.exists() and not force:
        output.abort(f"`{path}` already exists (use --force to overwrite)")
    atomic_write(path, starter_text())
    output.info(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
