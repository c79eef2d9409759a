"""Room bookkeeping: who is in which room, oldest first, and which process owns each member. No I/O.

The in-memory backend uses a `RoomTable` as the authority (`join`/`leave`); every server also keeps one
as its *view* of the rooms its local connections are in (`put`/`add`/`remove`), fed by backend events.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Joined:
    """`peer` (owned by process `owner`) is now in `room`; `before` = the other members, oldest first."""

    room: str
    peer: str
    owner: str
    before: tuple[tuple[str, str], ...]
    again: bool = False


@dataclass(frozen=True, slots=True)
class Left:
    """`peer` left `room`; `remaining` = the members still there."""

    room: str
    peer: str
    remaining: tuple[tuple[str, str], ...]


class RoomTable:
    """room → {peer: owner} in join order; peer → room. A peer is in at most one room."""

    __slots__ = ("rooms", "where")

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, str]] = {}
        self.where: dict[str, str] = {}

    def room_of(self, peer: str) -> str | None:
        return self.where.get(peer)

    def join(self, peer: str, owner: str, room: str, capacity: int) -> tuple[Left | None, Joined] | None:
        """Move `peer` into `room` (leaving its previous room); None when `room` is full."""
        members = self.rooms.get(room, {})
        if peer in members:
            others = tuple((p, o) for p, o in members.items() if p != peer)
            return None, Joined(room, peer, owner, others, again=True)
        if len(members) >= capacity:
            return None
        left = self.leave(peer)
        before = tuple(self.rooms.get(room, {}).items())
        self.add(room, peer, owner)
        return left, Joined(room, peer, owner, before)

    def leave(self, peer: str) -> Left | None:
        room = self.where.get(peer)
        if room is None:
            return None
        self.remove(room, peer)
        return Left(room, peer, tuple(self.rooms.get(room, {}).items()))

    def put(self, room: str, members: tuple[tuple[str, str], ...]) -> None:
        """Replace a room's membership with an authoritative list (oldest first)."""
        for peer in self.rooms.get(room, {}):
            if self.where.get(peer) == room:
                del self.where[peer]
        self.rooms[room] = dict(members)
        for peer, _ in members:
            self.where[peer] = room

    def add(self, room: str, peer: str, owner: str) -> None:
        self.rooms.setdefault(room, {})[peer] = owner
        self.where[peer] = room

    def remove(self, room: str, peer: str) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.pop(peer, None)
            if not members:
                del self.rooms[room]
        if self.where.get(peer) == room:
            del self.where[peer]

    def drop(self, room: str) -> None:
        """Forget a room entirely (the view does this once no local member is left in it)."""
        for peer in self.rooms.pop(room, {}):
            if self.where.get(peer) == room:
                del self.where[peer]
