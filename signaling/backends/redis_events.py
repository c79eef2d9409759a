"""What arrives on a process's Redis channel, and the mirror of its rooms that keeps the server's view honest.

One message per PUBLISH; the first character is its `Kind`, the rest is space-separated (peer ids,
process ids and room names never contain spaces; relayed frames are JSON, which never contains a raw
newline). `Reader.dispatch` turns each message into `Events` callbacks. It also mirrors the membership of
the rooms this process has members in, exactly as the server's view is fed, so that a snapshot (`S`,
requested after a reconnect) can be compared with it: members the view has but Redis does not get
`user-left`, members Redis has but the view missed get `user-joined`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Protocol

from signaling.backends import PARKED, Events
from signaling.rooms import Joined, RoomTable

log = logging.getLogger(__name__)


class Kind(enum.StrEnum):
    """The first character of a message on a process channel."""

    DELIVER = "D"  # D <peer> <room> <frame>: one relayed frame for a local peer
    BATCH = "B"  # B\n<peer> <room> <frame>\n…: the frames of one loop tick for this process
    JOINED = "J"  # J <room> <peer> <owner>: a member joined a room this process has members in
    ADMITTED = "A"  # A <room> <peer> <owner> <again> <member>:<owner>…: a local peer's join succeeded
    LEFT = "L"  # L <room> <peer>: a member left
    SNAPSHOT = "S"  # S <room> <member>:<owner>…: a room's members in Redis, in order with the events
    MOVED = "M"  # M <room> <peer> <owner>: a member was parked (owner `-`) or resumed on process <owner>
    RESUMED = "R"  # R <temp> <peer> <room> <member>:<owner>…: a local connection took its old peer id back


class Owner(Protocol):
    """What the backend itself must learn from its channel (besides the server's `Events`)."""

    def member(self, peer: str, room: str | None) -> None:
        """A local peer is now a member of `room` (resumed), or no longer ours (None)."""

    def rerouted(self, peer: str, owner: str) -> None:
        """`peer` now lives on process `owner`: frames held for its old process should go there."""


class Reader:
    """Turns channel messages into `Events` callbacks; mirrors the rooms this process has members in."""

    def __init__(self, proc: str, events: Events, owner: Owner) -> None:
        self.proc = proc
        self.events = events
        self.owner = owner
        self.mirror = RoomTable()
        self.handlers: dict[str, Callable[[str], None]] = {
            Kind.DELIVER: self._deliver,
            Kind.BATCH: self._batch,
            Kind.JOINED: self._joined,
            Kind.ADMITTED: self._admitted,
            Kind.LEFT: self._left,
            Kind.SNAPSHOT: self._snapshot,
            Kind.MOVED: self._moved,
            Kind.RESUMED: self._resumed,
        }

    def dispatch(self, data: str) -> None:
        """Handle one message; a malformed one is logged, never raised."""
        handler = self.handlers.get(data[:1])
        try:
            if handler is None:
                raise ValueError(f"unknown kind {data[:1]!r}")
            handler(data[2:])
        except Exception:
            log.exception("bad event on the channel of process %s", self.proc)

    def rooms(self) -> list[str]:
        return list(self.mirror.rooms)

    def _deliver(self, rest: str) -> None:
        peer, room, frame = rest.split(" ", 2)
        self.events.deliver(peer, room, frame)

    def _batch(self, rest: str) -> None:
        for line in rest.split("\n"):
            self._deliver(line)

    def _joined(self, rest: str) -> None:
        room, peer, owner = rest.split(" ")
        if room in self.mirror.rooms:
            self.mirror.add(room, peer, owner)
        self.events.joined(Joined(room, peer, owner, ()))

    def _admitted(self, rest: str) -> None:
        room, peer, owner, again, *members = rest.split(" ")
        before = tuple(_pair(m) for m in members)
        if owner == self.proc:
            self.mirror.put(room, (*before, (peer, owner)))
        self.events.joined(Joined(room, peer, owner, before, again == "1"))

    def _left(self, rest: str) -> None:
        room, peer = rest.split(" ")
        self._forget(room, peer)
        self.events.left(room, peer)

    def _moved(self, rest: str) -> None:
        room, peer, owner = rest.split(" ")
        members = self.mirror.rooms.get(room)
        if members is not None and peer in members:
            members[peer] = owner
            if not any(o == self.proc for o in members.values()):
                self.mirror.drop(room)
        if owner != self.proc:
            self.owner.member(peer, None)
        if owner != PARKED:
            self.owner.rerouted(peer, owner)
        self.events.moved(room, peer, owner)

    def _resumed(self, rest: str) -> None:
        temp, peer, room, *members = rest.split(" ")
        before = tuple(_pair(m) for m in members)
        self.mirror.put(room, (*before, (peer, self.proc)))
        self.owner.member(peer, room)
        self.events.resumed(temp, Joined(room, peer, self.proc, before, again=True))

    def _forget(self, room: str, peer: str) -> None:
        if room in self.mirror.rooms:
            self.mirror.remove(room, peer)
            if not any(owner == self.proc for owner in self.mirror.rooms.get(room, {}).values()):
                self.mirror.drop(room)

    def _snapshot(self, rest: str) -> None:
        room, *members = rest.split(" ")
        seen = self.mirror.rooms.get(room)
        if seen is None:
            return
        stored = dict(_pair(m) for m in members)
        # This process's own members are restored by the process itself, never corrected from here.
        ghosts = [p for p, owner in seen.items() if p not in stored and owner != self.proc]
        missed = [(p, owner) for p, owner in stored.items() if p not in seen and owner != self.proc]
        if ghosts or missed:
            log.warning("room resync after reconnect: %d ghost, %d missed members", len(ghosts), len(missed))
        for peer in ghosts:
            self._forget(room, peer)
            self.events.left(room, peer)
        for peer, owner in missed:
            if room in self.mirror.rooms:
                self.mirror.add(room, peer, owner)
            self.events.joined(Joined(room, peer, owner, ()))


def _pair(member: str) -> tuple[str, str]:
    peer, _, owner = member.partition(":")
    return peer, owner
