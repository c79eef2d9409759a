"""An aiortc call peer for the call-setup benchmark, speaking turnkit signaling v1 the way the demo page does.

The newcomer (non-empty `users` in `all-users`) offers, the other side answers; ICE servers (with TURN
credentials) come from `all-users`; remote candidates that arrive before the remote description wait in a
queue. Relay-only ICE; one data channel, whose `open` on both sides ends a call's setup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets
from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

Message = dict[str, Any]
TIMEOUT = 30.0


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
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._ws:
                m = json.loads(raw)
                kind = m.get("type")
                if kind == "all-users":
                    await self._on_all_users(m)
                elif kind in ("offer", "answer"):
                    await self._on_description(m)
                elif kind == "ice-candidate":
                    await self._on_candidate(m.get("candidate"))

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
            await pc.addIceCandidate(_candidate(init))
        if m["type"] == "offer":
            await pc.setLocalDescription(await pc.createAnswer())
            await self._send_description("answer", pc)

    async def _on_candidate(self, init: Message | None) -> None:
        if self.pc is not None and self.pc.remoteDescription is not None:
            await self.pc.addIceCandidate(_candidate(init))
        else:
            self._queued.append(init)

    async def _send_description(self, kind: str, pc: RTCPeerConnection) -> None:
        desc = pc.localDescription
        await self._send({"type": kind, "to": self.peer, "sdp": {"type": desc.type, "sdp": desc.sdp}})

    def _new_pc(self, peer: str) -> RTCPeerConnection:
        self.peer = peer
        ice = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice, iceTransportPolicy=RTCIceTransportPolicy.RELAY))
        self.pc.on("datachannel", self._watch)
        return self.pc

    def _watch(self, channel: RTCDataChannel) -> None:
        if channel.readyState == "open":
            self._open.set()
        else:
            channel.on("open", self._open.set)


def _candidate(init: Message | None) -> Any:
    """A browser RTCIceCandidateInit as an aiortc candidate; None or empty means end-of-candidates."""
    if not init or not init.get("candidate"):
        return None
    candidate = candidate_from_sdp(str(init["candidate"]).split(":", 1)[1])
    candidate.sdpMid = init.get("sdpMid")
    candidate.sdpMLineIndex = init.get("sdpMLineIndex")
    return candidate
