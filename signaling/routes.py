"""HTTP routes and the gate every WebSocket upgrade passes (websockets' `process_request`/`process_response`).

`/ws` is checked (connection limit, `Origin`, token, region) and either refused with a JSON answer or let
through to the handshake; every other path is answered here and the connection closes.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from signaling import auth, origins
from signaling.auth import AuthError, Identity
from signaling.connection import Connection
from signaling.core import Core
from signaling.ice import UnknownRegion
from signaling.lograte import RateLimitedLog
from signaling.metrics import Stats
from signaling.responses import Query, StaticFiles, first, json_response, not_found, response

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)

#: File descriptors kept free for listeners, Redis, logs and static files.
FD_RESERVE = 64

Route = Callable[[Request, Query], Awaitable[Response]]


class Routes:
    """Answers HTTP requests and admits WebSocket upgrades for one server."""

    def __init__(self, core: Core, stats: Stats, static: StaticFiles, max_connections: int) -> None:
        self.core = core
        self.stats = stats
        self.static = static
        self.max_connections = max_connections
        #: Normalised origins allowed to upgrade; set by the server once it knows its port.
        self.origins: frozenset[str] = frozenset()
        self.table: dict[str, Route] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/api/ice-servers": self._api_ice_servers,
            "/api/turn": self._api_turn,
            "/": self._index,
        }

    # websockets' handshake hooks

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, Connection)
        try:
            url = urlsplit(request.path)
        except ValueError:  # e.g. `//[x/`: an authority that is not one
            return json_response(400, {"error": "bad request target"})
        query = parse_qs(url.query)
        if url.path == "/ws":
            outcome = self._admit(request, query)
            if isinstance(outcome, Response):
                return outcome
            conn.identity = outcome
            conn.resume = first(query, "resume")
            return None
        route = self.table.get(url.path)
        if route is not None:
            return await route(request, query)
        if url.path.startswith("/static/"):
            return self.static.get(url.path.removeprefix("/static/"))
        return not_found()

    def process_response(self, conn: ServerConnection, request: Request, resp: Response) -> None:
        assert isinstance(conn, Connection)
        if resp.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and conn.identity is not None:
            ident, region = conn.identity
            conn.peer = self.core.hub.connect(ident.user, region, conn, conn.resume)

    # The upgrade gate

    def _admit(self, request: Request, query: Query) -> tuple[Identity, str | None] | Response:
        peers = len(self.core.hub.peers)
        if peers >= self.max_connections:
            self.stats.refused["capacity"] += 1
            warn.warning(
                "capacity",
                "connection limit reached: %d open, RLIMIT_NOFILE allows %d; refusing new ones with 503",
                peers,
                self.max_connections + FD_RESERVE,
            )
            return json_response(503, {"error": "server at connection limit"})
        sent = request.headers.get_all("Origin")
        if sent and (len(sent) > 1 or origins.normalise(sent[0]) not in self.origins):
            self.stats.refused["origin"] += 1
            return json_response(403, {"error": "origin not allowed"})
        # A WebSocket shows its token once; caching it would only hold memory for the connection's lifetime.
        return self._authenticate(request, query, remember=False)

    def _authenticate(
        self, request: Request, query: Query, remember: bool = True
    ) -> tuple[Identity, str | None] | Response:
        try:
            token = auth.bearer(request.headers.get_all("Authorization"), query)
            ident = self.core.verifier.verify(token, remember)
        except AuthError as exc:
            self.stats.refused["auth"] += 1
            return json_response(401, {"error": str(exc)}, {"WWW-Authenticate": 'Bearer realm="turnkit"'})
        try:
            region = self.core.ice.region_for(first(query, "region"), ident.region)
        except UnknownRegion as exc:
            self.stats.refused["region"] += 1
            return json_response(400, {"error": str(exc)})
        return ident, region

    # Routes

    async def _healthz(self, request: Request, query: Query) -> Response:
        return json_response(200, {"status": "ok"})

    async def _readyz(self, request: Request, query: Query) -> Response:
        """Unauthenticated: ready or not, with a generic reason; details go to the log only."""
        try:
            reason = self.core.keys.ready() or await self.core.backend.ready()
        except Exception as exc:
            warn.warning("readyz", "readiness check failed: %s", type(exc).__name__)
            reason = "readiness check failed"
        if reason is not None:
            return json_response(503, {"status": "not ready", "reason": reason})
        return json_response(200, {"status": "ready"})

    async def _metrics(self, request: Request, query: Query) -> Response:
        return response(200, self.core.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    async def _api_ice_servers(self, request: Request, query: Query) -> Response:
        outcome = self._authenticate(request, query)
        if isinstance(outcome, Response):
            return outcome
        ident, region = outcome
        return response(200, self.core.ice.issue(ident.user, region).document(), "application/json")

    async def _api_turn(self, request: Request, query: Query) -> Response:
        """draft-uberti-behave-turn-rest-00 §2.1/§2.2; the user id is the token's `sub`."""
        outcome = self._authenticate(request, query)
        if isinstance(outcome, Response):
            return outcome
        ident, region = outcome
        service = first(query, "service") or "turn"
        if service != "turn":
            return json_response(400, {"error": "service: must be `turn`"})
        username = first(query, "username") or ident.user
        if username != ident.user:
            return json_response(403, {"error": "username: must be the token's subject"})
        return json_response(200, self.core.ice.turn_rest(ident.user, region))

    async def _index(self, request: Request, query: Query) -> Response:
        return self.static.get("index.html")
