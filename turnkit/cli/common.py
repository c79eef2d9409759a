"""Options and loaders shared by the command modules."""

from __future__ import annotations

from pathlib import Path

import typer

from turnkit import config as config_mod
from turnkit.config import Config

CONFIG_OPTION = typer.Option(
    Path("turnkit.toml"), "--config", "-c", help="Path to turnkit.toml.", envvar="TURNKIT_CONFIG"
)
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def load_config(path: Path) -> Config:
    return config_mod.load(path)
