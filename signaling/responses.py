"""HTTP/1.1 answers for everything that is not a WebSocket upgrade, and the demo page's static files.

Each answer is a complete `websockets.http11.Response` with `Connection: close`: the server speaks
just enough HTTP for health checks, the JSON API and a handful of files (NGINX sits in front).
"""

from __future__ import annotations

import email.utils
import http
import json
import re
from collections.abc import Mapping
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Response

STATIC_DIR = Path(__file__).parent / "static"

#: Media types by file suffix (anything else is application/octet-stream).
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
}
#: A relative name of plain segments: no `..`, no hidden files, no absolute paths, no encodings.
STATIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")

Query = dict[str, list[str]]


def response(status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> Response:
    """A complete HTTP/1.1 response (the connection closes after it)."""
    h = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
    )
    for name, value in (headers or {}).items():
        h[name] = value
    return Response(status, http.HTTPStatus(status).phrase, h, body)


def json_response(status: int, doc: object, headers: Mapping[str, str] | None = None) -> Response:
    return response(status, json.dumps(doc).encode() + b"\n", "application/json", headers)


def not_found() -> Response:
    return json_response(404, {"error": "not found"})


def first(query: Query, name: str) -> str | None:
    """The first value of a query parameter, if any."""
    values = query.get(name)
    return values[0] if values else None


class StaticFiles:
    """Files under one directory, by relative name; anything outside it or oddly named is a 404."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, name: str) -> Response:
        if not STATIC_NAME.fullmatch(name):
            return not_found()
        base = self.directory.resolve()
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return not_found()
        try:
            body = path.read_bytes()
        except OSError:
            return not_found()
        ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return response(200, body, ctype, {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
