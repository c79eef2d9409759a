"""Fan-out backends: where room membership lives and how frames reach members on other processes.

Like python-socketio's managers, the transport is pluggable behind one small interface. Calls are
fire-and-forget and keep their order per process; outcomes come back through the `Events` callbacks
(synchronously for the in-memory backend, from the Redis pub/sub reader for the Redis backend).
"""

from __future__ import annotations

from typing import Protocol

from signaling.rooms import Joined


class Events(Protocol):
    """What a backend reports to the server (the server's room view and local fan-out)."""

    def joined(self, event: Joined) -> None:
        """A member joined a room this process has members in (or a local peer joined)."""

    def left(self, room: str, peer: str) -> None:
        """A member left a room this process has members in."""

    def full(self, peer: str, room: str) -> None:
        """A local peer's join was refused: the room is at capacity."""

    def deliver(self, peer: str, room: str, frame: str) -> None:
        """A frame relayed from another process for a local peer (if it is still in `room`)."""

    def failed(self, peer: str, reason: str) -> None:
        """The backend could not carry out a local peer's request; the server drops the peer."""

    def lost(self) -> None:
        """This process's members were removed behind its back (it was presumed dead)."""


class Backend(Protocol):
    """Room membership and cross-process delivery."""

    proc: str

    async def start(self, events: Events) -> None: ...

    def join(self, peer: str, room: str, capacity: int) -> None: ...

    def leave(self, peer: str) -> None: ...

    def forward(self, owner: str, peer: str, room: str, frame: str) -> None:
        """Deliver `frame` to `peer`, a member of `room` owned by process `owner` (not this one)."""

    async def ready(self) -> str | None:
        """None when the backend can serve, else a short reason anyone may read (`/readyz` is
        unauthenticated): no addresses, URLs or paths."""

    async def stop(self) -> None: ...
