"""One WebSocket connection: websockets' `ServerConnection`, wired straight to the hub.

This is the one module that touches websockets internals, which is why pyproject pins
`websockets>=17,<18`: `process_event` (frames arrive here before websockets queues them),
`recv_messages` (replaced by a null queue once frames bypass it), `protocol.send_ping` and `send_data`
(synchronous writes), `protocol.state`, `transport` (text frames are framed here and written directly)
and `paused`/`resume_writing`/`drain_waiters` (asyncio flow control). A new major version must be checked against these
before the pin moves.

Frames are handed from the parser straight to the hub (no per-message task); sends are synchronous
writes with a bounded per-connection backlog, so a slow reader is dropped, never buffered without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from websockets.asyncio.connection import Connection as BaseConnection
from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED, CLOSING, OPEN, Event
from websockets.server import ServerProtocol
from websockets.typing import BytesLike

from signaling.auth import Identity
from signaling.hub import Hub, Peer
from signaling.lograte import RateLimitedLog

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)


class _NoMessages:
    """Stands in for websockets' receive queue once frames bypass it (saves ~1 KB per connection)."""

    def close(self) -> None:
        return None


NO_MESSAGES = _NoMessages()

#: FIN + text opcode, then the 16- or 64-bit extended payload length marker (RFC 6455 §5.2).
TEXT_16 = b"\x81\x7e"
TEXT_64 = b"\x81\x7f"


class Connection(ServerConnection):
    """A WebSocket connection that is also the hub's `Link` for its peer.

    Built by websockets' `serve(create_connection=...)` through a `functools.partial` that supplies
    `hub` and `send_queue` (the documented "wrapper" form of that hook).
    """

    # Slots, not instance-dict entries: websockets' own attributes nearly fill the instance dict's shared
    # keys (30 in CPython 3.11); seven more would give every connection its own ~1.5 KB dict.
    __slots__ = ("backlog", "closer", "fragments", "hub", "identity", "peer", "send_queue")

    def __init__(self, protocol: ServerProtocol, server: Server, *, hub: Hub, send_queue: int, **kw: Any) -> None:
        super().__init__(protocol, server, **kw)
        # websockets only appends, removes and iterates here: an empty list is 56 bytes, a deque ~600.
        self.drain_waiters = []  # type: ignore[assignment]
        self.hub = hub
        self.send_queue = send_queue
        self.peer: Peer | None = None
        self.identity: tuple[Identity, str | None] | None = None  # set by the upgrade gate
        self.resume: str | None = None  # `?resume=` of the upgrade request
        self.backlog: collections.deque[str] | None = None
        self.fragments: tuple[bool, list[BytesLike]] | None = None
        self.closer: asyncio.Task[None] | None = None

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
            self.hub.on_frame(peer, data if isinstance(data, bytes) else bytes(data), binary)
        except Exception as exc:
            # The hub answers every input with a frame (fuzz-tested); should that ever fail, a client
            # must still not be able to fill the log: one line, no traceback, rate-limited.
            warn.warning("frame-handler", "frame handler failed for peer %s: %s", peer.id, type(exc).__name__)

    # Outgoing: the hub's Link.

    def push(self, frame: str) -> None:
        if self.protocol.state is not OPEN:
            if self.peer is not None and self.protocol.state in (CLOSING, CLOSED):
                self.hub.spill(self.peer, frame)  # closing for a restart: deliver it after the resume
            return
        if self.paused or self.backlog:
            if self.backlog is None:
                self.backlog = collections.deque()
            if len(self.backlog) >= self.send_queue:
                self._overflow()
                return
            self.backlog.append(frame)
            return
        self._write(frame)

    def _write(self, frame: str) -> None:
        """One unfragmented, unmasked text frame (RFC 6455 §5.2) straight to the transport.

        What `protocol.send_text` + `send_data` would write (no extensions are negotiated:
        `compression=None`), without building a `Frame`. Only called while the state is OPEN, so no
        close frame has been queued before it; frames websockets queued itself (pongs) are whole
        frames too, so the order between them does not matter.
        """
        data = frame.encode()
        size = len(data)
        if size < 126:
            header = bytes((0x81, size))
        elif size < 65536:
            header = TEXT_16 + size.to_bytes(2, "big")
        else:
            header = TEXT_64 + size.to_bytes(8, "big")
        try:
            self.transport.write(header + data)
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
            peer.closing = peer.evicted = True
            self.hub.stats.closed["slow-reader"] += 1
            log.warning("peer %s does not read fast enough (send queue full); disconnecting", peer.id)
        self.backlog = None
        self.transport.abort()

    def ping_now(self) -> None:
        """Send a keepalive ping (RFC 6455 §5.5.2); any frame back counts as an answer."""
        if self.protocol.state is OPEN:
            self.protocol.send_ping(b"tk")
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
            # Closed by the client with 1000 (RFC 6455 §7.4.1): it hung up; anything else may resume.
            rcvd = self.protocol.close_rcvd
            clean = rcvd is not None and rcvd.code == 1000 and bool(self.protocol.close_rcvd_then_sent)
            self.hub.disconnect(self.peer, clean)
