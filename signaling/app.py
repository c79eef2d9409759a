"""The signaling server's lifecycle, as in uvicorn: `startup()`, `main_loop()`, `shutdown()`.

`startup()` raises the open-files limit, loads secrets, keys and the backend (`signaling.core.load`) and
starts listening with websockets + uvloop; `main_loop()` runs until SIGTERM/SIGINT; `shutdown()` closes
every connection with 1001 (going away). The layers below: `routes` (HTTP routes and the upgrade
gate), `connection` (one WebSocket connection, the only user of websockets internals), `hub` (frames,
rooms, ICE pushes; transport-free).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import resource
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from websockets.asyncio.server import Server, ServerConnection, serve

from signaling import origins
from signaling.backends import Backend
from signaling.connection import Connection
from signaling.core import Core, load
from signaling.hub import Hub, Limits
from signaling.ice import IceProvider
from signaling.metrics import Stats
from signaling.responses import STATIC_DIR, StaticFiles
from signaling.routes import FD_RESERVE, Routes
from turnkit.config import Config
from turnkit.errors import DaemonError

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0


def limits_for(cfg: Config) -> Limits:
    """Per-room and per-connection limits from `[signaling]`."""
    s = cfg.signaling
    return Limits(
        capacity=s.room_capacity,
        max_frame=s.max_frame_bytes,
        rate=s.rate_limit,
        burst=s.rate_burst,
        refresh_margin=float(s.refresh_margin),
        per_user=s.max_connections_per_user,
        resume_window=float(s.resume_window),
    )


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
        self.static = StaticFiles(static_dir)
        self.ping_interval = ping_interval
        limits = limits_for(cfg)
        self.limits = limits if push_floor is None else dataclasses.replace(limits, push_floor=push_floor)
        self.stats = Stats()
        self.stop_event = asyncio.Event()
        self.core: Core | None = None
        self.server: Server | None = None
        self.pinger: asyncio.Task[None] | None = None

    @property
    def hub(self) -> Hub:
        assert self.core is not None, "server not started"
        return self.core.hub

    @property
    def backend(self) -> Backend:
        assert self.core is not None, "server not started"
        return self.core.backend

    @property
    def ice(self) -> IceProvider:
        assert self.core is not None, "server not started"
        return self.core.ice

    # Lifecycle

    async def startup(self) -> None:
        """Load secrets and keys, start the backend, listen. Raises TurnkitError on bad setup."""
        # A fixed port names this instance: its parked sessions survive a restart (memory backend).
        instance = str(self.port) if self.port else None
        core = self.core = load(self.cfg, self.env, self.limits, self.stats, asyncio.get_running_loop(), instance)
        max_connections = raise_fd_limit() - FD_RESERVE
        await core.backend.start(core.hub)
        routes = Routes(core, self.stats, self.static, max_connections)
        try:
            self.server = await self._listen(routes)
        except OSError as exc:
            core.hub.close()
            await core.backend.stop()
            raise DaemonError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = self.server.sockets[0].getsockname()[1]
        routes.origins = origins.allowed(self.cfg, self.host, self.port)
        if self.ping_interval is not None:
            self.pinger = asyncio.create_task(self._keepalive(self.ping_interval))
        log.info(
            "signaling listening on %s:%d (backend %s, process %s, up to %d connections)",
            self.host,
            self.port,
            type(core.backend).__name__,
            core.backend.proc,
            max_connections,
        )

    async def _listen(self, routes: Routes) -> Server:
        assert self.core is not None
        # websockets types `create_connection` as a class but documents (and calls) it as a factory.
        factory = functools.partial(Connection, hub=self.core.hub, send_queue=self.cfg.signaling.send_queue)
        return await serve(
            self._handler,
            self.host,
            self.port,
            process_request=routes.process_request,
            process_response=routes.process_response,
            create_connection=cast(type[ServerConnection], factory),
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
        if self.core is not None:
            self.core.hub.close()
            await self.core.backend.stop()
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

    # Per connection: the handshake is done; the hub gets frames until the connection closes.

    async def _handler(self, conn: ServerConnection) -> None:
        assert isinstance(conn, Connection)
        conn.settle()
        await conn.wait_closed()

    async def _keepalive(self, interval: float) -> None:
        """One sweep for all connections: ping each; drop those silent since the previous sweep."""
        hub = self.hub
        while True:
            await asyncio.sleep(interval)
            for peer in list(hub.peers.values()):
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


def raise_fd_limit() -> int:
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
