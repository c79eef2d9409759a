"""Two aiortc peers call each other through the signaling service and a real coturn relay (issue 3)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.signaling.callpeer import CALL_TIMEOUT, CallPeer
from tests.signaling.callstack import Stack, allocations_for, call_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with call_stack(tmp_path_factory.mktemp("aiortc-call")) as running:
        yield running


async def test_data_channel_opens_through_relay(stack: Stack) -> None:
    async with CallPeer(stack.ws_url(stack.token("ann"))) as ann, CallPeer(stack.ws_url(stack.token("ben"))) as ben:
        first = await ann.join("dc-room")
        second = await ben.join("dc-room")
        assert first["users"] == []
        assert second["users"] == [ann.you]

        channels = await asyncio.gather(ann.wait_open(), ben.wait_open())
        channels[1].send("hello from ben")
        channels[0].send("hello from ann")
        assert await asyncio.wait_for(ann.channel_messages.get(), CALL_TIMEOUT) == "hello from ben"
        assert await asyncio.wait_for(ben.channel_messages.get(), CALL_TIMEOUT) == "hello from ann"

        assert ann.selected_pair() == ("relay", "relay")
        assert ben.selected_pair() == ("relay", "relay")
        turn = [u for s in ann.ice_servers for u in s["urls"] if u.startswith("turn:")]
        assert turn[0] == f"turn:127.0.0.1:{stack.coturn.port}?transport=udp"
        assert ann.errors == [] and ben.errors == []

    log = stack.coturn.log_text()
    assert allocations_for(log, "ann"), "coturn logged no allocation for ann"
    assert allocations_for(log, "ben"), "coturn logged no allocation for ben"


async def test_video_flows_both_ways_and_leaving_is_seen(stack: Stack) -> None:
    ann = CallPeer(stack.ws_url(stack.token("cat")), send_video=True)
    ben = CallPeer(stack.ws_url(stack.token("dan")), send_video=True)
    async with ann, ben:
        await ann.join("video-room")
        await ben.join("video-room")
        assert await ann.wait_frames() > 0
        assert await ben.wait_frames() > 0
        assert ben.selected_pair()[0] == "relay"

        await ben.send({"type": "leave-room"})
        await ann.wait_left()
