"""An aiortc call peer for the call-setup benchmark, speaking turnkit signaling v1 the way the demo page does.

The newcomer (non-empty `users` in `all-users`) offers, the other side answers; ICE servers (with TURN
credentials) come from `all-users`; remote candidates that arrive before the remote description wait in a
queue. Relay-only ICE; one data channel, whose `open` on both sides ends a call's setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

Message = dict[str, Any]
TIMEOUT = 30.0


def ice_config(servers: list[Message], relay_only: bool) -> RTCConfiguration:
    """RTCIceServer dicts from the signaling server (`all-users`, `/api/ice-servers`) as an aiortc configuration."""
    ice = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")) for s in servers]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=ice, iceTransportPolicy=policy)


def parse_candidate(init: Message | None) -> RTCIceCandidate | None:
    """RTCIceCandidateInit (browser JSON) as an aiortc candidate; None/empty means end-of-candidates."""
    if not init or not init.get("candidate"):
        return None
    candidate = candidate_from_sdp(str(init["candidate"]).split(":", 1)[1])
    candidate.sdpMid = init.get("sdpMid")
    candidate.sdpMLineIndex = init.get("sdpMLineIndex")
    return candidate


class CallPeer:
    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.peer: str | None = None
        self.ice_servers: list[Message] = []
        self.pc: RTCPeerConnection | None = None
        self._ws: websockets.ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._joined: asyncio.Future[Message] | None = None
        self._open = asyncio.Event()
        self._queued: list[Message | None] = []

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.ws_url, open_timeout=TIMEOUT)
        self._reader = asyncio.create_task(self._read())

    async def join(self, room: str) -> Message:
        self._joined = asyncio.get_running_loop().create_future()
        await self._send({"type": "join-room", "room": room})
        return await asyncio.wait_for(self._joined, TIMEOUT)

    async def wait_open(self) -> None:
        await asyncio.wait_for(self._open.wait(), TIMEOUT)

    def selected_pair(self) -> tuple[str, str]:
        """(local, remote) candidate types of the nominated pair (aiortc keeps no candidate-pair stats)."""
        if self.pc is None or self.pc.sctp is None:
            return ("none", "none")
        pair = self.pc.sctp.transport.transport._connection._nominated.get(1)
        return (pair.local_candidate.type, pair.remote_candidate.type) if pair else ("none", "none")

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _send(self, message: Message) -> None:
        if self._ws is None:
            raise RuntimeError("connect() first")
        await self._ws.send(json.dumps(message))

    async def _read(self) -> None:
        if self._ws is None:
            return
        handlers: dict[str, Callable[[Message], Awaitable[None]]] = {
            "all-users": self._on_all_users,
            "offer": self._on_description,
            "answer": self._on_description,
            "ice-candidate": self._on_candidate,
        }
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._ws:
                m = json.loads(raw)
                handler = handlers.get(m.get("type", ""))
                if handler is not None:
                    await handler(m)

    async def _on_all_users(self, m: Message) -> None:
        self.ice_servers = m["iceServers"]
        if self._joined is not None and not self._joined.done():
            self._joined.set_result(m)
        if m["users"]:
            pc = self._new_pc(m["users"][0])
            self._watch(pc.createDataChannel("chat"))
            await pc.setLocalDescription(await pc.createOffer())
            await self._send_description("offer", pc)

    async def _on_description(self, m: Message) -> None:
        pc = self.pc if self.pc is not None and self.peer == m["from"] else self._new_pc(m["from"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"]["sdp"], type=m["sdp"]["type"]))
        queued, self._queued = self._queued, []
        for init in queued:
            await pc.addIceCandidate(parse_candidate(init))
        if m["type"] == "offer":
            await pc.setLocalDescription(await pc.createAnswer())
            await self._send_description("answer", pc)

    async def _on_candidate(self, m: Message) -> None:
        init = m.get("candidate")
        if self.pc is not None and self.pc.remoteDescription is not None:
            await self.pc.addIceCandidate(parse_candidate(init))
        else:
            self._queued.append(init)

    async def _send_description(self, kind: str, pc: RTCPeerConnection) -> None:
        desc = pc.localDescription
        await self._send({"type": kind, "to": self.peer, "sdp": {"type": desc.type, "sdp": desc.sdp}})

    def _new_pc(self, peer: str) -> RTCPeerConnection:
        self.peer = peer
        self.pc = RTCPeerConnection(ice_config(self.ice_servers, relay_only=True))
        self.pc.on("datachannel", self._watch)
        return self.pc

    def _watch(self, channel: RTCDataChannel) -> None:
        if channel.readyState == "open":
            self._open.set()
        else:
            channel.on("open", self._open.set)
