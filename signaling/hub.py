"""The frame handler: per-connection state, rate limiting, the relay hot path, room events, ICE pushes.

Transport-free: a connection is a `Link` (send a text frame, close with a code). Membership changes go
through the backend; its outcomes come back as `Events` callbacks, which update this process's view of
its rooms and fan out to local members.

Session resume (docs/signaling.md): a connection that drops while in a room is *parked* by the backend
(its peer id stays in the room for `Limits.resume_window` seconds, frames for it are queued); a new
connection with `?resume=TOKEN` of the same JWT `sub` takes the old peer id back, and the other members
see neither `user-left` nor `user-joined`.

Memory per user is bounded: at most `Limits.per_user` connections per JWT `sub`, and at most one ICE
push timer per connection (replaced when a new set is issued, cancelled on leave and on disconnect).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from signaling import protocol
from signaling.backends import MAX_QUEUED, PARKED, Backend
from signaling.ice import IceProvider, IceSet
from signaling.lograte import RateLimitedLog
from signaling.metrics import Stats
from signaling.protocol import Code, FrameError
from signaling.rooms import Joined, RoomTable
from signaling.schedule import MIN_PUSH_DELAY, push_at

log = logging.getLogger(__name__)
warn = RateLimitedLog(log)

#: WebSocket close codes (RFC 6455 §7.4.1).
POLICY_VIOLATION = 1008
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

#: What `?resume=` may look like (`secrets.token_urlsafe(24)` makes 32 of these characters).
RESUME_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def token_hash(token: str) -> str:
    """What backends store for a resume token: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class Link(Protocol):
    """The transport side of one connection."""

    def push(self, frame: str) -> None: ...

    def drop(self, code: int, reason: str) -> None: ...


class Peer:
    """One connection's state; `id` is random and unguessable, `user` is the JWT `sub`."""

    __slots__ = (
        "closing",
        "evicted",
        "id",
        "joining",
        "link",
        "region",
        "room",
        "seen",
        "spilled",
        "stamp",
        "token",
        "tokens",
        "user",
        "warned",
    )

    def __init__(self, peer_id: str, user: str, region: str | None, link: Link, burst: float, now: float) -> None:
        self.id = peer_id
        self.user = user
        self.region = region
        self.link = link
        self.room: str | None = None
        self.joining = False
        self.closing = False
        self.evicted = False  # closed for a policy reason (rate, slow reader): never parked
        self.tokens = burst
        self.stamp = now
        self.warned = False
        self.seen = True  # anything received since the last keepalive sweep (the transport sets it)
        self.token = secrets.token_urlsafe(24)  # the resume token, sent in `all-users`
        self.spilled: list[str] | None = None  # frames that came while the connection was closing

    def __repr__(self) -> str:
        return f"Peer(id={self.id!r}, room={self.room!r})"


@dataclass(frozen=True)
class Limits:
    """Per-room and per-connection limits (from `[signaling]`)."""

    capacity: int = 2
    max_frame: int = 64 * 1024
    rate: float = 50.0
    burst: int = 100
    refresh_margin: float = 300.0
    push_floor: float = MIN_PUSH_DELAY
    per_user: int = 20
    resume_window: float = 30.0


class Hub:
    """All connections of this process; implements the backend `Events` callbacks."""

    def __init__(
        self,
        limits: Limits,
        ice: IceProvider,
        backend: Backend,
        stats: Stats,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.ice = ice
        self.backend = backend
        self.stats = stats
        self.loop = loop
        self.clock = clock
        self.peers: dict[str, Peer] = {}
        self.view = RoomTable()
        #: peer id → its one pending ICE push; nothing else holds a timer.
        self.pushes: dict[str, asyncio.TimerHandle] = {}
        #: JWT `sub` → open connections of that user (absent at zero).
        self.users: dict[str, int] = {}
        #: Peers of this process whose connection dropped while in a room (parked, may resume).
        self.parked: set[str] = set()
        self.handlers: dict[str, Callable[[Peer, str, dict[str, Any]], None]] = {
            "join-room": self._join,
            "leave-room": self._leave,
            "ice-servers": self._ice_servers,
            "offer": self._relay,
            "answer": self._relay,
            "ice-candidate": self._relay,
        }

    # Connections

    def connect(self, user: str, region: str | None, link: Link, resume: str | None = None) -> Peer:
        """Register a connection; one over the user's limit is closed with 1008 right away. With `resume`
        the connection asks for its old peer id back (answered by `all-users` or a `resume-failed` error)."""
        peer = Peer(secrets.token_urlsafe(16), user, region, link, float(self.limits.burst), self.clock())
        self.peers[peer.id] = peer
        self.stats.connections_total += 1
        count = self.users[user] = self.users.get(user, 0) + 1
        if count > self.limits.per_user:
            self._close(peer, POLICY_VIOLATION, "too many connections for this user", "user-limit")
        elif resume is not None:
            peer.joining = True
            # Called during the handshake: answer once the connection is open.
            self.loop.call_soon(self._resume, peer, resume)
        return peer

    def _resume(self, peer: Peer, token: str) -> None:
        if peer.closing:
            return
        if RESUME_TOKEN.fullmatch(token) is None:
            self.resume_failed(peer.id, "malformed resume token")
        else:
            peer.token = token
            self.backend.resume(peer.id, token_hash(token), peer.user)

    def disconnect(self, peer: Peer, clean: bool = False) -> None:
        """The connection is gone; a member is parked for resume unless it closed cleanly (code 1000)."""
        if not self._forget(peer):
            return
        if peer.room is not None and not (clean or peer.evicted) and self.limits.resume_window > 0:
            self.parked.add(peer.id)
            self.backend.park(peer.id, self.limits.resume_window)
            for frame in peer.spilled or ():
                self.backend.forward(PARKED, peer.id, peer.room, frame)
        elif peer.room is not None or peer.joining:
            self.backend.leave(peer.id)

    def spill(self, peer: Peer, frame: str) -> None:
        """A frame for a connection that is closing (say, for a restart): keep it for after the resume."""
        if peer.room is None or peer.evicted:
            return
        if peer.spilled is None:
            peer.spilled = []
        if len(peer.spilled) < MAX_QUEUED:
            peer.spilled.append(frame)
        else:
            self.stats.queue_dropped += 1

    def _forget(self, peer: Peer) -> bool:
        if self.peers.get(peer.id) is not peer:
            return False
        del self.peers[peer.id]
        peer.closing = True
        self._cancel_push(peer.id)
        left = self.users.get(peer.user, 1) - 1
        if left > 0:
            self.users[peer.user] = left
        else:
            self.users.pop(peer.user, None)
        return True

    def on_frame(self, peer: Peer, data: str | bytes, binary: bool = False) -> None:
        """Handle one client frame; never raises for any input (errors become `error` frames)."""
        if peer.closing:
            return
        lim = self.limits
        now = self.clock()
        tokens = peer.tokens + (now - peer.stamp) * lim.rate
        peer.stamp = now
        if tokens >= lim.burst:
            tokens = float(lim.burst)
            peer.warned = False
        if tokens < 1.0:
            peer.tokens = tokens
            if peer.warned:
                self._close(peer, POLICY_VIOLATION, "rate limit exceeded", "rate-limit")
            else:
                peer.warned = True
                self._error(peer, FrameError(Code.RATE_LIMITED))
            return
        peer.tokens = tokens - 1.0
        try:
            kind, msg = protocol.parse(data, binary)
            self.handlers[kind](peer, kind, msg)
        except FrameError as exc:
            self._error(peer, exc)

    def _error(self, peer: Peer, exc: FrameError) -> None:
        self.stats.errors[exc.code] += 1
        peer.link.push(exc.frame())

    def _close(self, peer: Peer, code: int, reason: str, why: str) -> None:
        peer.closing = peer.evicted = True
        self.stats.closed[why] += 1
        warn.warning(why, "closing peer %s: %s", peer.id, reason)
        peer.link.drop(code, reason)

    # Client messages

    def _relay(self, peer: Peer, kind: str, msg: dict[str, Any]) -> None:
        room = peer.room
        if room is None:
            raise FrameError(Code.NOT_IN_ROOM, ref=kind)
        to = msg["to"]
        members = self.view.rooms.get(room)
        owner = members.get(to) if members is not None and to != peer.id else None
        if owner is None:
            raise FrameError(Code.UNKNOWN_PEER, ref=kind)
        frame = protocol.relay(kind, peer.id, msg)
        limit = self.limits.max_frame
        if len(frame) > limit or (not frame.isascii() and len(frame.encode()) > limit):
            raise FrameError(Code.TOO_LARGE, ref=kind)
        self.stats.relayed[kind] += 1
        target = self.peers.get(to)
        if target is not None:
            target.link.push(frame)
        else:
            self.backend.forward(owner, to, room, frame)

    def _join(self, peer: Peer, kind: str, msg: dict[str, Any]) -> None:
        peer.joining = True
        self.backend.join(peer.id, msg["room"], self.limits.capacity, peer.user, token_hash(peer.token))

    def _leave(self, peer: Peer, kind: str, msg: dict[str, Any]) -> None:
        if peer.room is None:
            raise FrameError(Code.NOT_IN_ROOM, ref=kind)
        self.backend.leave(peer.id)

    def _ice_servers(self, peer: Peer, kind: str, msg: dict[str, Any]) -> None:
        ice = self.ice.issue(peer.user, peer.region)
        peer.link.push(protocol.ice_servers(ice.servers, ice.expires_at, ice.turn))
        if peer.room is not None:
            self._schedule(peer, ice)

    # ICE pushes: one timer per connection in a room, for the set it was issued last.

    def _schedule(self, peer: Peer, ice: IceSet) -> None:
        """(Re)arm the peer's push: a newer set replaces the pending push, it never adds one."""
        self._cancel_push(peer.id)
        wall = self.ice.clock()
        delay = push_at(wall, ice.expires_at, self.limits.refresh_margin, self.limits.push_floor) - wall
        self.pushes[peer.id] = self.loop.call_later(max(0.0, delay), self._push, peer.id)

    def _cancel_push(self, peer_id: str) -> None:
        handle = self.pushes.pop(peer_id, None)
        if handle is not None:
            handle.cancel()

    def _push(self, peer_id: str) -> None:
        self.pushes.pop(peer_id, None)
        peer = self.peers.get(peer_id)
        if peer is None or peer.closing or peer.room is None:
            return
        try:
            ice = self.ice.issue(peer.user, peer.region)
        except Exception as exc:
            warn.warning("ice-push", "ICE push for peer %s failed: %s", peer.id, exc)
            return
        peer.link.push(protocol.ice_servers(ice.servers, ice.expires_at, ice.turn))
        self._schedule(peer, ice)

    # Backend events

    def joined(self, event: Joined) -> None:
        local = self.peers.get(event.peer) if event.owner == self.backend.proc else None
        if local is not None:
            self.view.put(event.room, (*event.before, (event.peer, event.owner)))
            local.room, local.joining = event.room, False
            ice = self.ice.issue(local.user, local.region)
            users = [p for p, _ in event.before]
            frame = protocol.all_users(event.room, event.peer, users, ice.servers, ice.expires_at, local.token)
            local.link.push(frame)
            self._schedule(local, ice)
        elif event.room in self.view.rooms:
            self.view.add(event.room, event.peer, event.owner)
        else:
            return
        if not event.again:
            self._fan_out(event.room, protocol.user_joined(event.peer), event.peer)

    def moved(self, room: str, peer: str, owner: str) -> None:
        members = self.view.rooms.get(room)
        if members is not None and peer in members:
            members[peer] = owner
        if owner == PARKED:
            if members is not None and not any(m in self.peers for m in members):
                self.view.drop(room)  # no local member left to fan out to; a resume puts it back
            return
        local = self.peers.get(peer)
        if local is not None and owner != self.backend.proc:
            # The same session resumed on another process: this connection is stale. No leave.
            self._forget(local)
            self.parked.discard(peer)
            self.stats.closed["resumed-elsewhere"] += 1
            local.link.drop(POLICY_VIOLATION, "session resumed on another connection")

    def resumed(self, temp: str, event: Joined) -> None:
        local = self.peers.get(temp)
        if local is None or local.closing:  # gone again before the answer came: park it once more
            self.backend.park(event.peer, self.limits.resume_window)
            return
        stale = self.peers.get(event.peer)
        if stale is not None:  # the old connection of this session is still open here
            self._forget(stale)
            self.stats.closed["resumed-elsewhere"] += 1
            stale.link.drop(POLICY_VIOLATION, "session resumed on another connection")
        del self.peers[temp]
        local.id = event.peer
        self.peers[local.id] = local
        self.parked.discard(local.id)
        self.stats.resumes["ok"] += 1
        self.view.put(event.room, (*event.before, (event.peer, event.owner)))
        local.room, local.joining = event.room, False
        ice = self.ice.issue(local.user, local.region)
        users = [p for p, _ in event.before]
        local.link.push(
            protocol.all_users(event.room, local.id, users, ice.servers, ice.expires_at, local.token, resumed=True)
        )
        self._schedule(local, ice)

    def resume_failed(self, temp: str, reason: str) -> None:
        self.stats.resumes["refused"] += 1
        local = self.peers.get(temp)
        if local is not None:
            local.joining = False
            local.token = secrets.token_urlsafe(24)
            self._error(local, FrameError(Code.RESUME_FAILED, f"{reason}; join again", "resume"))

    def dropped(self, frames: int) -> None:
        self.stats.queue_dropped += frames

    def left(self, room: str, peer: str) -> None:
        self.parked.discard(peer)
        local = self.peers.get(peer)
        if local is not None and local.room == room:
            local.room = None
            self._cancel_push(peer)
        if room not in self.view.rooms:
            return
        self.view.remove(room, peer)
        if room in self.view.rooms and not self._fan_out(room, protocol.user_left(peer), peer):
            self.view.drop(room)

    def _fan_out(self, room: str, frame: str, skip: str) -> bool:
        """Send `frame` to the local members of `room` except `skip`; False if there were none."""
        any_local = False
        for member in self.view.rooms.get(room, ()):
            target = self.peers.get(member)
            if target is not None and member != skip:
                target.link.push(frame)
                any_local = True
        return any_local

    def full(self, peer: str, room: str) -> None:
        local = self.peers.get(peer)
        if local is not None:
            local.joining = False
            self._error(local, FrameError(Code.ROOM_FULL, f"room `{room}` is full", "join-room"))

    def deliver(self, peer: str, room: str, frame: str) -> None:
        local = self.peers.get(peer)
        if local is not None and local.room == room:
            local.link.push(frame)
        elif local is None and peer in self.parked:  # sent before the sender learnt it was parked
            self.backend.forward(PARKED, peer, room, frame)

    def failed(self, peer: str, reason: str) -> None:
        local = self.peers.get(peer)
        if local is not None and not local.closing:
            self._close(local, TRY_AGAIN_LATER, reason, "backend")

    def lost(self) -> None:
        for peer in list(self.peers.values()):
            if (peer.room is not None or peer.joining) and not peer.closing:
                self._close(peer, SERVICE_RESTART, "membership lost; reconnect", "membership-lost")
                peer.evicted = False  # its member was parked by the reaper: the client may resume

    def close(self) -> None:
        for handle in self.pushes.values():
            handle.cancel()
        self.pushes.clear()
