"""An aiortc peer that speaks turnkit signaling v1 over a real WebSocket: for end-to-end call tests.

Like the demo page, the newcomer (non-empty `users` in `all-users`) offers and the other side answers;
ICE servers come from `all-users`; candidates that arrive before the remote description are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from bench.callpeer import ice_config, parse_candidate

Message = dict[str, Any]

#: Generous: calls must connect on a loaded 2-core machine.
CALL_TIMEOUT = 30.0


def sdp_candidates(sdp: str) -> list[Message]:
    """The `a=candidate` lines of an SDP as RTCIceCandidateInit dicts (mid and m-line index of each)."""
    sections = sdp.split("\r\nm=")[1:]
    found: list[Message] = []
    for index, section in enumerate(sections):
        lines = section.split("\r\n")
        mid = next((line.removeprefix("a=mid:") for line in lines if line.startswith("a=mid:")), None)
        found += [
            {"candidate": line.removeprefix("a="), "sdpMid": mid, "sdpMLineIndex": index}
            for line in lines
            if line.startswith("a=candidate:")
        ]
    return found


def strip_candidates(sdp: str) -> str:
    """The SDP without candidates, as a trickling peer's first description looks."""
    keep = [line for line in sdp.splitlines() if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(keep) + "\r\n"


class CallPeer:
    """One call participant: a WebSocket to `/ws`, one RTCPeerConnection, one data channel."""

    def __init__(
        self, ws_url: str, relay_only: bool = True, send_video: bool = False, candidates_first: bool = False
    ) -> None:
        self.ws_url = ws_url
        self.relay_only = relay_only
        self.send_video = send_video
        #: Send our candidates as `ice-candidate` messages *before* the offer/answer that has them stripped,
        #: so the other side must queue candidates that arrive before its remote description.
        self.candidates_first = candidates_first
        self.you: str | None = None
        self.peer: str | None = None
        self.ice_servers: list[Message] = []
        self.received: list[Message] = []
        self.errors: list[Message] = []
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.frames_received = 0
        self.channel_messages: asyncio.Queue[str] = asyncio.Queue()
        self._ws: websockets.ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._joined: asyncio.Future[Message] | None = None
        self._open = asyncio.Event()
        self._frames_seen = asyncio.Event()
        self._left = asyncio.Event()
        self._pending: list[tuple[str, Message | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Callable[[Message], Awaitable[None]]] = {
            "all-users": self._on_all_users,
            "user-joined": self._on_user_joined,
            "offer": self._on_offer,
            "answer": self._on_answer,
            "ice-candidate": self._on_ice_candidate,
            "user-left": self._on_user_left,
            "ice-servers": self._on_ice_servers,
            "error": self._on_error,
        }

    async def __aenter__(self) -> CallPeer:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- public API -------------------------------------------------------------------------------

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.ws_url, open_timeout=CALL_TIMEOUT)
        self._reader = asyncio.create_task(self._read())

    async def send(self, message: Message) -> None:
        assert self._ws is not None, "connect() first"
        await self._ws.send(json.dumps(message))

    async def join(self, room: str) -> Message:
        """Join `room`; returns the server's `all-users` answer (the offer, if any, is under way)."""
        self._joined = asyncio.get_running_loop().create_future()
        await self.send({"type": "join-room", "room": room})
        return await asyncio.wait_for(self._joined, CALL_TIMEOUT)

    async def wait_open(self, timeout: float = CALL_TIMEOUT) -> RTCDataChannel:
        await asyncio.wait_for(self._open.wait(), timeout)
        assert self.channel is not None
        return self.channel

    async def wait_frames(self, timeout: float = CALL_TIMEOUT) -> int:
        """Wait until at least one remote video frame has been decoded; returns the count so far."""
        await asyncio.wait_for(self._frames_seen.wait(), timeout)
        return self.frames_received

    async def wait_left(self, timeout: float = CALL_TIMEOUT) -> None:
        await asyncio.wait_for(self._left.wait(), timeout)

    def selected_pair(self) -> tuple[str, str]:
        """(local, remote) candidate types of the nominated ICE pair (aiortc has no candidate-pair stats)."""
        assert self.pc is not None, "no call"
        if self.pc.sctp is not None:
            ice = self.pc.sctp.transport.transport
        else:
            ice = self.pc.getTransceivers()[0].receiver.transport.transport
        pair = ice._connection._nominated.get(1)
        assert pair is not None, f"no nominated ICE pair (ICE state {ice.state})"
        return pair.local_candidate.type, pair.remote_candidate.type

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    # ---- signaling ----------------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._ws:
                message = json.loads(raw)
                self.received.append(message)
                handler = self._handlers.get(message.get("type", ""))
                if handler is not None:
                    await handler(message)

    async def _on_all_users(self, m: Message) -> None:
        self.you = m["you"]
        self.ice_servers = m["iceServers"]
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(m)
        if m["users"]:
            pc = self._new_pc(m["users"][0])
            self._watch_channel(pc.createDataChannel("chat"))
            if self.send_video:
                pc.addTrack(VideoStreamTrack())
            await pc.setLocalDescription(await pc.createOffer())
            await self._send_description("offer", pc)

    async def _on_user_joined(self, m: Message) -> None:
        self.peer = self.peer or m["id"]

    async def _on_offer(self, m: Message) -> None:
        pc = self.pc if self.pc is not None and self.peer == m["from"] else self._new_pc(m["from"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"]["sdp"], type=m["sdp"]["type"]))
        await self._flush()
        if self.send_video:
            pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        await self._send_description("answer", pc)

    async def _on_answer(self, m: Message) -> None:
        if self.pc is not None and self.peer == m["from"]:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"]["sdp"], type=m["sdp"]["type"]))
            await self._flush()

    async def _on_ice_candidate(self, m: Message) -> None:
        if self.pc is not None and self.peer == m["from"] and self.pc.remoteDescription is not None:
            await self.pc.addIceCandidate(parse_candidate(m["candidate"]))
        else:
            self._pending.append((m["from"], m["candidate"]))

    async def _on_user_left(self, m: Message) -> None:
        if m["id"] == self.peer:
            self._left.set()

    async def _on_ice_servers(self, m: Message) -> None:
        self.ice_servers = m["iceServers"]

    async def _on_error(self, m: Message) -> None:
        self.errors.append(m)

    async def _send_description(self, kind: str, pc: RTCPeerConnection) -> None:
        sdp = pc.localDescription.sdp
        if self.candidates_first:
            for init in sdp_candidates(sdp):
                await self.send({"type": "ice-candidate", "to": self.peer, "candidate": init})
            await self.send({"type": "ice-candidate", "to": self.peer, "candidate": None})
            sdp = strip_candidates(sdp)
        await self.send({"type": kind, "to": self.peer, "sdp": {"type": pc.localDescription.type, "sdp": sdp}})

    async def _flush(self) -> None:
        assert self.pc is not None
        queued, self._pending = [c for f, c in self._pending if f == self.peer], []
        for init in queued:
            await self.pc.addIceCandidate(parse_candidate(init))

    # ---- media ----------------------------------------------------------------------------------------

    def _new_pc(self, peer: str) -> RTCPeerConnection:
        self.peer = peer
        pc = RTCPeerConnection(ice_config(self.ice_servers, self.relay_only))
        self.pc = pc
        pc.on("datachannel", self._watch_channel)
        pc.on("track", self._on_track)
        return pc

    def _watch_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", lambda data: self.channel_messages.put_nowait(str(data)))
        if channel.readyState == "open":
            self._open.set()
        else:
            channel.on("open", self._open.set)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            task = asyncio.create_task(self._count_frames(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _count_frames(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames_received += 1
                self._frames_seen.set()
