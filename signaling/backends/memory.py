"""In-process backend: one RoomTable is the authority; every member is local, events are immediate.

Parked members (connection lost, resume possible) stay in the table with owner `PARKED` until their
window ends. With a `state_file`, the parked members, their rooms and queued frames are written there
at shutdown (every member is parked by then) and read back at start, so a restarted process lets its
clients resume (docs/signaling.md "Session resume").
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from signaling.backends import MAX_QUEUED, PARKED, Events
from signaling.rooms import Joined, RoomTable

log = logging.getLogger(__name__)

UNKNOWN_TOKEN = "unknown or expired resume token"
OTHER_USER = "resume token belongs to another user"


@dataclass
class Parked:
    """A member without a connection: when it leaves for good (wall clock) and what waits for it."""

    deadline: float
    frames: collections.deque[str] = field(default_factory=collections.deque)
    timer: asyncio.TimerHandle | None = None


class MemoryBackend:
    """Single-process rooms; `forward` only queues for parked members (every live peer is local)."""

    def __init__(self, state_file: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.proc = secrets.token_hex(6)
        self.table = RoomTable()
        self.events: Events | None = None
        self.state_file = state_file
        self.clock = clock
        self.tokens: dict[str, tuple[str, str]] = {}  # token hash → (peer, user)
        self.token_of: dict[str, str] = {}  # peer → token hash
        self.parked: dict[str, Parked] = {}

    async def start(self, events: Events) -> None:
        self.events = events
        if self.state_file is not None:
            self._load(self.state_file)

    def join(self, peer: str, room: str, capacity: int, user: str = "", token: str = "") -> None:
        assert self.events is not None
        outcome = self.table.join(peer, self.proc, room, capacity)
        if outcome is None:
            self.events.full(peer, room)
            return
        left, joined = outcome
        if token and peer not in self.token_of:
            self.tokens[token] = (peer, user)
            self.token_of[peer] = token
        if left is not None:
            self.events.left(left.room, left.peer)
        self.events.joined(joined)

    def leave(self, peer: str) -> None:
        assert self.events is not None
        self._forget(peer)
        left = self.table.leave(peer)
        if left is not None:
            self.events.left(left.room, left.peer)

    def _forget(self, peer: str) -> None:
        token = self.token_of.pop(peer, None)
        if token is not None:
            self.tokens.pop(token, None)
        parked = self.parked.pop(peer, None)
        if parked is not None and parked.timer is not None:
            parked.timer.cancel()

    def park(self, peer: str, window: float) -> None:
        assert self.events is not None
        room = self.table.room_of(peer)
        if room is None:
            return
        if peer not in self.token_of or window <= 0:
            self.leave(peer)
            return
        self.table.rooms[room][peer] = PARKED
        self.parked[peer] = parked = Parked(self.clock() + window)
        parked.timer = asyncio.get_running_loop().call_later(window, self._expire, peer)
        self.events.moved(room, peer, PARKED)

    def _expire(self, peer: str) -> None:
        parked = self.parked.get(peer)
        if parked is not None:
            parked.timer = None
            if parked.frames:
                log.info("parked peer %s did not come back: %d queued frames dropped", peer, len(parked.frames))
            self.leave(peer)

    def resume(self, temp: str, token: str, user: str) -> None:
        assert self.events is not None
        bound = self.tokens.get(token)
        room = self.table.room_of(bound[0]) if bound is not None else None
        if bound is None or room is None:
            self.events.resume_failed(temp, UNKNOWN_TOKEN)
            return
        peer, owner_user = bound
        if owner_user != user:
            self.events.resume_failed(temp, OTHER_USER)
            return
        parked = self.parked.pop(peer, None)
        if parked is not None and parked.timer is not None:
            parked.timer.cancel()
        members = self.table.rooms[room]
        members[peer] = self.proc
        before = tuple((p, o) for p, o in members.items() if p != peer)
        self.events.resumed(temp, Joined(room, peer, self.proc, before, again=True))
        self.events.moved(room, peer, self.proc)
        for frame in parked.frames if parked is not None else ():
            self.events.deliver(peer, room, frame)

    def forward(self, owner: str, peer: str, room: str, frame: str) -> None:
        """Only parked members are ever not local here: their frames wait in a bounded queue."""
        parked = self.parked.get(peer)
        if owner != PARKED or parked is None or self.table.room_of(peer) != room:
            return
        if len(parked.frames) >= MAX_QUEUED:
            assert self.events is not None
            self.events.dropped(1)
            return
        parked.frames.append(frame)

    async def ready(self) -> str | None:
        return None

    async def stop(self) -> None:
        for parked in self.parked.values():
            if parked.timer is not None:
                parked.timer.cancel()
        if self.state_file is not None and self.parked:
            self._save(self.state_file)

    # The state file: parked members survive a restart of this process.

    def _save(self, path: Path) -> None:
        rooms = {room: list(members) for room, members in self.table.rooms.items()}
        parked = {
            peer: {"deadline": p.deadline, "frames": list(p.frames), "token": self.token_of.get(peer, "")}
            for peer, p in self.parked.items()
        }
        users = {peer: self.tokens[token][1] for peer, token in self.token_of.items() if token in self.tokens}
        doc = {"version": 1, "rooms": rooms, "parked": parked, "users": users}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out)
        os.replace(tmp, path)
        log.info("saved %d parked members to %s for resume after restart", len(parked), path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
            path.unlink()  # used once: a later crash must not bring back stale sessions
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("cannot read resume state %s: %s", path, type(exc).__name__)
            return
        try:
            self._restore(json.loads(text))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            for parked in self.parked.values():
                if parked.timer is not None:
                    parked.timer.cancel()
            self.table, self.tokens, self.token_of, self.parked = RoomTable(), {}, {}, {}
            log.warning("ignoring resume state %s: %s", path, type(exc).__name__)
            return
        log.info("restored %d parked members from %s", len(self.parked), path)

    def _restore(self, doc: object) -> None:
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("unknown format")
        now, loop = self.clock(), asyncio.get_running_loop()
        parked_doc: dict[str, dict[str, object]] = doc.get("parked", {})
        users: dict[str, str] = doc.get("users", {})
        for room, members in doc.get("rooms", {}).items():
            for peer in members:
                info = parked_doc.get(peer)
                if info is None:
                    continue
                deadline, token = float(str(info["deadline"])), str(info["token"])
                if deadline <= now or not token:
                    continue
                self.table.add(room, peer, PARKED)
                self.tokens[token] = (peer, users.get(peer, ""))
                self.token_of[peer] = token
                frames = info.get("frames")
                queued = collections.deque(str(f) for f in frames) if isinstance(frames, list) else None
                entry = self.parked[peer] = Parked(deadline, queued or collections.deque())
                entry.timer = loop.call_later(deadline - now, self._expire, peer)
