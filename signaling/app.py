"""The signaling server: HTTP routes and the WebSocket endpoint on `websockets` + uvloop.

Lifecycle as in uvicorn: `startup()` loads secrets, keys and the backend and starts listening,
`main_loop()` runs until SIGTERM/SIGINT, `shutdown()` closes every connection with 1001 (going away).
Frames are handed from the websockets parser straight to the hub (no per-message task); sends are
synchronous writes with a bounded per-connection backlog, so a slow reader is dropped, never buffered
without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import http
import json
import logging
import os
import re
import resource
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.connection import Connection as BaseConnection
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, Event
from websockets.typing import BytesLike

from signaling import auth
from signaling.auth import AuthError, Identity
from signaling.backends import Backend
from signaling.backends.memory import MemoryBackend
from signaling.hub import Hub, Limits, Peer
from signaling.ice import FileHealth, HealthSource, IceProvider, SharedHealth, UnknownRegion
from signaling.keysource import KeySource
from signaling.metrics import Metrics, Stats
from turnkit import health as turnkit_health
from turnkit import keyring
from turnkit.config import Config
from turnkit.errors import DaemonError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: File descriptors kept free for listeners, Redis, logs and static files.
FD_RESERVE = 64
SHUTDOWN_TIMEOUT = 10.0

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
STATIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


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


class _NoMessages:
    """Stands in for websockets' receive queue once frames bypass it (saves ~1 KB per connection)."""

    def close(self) -> None:
        return None


NO_MESSAGES = _NoMessages()


class Connection(ServerConnection):
    """A WebSocket connection that is also the hub's `Link` for its peer.

    Per-connection state defaults live on the class, so an idle connection's `__dict__` stays small.
    """

    app: SignalingServer
    peer: Peer | None = None
    identity: tuple[Identity, str | None] | None = None
    backlog: collections.deque[str] | None = None
    fragments: tuple[bool, list[BytesLike]] | None = None
    closer: asyncio.Task[None] | None = None

    def settle(self) -> None:
        """After the handshake: drop what only the handshake needed (request, response, message queue)."""
        # websockets' parser generator keeps the request alive; its headers need not stay.
        for message in (self.request, self.response):
            if message is not None:
                message.headers.clear()
        self.request = None
        self.response = None
        self.recv_messages = NO_MESSAGES  # type: ignore[assignment]

    # Incoming: complete messages go straight to the hub.

    def process_event(self, event: Event) -> None:
        peer = self.peer
        if peer is None or not isinstance(event, Frame):
            return super().process_event(event)
        peer.seen = True
        op = event.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if event.fin:
                self._dispatch(peer, event.data, op is Opcode.BINARY)
            else:
                self.fragments = (op is Opcode.BINARY, [event.data])
        elif op is Opcode.CONT:
            if self.fragments is not None:
                self.fragments[1].append(event.data)
                if event.fin:
                    binary, parts = self.fragments
                    self.fragments = None
                    self._dispatch(peer, b"".join(parts), binary)
        else:
            BaseConnection.process_event(self, event)  # ping, pong, close (the handshake is over)

    def _dispatch(self, peer: Peer, data: BytesLike, binary: bool) -> None:
        try:
            self.app.hub.on_frame(peer, data if isinstance(data, bytes) else bytes(data), binary)
        except Exception:
            log.exception("frame handler failed for peer %s", peer.id)

    # Outgoing: the hub's Link.

    def push(self, frame: str) -> None:
        if self.protocol.state is not OPEN:
            return
        if self.paused or self.backlog:
            if self.backlog is None:
                self.backlog = collections.deque()
            if len(self.backlog) >= self.app.send_queue:
                self._overflow()
                return
            self.backlog.append(frame)
            return
        self._write(frame)

    def _write(self, frame: str) -> None:
        try:
            self.protocol.send_text(frame.encode())
            self.send_data()
        except Exception as exc:
            log.debug("write failed: %s", exc)

    def resume_writing(self) -> None:
        super().resume_writing()
        backlog = self.backlog
        while backlog and not self.paused and self.protocol.state is OPEN:
            self._write(backlog.popleft())
        if not backlog:
            self.backlog = None

    def _overflow(self) -> None:
        peer = self.peer
        if peer is not None and not peer.closing:
            peer.closing = True
            self.app.stats.closed["slow-reader"] += 1
            log.warning("peer %s does not read fast enough (send queue full); disconnecting", peer.id)
        self.backlog = None
        self.transport.abort()

    def ping_now(self) -> None:
        """Send a keepalive ping (RFC 6455 §5.5.2); any frame back counts as an answer."""
        if self.protocol.state is OPEN:
            self.protocol.send_ping(b"tk")
            self._send()

    def _send(self) -> None:
        try:
            self.send_data()
        except Exception as exc:
            log.debug("write failed: %s", exc)

    def drop(self, code: int, reason: str) -> None:
        if self.closer is None:
            self.closer = self.loop.create_task(self.close(code, reason))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.backlog = None
        if self.peer is not None:
            self.app.hub.disconnect(self.peer)


Route = Callable[[Connection, Request, dict[str, list[str]]], Awaitable[Response]]


class SignalingServer:
    """One signaling process: config in, a listening server out."""

    def __init__(
        self,
        cfg: Config,
        env: Mapping[str, str] | None = None,
        host: str | None = None,
        port: int | None = None,
        static_dir: Path = STATIC_DIR,
        push_floor: float | None = None,
        ping_interval: float | None = 20.0,
    ) -> None:
        self.cfg = cfg
        self.env = dict(os.environ if env is None else env)
        self.host = host if host is not None else cfg.signaling.host
        self.port = port if port is not None else cfg.signaling.port
        self.static_dir = static_dir
        self.send_queue = cfg.signaling.send_queue
        self.ping_interval = ping_interval
        s = cfg.signaling
        limits = Limits(s.room_capacity, s.max_frame_bytes, s.rate_limit, s.rate_burst, float(s.refresh_margin))
        self.limits = limits if push_floor is None else Limits(**{**limits.__dict__, "push_floor": push_floor})
        self.stats = Stats()
        self.stop_event = asyncio.Event()
        self.server: Server | None = None
        self.pinger: asyncio.Task[None] | None = None
        self.max_connections = 0
        self._limit_logged = 0.0
        self.routes: dict[str, Route] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/api/ice-servers": self._api_ice_servers,
            "/api/turn": self._api_turn,
            "/": self._index,
        }

    # Lifecycle

    async def startup(self) -> None:
        """Load secrets and keys, start the backend, listen. Raises TurnkitError on bad setup."""
        cfg = self.cfg
        secrets_path = keyring.path_for(cfg.secrets_path, self.env) or cfg.secrets_path
        self.keys = KeySource(secrets_path)
        self.verifier = auth.load_verifier(cfg, self.env)
        # Same place `turnkit probe` publishes to: Redis when configured, else the health file.
        health: HealthSource
        shared: SharedHealth | None = None
        if cfg.signaling.redis_url:
            health = shared = SharedHealth()
        else:
            health = FileHealth(turnkit_health.path_for(cfg, self.env))
        self.ice = IceProvider(cfg, self.keys, health, on_issue=self._count_credential)
        self.backend: Backend
        if cfg.signaling.redis_url:
            from signaling.backends.redis import RedisBackend

            self.backend = RedisBackend(cfg.signaling.redis_url, shared)
        else:
            self.backend = MemoryBackend()
        loop = asyncio.get_running_loop()
        self.hub = Hub(self.limits, self.ice, self.backend, self.stats, loop)
        self.metrics = Metrics(self.stats, self._gauges)
        self.max_connections = _raise_fd_limit() - FD_RESERVE
        await self.backend.start(self.hub)
        bound = type("BoundConnection", (Connection,), {"app": self})
        try:
            self.server = await self._listen(bound)
        except OSError as exc:
            self.hub.close()
            await self.backend.stop()
            raise DaemonError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = self.server.sockets[0].getsockname()[1]
        if self.ping_interval is not None:
            self.pinger = asyncio.create_task(self._keepalive())
        log.info(
            "signaling listening on %s:%d (backend %s, process %s, up to %d connections)",
            self.host,
            self.port,
            type(self.backend).__name__,
            self.backend.proc,
            self.max_connections,
        )

    async def _listen(self, bound: type[Connection]) -> Server:
        return await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            process_response=self._process_response,
            create_connection=bound,
            compression=None,
            max_size=self.cfg.signaling.max_frame_bytes,
            ping_interval=None,  # one server-wide keepalive sweep instead of a task per connection
            close_timeout=5,
            server_header="turnkit-signaling",
        )

    async def main_loop(self) -> None:
        await self.stop_event.wait()

    def request_stop(self) -> None:
        self.stop_event.set()

    async def shutdown(self) -> None:
        """Close every connection with 1001, then let the backend clean up."""
        if self.pinger is not None:
            self.pinger.cancel()
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.warning("connections did not close within %.0fs", SHUTDOWN_TIMEOUT)
        if hasattr(self, "hub"):
            self.hub.close()
            await self.backend.stop()
        log.info("signaling stopped")

    async def run(self) -> None:
        """startup → main_loop until SIGTERM/SIGINT → shutdown."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.startup()
        try:
            await self.main_loop()
        finally:
            await self.shutdown()

    # WebSocket

    async def _handler(self, conn: ServerConnection) -> None:
        assert isinstance(conn, Connection)
        conn.settle()
        await conn.wait_closed()

    async def _keepalive(self) -> None:
        """One sweep for all connections: ping each; drop those silent since the previous sweep."""
        assert self.ping_interval is not None
        while True:
            await asyncio.sleep(self.ping_interval)
            for peer in list(self.hub.peers.values()):
                conn = peer.link
                if not isinstance(conn, Connection) or peer.closing:
                    continue
                if peer.seen:
                    peer.seen = False
                    conn.ping_now()
                else:
                    peer.closing = True
                    self.stats.closed["keepalive"] += 1
                    log.info("peer %s did not answer keepalive pings; closing", peer.id)
                    conn.drop(1011, "keepalive ping timeout")

    def _process_response(self, conn: ServerConnection, request: Request, resp: Response) -> None:
        assert isinstance(conn, Connection)
        if resp.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and conn.identity is not None:
            ident, region = conn.identity
            conn.peer = self.hub.connect(ident.user, region, conn)

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, Connection)
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if url.path == "/ws":
            return self._upgrade(conn, request, query)
        route = self.routes.get(url.path)
        if route is not None:
            return await route(conn, request, query)
        if url.path.startswith("/static/"):
            return self._static(url.path.removeprefix("/static/"))
        return json_response(404, {"error": "not found"})

    def _authenticate(self, request: Request, query: dict[str, list[str]]) -> tuple[Identity, str | None] | Response:
        try:
            ident = self.verifier.verify(auth.bearer(request.headers, query))
        except AuthError as exc:
            self.stats.refused["auth"] += 1
            return json_response(401, {"error": str(exc)}, {"WWW-Authenticate": 'Bearer realm="turnkit"'})
        try:
            region = self.ice.region_for(_first(query, "region"), ident.region)
        except UnknownRegion as exc:
            self.stats.refused["region"] += 1
            return json_response(400, {"error": str(exc)})
        return ident, region

    def _upgrade(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response | None:
        if len(self.hub.peers) >= self.max_connections:
            self.stats.refused["capacity"] += 1
            now = time.monotonic()
            if now - self._limit_logged > 10:
                self._limit_logged = now
                log.warning(
                    "connection limit reached: %d open, RLIMIT_NOFILE allows %d; refusing new ones with 503",
                    len(self.hub.peers),
                    self.max_connections + FD_RESERVE,
                )
            return json_response(503, {"error": "server at connection limit"})
        outcome = self._authenticate(request, query)
        if isinstance(outcome, Response):
            return outcome
        conn.identity = outcome
        return None

    # HTTP routes

    async def _healthz(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response:
        return json_response(200, {"status": "ok"})

    async def _readyz(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response:
        reason = self.keys.ready() or await self.backend.ready()
        if reason is not None:
            return json_response(503, {"status": "not ready", "reason": reason})
        return json_response(200, {"status": "ready"})

    async def _metrics(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response:
        return response(200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    async def _api_ice_servers(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response:
        outcome = self._authenticate(request, query)
        if isinstance(outcome, Response):
            return outcome
        ident, region = outcome
        ice = self.ice.issue(ident.user, region)
        return json_response(200, {"iceServers": ice.servers, "ttl": ice.ttl, "expiresAt": ice.expires_at})

    async def _api_turn(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response:
        """draft-uberti-behave-turn-rest-00 §2.1/§2.2; the user id is the token's `sub`."""
        outcome = self._authenticate(request, query)
        if isinstance(outcome, Response):
            return outcome
        ident, region = outcome
        service = _first(query, "service") or "turn"
        if service != "turn":
            return json_response(400, {"error": "service: must be `turn`"})
        username = _first(query, "username") or ident.user
        if username != ident.user:
            return json_response(403, {"error": "username: must be the token's subject"})
        return json_response(200, self.ice.turn_rest(ident.user, region))

    async def _index(self, conn: Connection, request: Request, query: dict[str, list[str]]) -> Response:
        return self._static("index.html")

    def _static(self, name: str) -> Response:
        if not STATIC_NAME.fullmatch(name):
            return json_response(404, {"error": "not found"})
        base = self.static_dir.resolve()
        path = (base / name).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return json_response(404, {"error": "not found"})
        try:
            body = path.read_bytes()
        except OSError:
            return json_response(404, {"error": "not found"})
        ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return response(200, body, ctype, {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # Metrics

    def _count_credential(self) -> None:
        self.stats.credentials += 1

    def _gauges(self) -> dict[str, tuple[str, float]]:
        return {
            "connections": ("Open WebSocket connections.", len(self.hub.peers)),
            "rooms": ("Rooms with members on this process.", len(self.hub.view.rooms)),
        }


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def run(server: SignalingServer) -> None:
    """Run a server to completion on uvloop."""
    import uvloop

    uvloop.run(server.run())
