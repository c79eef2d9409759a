"""`turnkit signaling serve`: run the bundled signaling service (SIGNALING.md v1)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from turnkit.cli import output
from turnkit.cli.common import CONFIG_OPTION, load_config

LEVELS = ("debug", "info", "warning", "error")

signaling_app = typer.Typer(help="The bundled WebRTC signaling service.", no_args_is_help=True)


class JsonLines(logging.Formatter):
    """One JSON object per log line (journald- and grep-friendly)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # websockets logs raw requests (with `?token=`) at DEBUG and every connection at INFO.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))


@signaling_app.command("serve")
def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default: signaling.host)."),
    port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535, help="Port (default: signaling.port)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    config: Path = CONFIG_OPTION,
) -> None:
    """Serve WebSocket signaling on /ws, ICE servers on /api/ice-servers, the demo page on /.

    Example: TURNKIT_JWT_SECRET=change-me turnkit signaling serve --port 8080
    """
    from signaling.app import SignalingServer, run

    if log_level.lower() not in LEVELS:
        output.abort(f"--log-level: must be one of {', '.join(LEVELS)}, got `{log_level}`")
    cfg = load_config(config)
    _setup_logging(log_level)
    run(SignalingServer(cfg, host=host, port=port))


def register(app: typer.Typer) -> None:
    app.add_typer(signaling_app, name="signaling")
