"""In-process backend: one RoomTable is the authority; every member is local, events are immediate."""

from __future__ import annotations

import secrets

from signaling.backends import Events
from signaling.rooms import RoomTable


class MemoryBackend:
    """Single-process rooms; `forward` is never needed because every peer is local."""

    def __init__(self) -> None:
        self.proc = secrets.token_hex(6)
        self.table = RoomTable()
        self.events: Events | None = None

    async def start(self, events: Events) -> None:
        self.events = events

    def join(self, peer: str, room: str, capacity: int) -> None:
        assert self.events is not None
        outcome = self.table.join(peer, self.proc, room, capacity)
        if outcome is None:
            self.events.full(peer, room)
            return
        left, joined = outcome
        if left is not None:
            self.events.left(left.room, left.peer)
        self.events.joined(joined)

    def leave(self, peer: str) -> None:
        assert self.events is not None
        left = self.table.leave(peer)
        if left is not None:
            self.events.left(left.room, left.peer)

    def forward(self, owner: str, peer: str, room: str, frame: str) -> None:
        """Unreachable in one process: a member that is not local has already gone."""

    async def ready(self) -> str | None:
        return None

    async def stop(self) -> None:
        return None
