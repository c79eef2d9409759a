"""The `turnkit` command: one Typer app; each module in COMMAND_MODULES registers its commands."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer

from turnkit import __version__
from turnkit.cli import output
from turnkit.errors import TurnkitError

#: Modules with a `register(app)` function, in the order their commands show in --help.
COMMAND_MODULES = (
    "turnkit.cli.project",
    "turnkit.cli.secret",
    "turnkit.cli.creds",
    "turnkit.cli.render",
    "turnkit.cli.signaling",
    "turnkit.cli.probe",
    "turnkit.cli.deploy",
    "turnkit.cli.inventory",
    "turnkit.cli.drain",
    "turnkit.cli.meter",
    "turnkit.cli.usage",
)

app = typer.Typer(
    name="turnkit",
    help="Render, deploy, credential and probe WebRTC TURN relays.\n\nExample: turnkit init && turnkit render --region local --out rendered/",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        output.result(f"turnkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """turnkit: TURN relays for WebRTC, from one turnkit.toml."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


#: Set to 1 to see the traceback (with the whole exception chain) above the one-line error.
DEBUG_ENV = "TURNKIT_DEBUG"


def _show_traceback(exc: BaseException) -> None:
    """The full chain: library code raises `from None` to keep messages short; debug output wants it all."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    sys.stderr.write("".join(traceback.format_exception(exc)))


def one_line(text: str) -> str:
    """`text` with its line breaks shown as escapes (an error is always one line)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point: click handles usage errors (exit 2); TurnkitError becomes one `error:` line."""
    try:
        app(args=argv, prog_name="turnkit")
    except TurnkitError as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            _show_traceback(exc)
        if str(exc):  # one line, whatever a value quoted in the message held
            output.stderr.print(f"error: {one_line(str(exc))}", markup=False)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        output.stderr.print("error: interrupted")
        sys.exit(130)
