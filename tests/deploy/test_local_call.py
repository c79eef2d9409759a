"""After `turnkit deploy --region local`, two aiortc peers call each other through it, relay only."""

from __future__ import annotations

import asyncio
import sys
import time

import jwt

from tests.helpers.deploy import Site
from tests.signaling.callpeer import CALL_TIMEOUT, CallPeer
from turnkit import localstack


def token(site: Site, sub: str) -> str:
    cfg = site.load()
    secret = localstack.jwt_secret(cfg, localstack.layout(cfg, "local"))
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 900}, secret, algorithm="HS256")


async def test_a_relay_only_call_connects_through_the_local_region(site: Site) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnkit", "deploy", "--region", "local", cwd=site.root,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, err.decode()

    ws = f"ws://127.0.0.1:{site.signaling}/ws?token="
    async with CallPeer(ws + token(site, "ann")) as ann, CallPeer(ws + token(site, "ben")) as ben:
        await ann.join("local-room")
        await ben.join("local-room")
        channels = await asyncio.gather(ann.wait_open(), ben.wait_open())
        channels[0].send("over the local relay")
        assert await asyncio.wait_for(ben.channel_messages.get(), CALL_TIMEOUT) == "over the local relay"
        assert ann.selected_pair() == ("relay", "relay")
        assert ben.selected_pair() == ("relay", "relay")
        turn = [u for s in ann.ice_servers for u in s["urls"] if u.startswith("turn:")]
        assert turn[0] == f"turn:127.0.0.1:{site.listening}?transport=udp"
