"""A test client that behaves like turnkit-client.js: joins a room, relays numbered offers to its
partner, and on any connection loss reconnects (backoff with jitter, trying each instance in turn) with
`?resume=`. It records what it sent and received, every disconnect, and how long each resume took."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers.signaling import make_token

BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0


@dataclass
class Member:
    sub: str
    room: str
    ports: list[int]
    interval: float = 0.05
    id: str | None = None
    partner: str | None = None
    token: str | None = None
    ws: ClientConnection | None = None
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    #: (seq, monotonic send time)
    sent: list[tuple[int, float]] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    resume_latency: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)
    #: anything unexpected: user-left, user-joined after pairing, errors, a changed peer id
    anomalies: list[str] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    sending: bool = True
    stopped: bool = False

    async def run(self) -> None:
        attempt, lost_at = 0, 0.0
        while not self.stopped:
            port = self.ports[attempt % len(self.ports)]
            query = f"token={make_token(self.sub)}" + (f"&resume={self.token}" if self.token else "")
            try:
                async with connect(f"ws://127.0.0.1:{port}/ws?{query}", open_timeout=5) as ws:
                    if self.token is None:
                        await ws.send(json.dumps({"type": "join-room", "room": self.room}))
                    attempt = 0
                    await self._read(ws, lost_at)
            except Exception as exc:  # refused, reset, closed: an instance is restarting
                self.errors[type(exc).__name__] += 1
            if self.ws is not None:
                self.ws = None
                lost_at = time.monotonic()
                self.disconnects.append(lost_at)
            if self.stopped:
                return
            delay = min(BACKOFF_FIRST * 2**attempt, BACKOFF_MAX)
            attempt += 1
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _read(self, ws: ClientConnection, lost_at: float) -> None:
        async for frame in ws:
            msg: dict[str, Any] = json.loads(frame)
            kind = msg["type"]
            if kind == "all-users":
                self.ws = ws  # usable (and counted as connected) once the server answered as us
                if self.id is None:
                    self.id, self.token = msg["you"], msg["resume"]
                    if msg["users"]:
                        self.partner = msg["users"][0]
                        self.joined.set()
                else:
                    if msg["you"] != self.id or not msg.get("resumed"):
                        self.anomalies.append(f"came back as {msg['you']} (was {self.id})")
                    now = time.monotonic()
                    self.resume_latency.append(now - lost_at)
                    self.resumed_at.append(now)
            elif kind == "user-joined" and self.partner is None:
                self.partner = msg["id"]
                self.joined.set()
            elif kind == "offer":
                self.received.append(int(msg["sdp"]["sdp"].removeprefix("seq:")))
            elif kind == "ice-servers" or self.stopped:
                continue
            else:
                self.anomalies.append(json.dumps(msg)[:200])

    async def send_loop(self) -> None:
        await self.joined.wait()
        seq = 0
        while not self.stopped:
            await asyncio.sleep(self.interval)
            ws = self.ws
            if not self.sending or ws is None or self.partner is None:
                continue
            frame = {"type": "offer", "to": self.partner, "sdp": {"type": "offer", "sdp": f"seq:{seq}"}}
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps(frame))
                self.sent.append((seq, time.monotonic()))
                seq += 1

    def must_have_arrived(self, guard: float, crashes: list[float]) -> list[int]:
        """Sequence numbers sent while this member's connection was steady (no disconnect of the sender,
        and no crash of any instance, within `guard` seconds after the send): the server had them before
        anything went down. Frames sent while the receiver was away are included: they were queued."""
        return [s for s, t in self.sent if not any(t <= d <= t + guard for d in (*self.disconnects, *crashes))]
