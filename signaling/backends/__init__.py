"""Fan-out backends: where room membership lives and how frames reach members on other processes.

Like python-socketio's managers, the transport is pluggable behind one small interface. Calls are
fire-and-forget and keep their order per process; outcomes come back through the `Events` callbacks
(synchronously for the in-memory backend, from the Redis pub/sub reader for the Redis backend).
"""

from __future__ import annotations

from typing import Protocol

from signaling.rooms import Joined

#: The owner of a parked member: its connection dropped and it may come back with `?resume=` (relayed
#: frames for it are queued, up to MAX_QUEUED, dropped and counted past that).
PARKED = "-"
MAX_QUEUED = 256


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

    def moved(self, room: str, peer: str, owner: str) -> None:
        """A member of `room` changed owner: parked (`PARKED`), or resumed on process `owner`."""

    def resumed(self, temp: str, event: Joined) -> None:
        """Connection `temp` took over its old peer id `event.peer` in `event.room`."""

    def resume_failed(self, temp: str, reason: str) -> None:
        """Connection `temp` presented a resume token that is unknown, expired or someone else's."""

    def dropped(self, frames: int) -> None:
        """Frames for a parked member were dropped: its queue was full."""


class Backend(Protocol):
    """Room membership and cross-process delivery."""

    proc: str

    async def start(self, events: Events) -> None: ...

    def join(self, peer: str, room: str, capacity: int, user: str = "", token: str = "") -> None:
        """`token` (a hash of the resume token, bound to `peer` and `user`) is kept while `peer` is a member."""

    def leave(self, peer: str) -> None: ...

    def park(self, peer: str, window: float) -> None:
        """`peer` lost its connection: keep it in its room as `PARKED` for `window` seconds, then leave."""

    def resume(self, temp: str, token: str, user: str) -> None:
        """Connection `temp` (of `user`) asks for the peer bound to `token`: `Events.resumed` or `resume_failed`."""

    def forward(self, owner: str, peer: str, room: str, frame: str) -> None:
        """Deliver `frame` to `peer`, a member of `room` owned by process `owner` (not this one), or queue
        it when `owner` is `PARKED`."""

    async def ready(self) -> str | None:
        """None when the backend can serve, else a short reason anyone may read (`/readyz` is
        unauthenticated): no addresses, URLs or paths."""

    async def stop(self) -> None: ...
