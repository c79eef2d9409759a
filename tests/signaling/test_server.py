"""SIGNALING.md v1 over a real WebSocket: every message type and error code, on both backends."""

from __future__ import annotations

import asyncio
import json

import pytest

from signaling.protocol import Code
from tests.helpers.signaling import StartServer, make_token

pytestmark = pytest.mark.asyncio


async def test_join_announces_members_oldest_first(start_server: StartServer, backend: str | None) -> None:
    async with (
        start_server(backend, signaling={"room_capacity": 3}) as srv,
        srv.client("alice") as a,
        srv.client("bob") as b,
        srv.client("carol") as c,
    ):
        first = await a.join("room-1")
        assert first["room"] == "room-1" and first["users"] == []
        assert isinstance(first["you"], str) and len(first["you"]) >= 20
        assert first["expiresAt"] > 0 and first["iceServers"]
        turn = [s for s in first["iceServers"] if "username" in s]
        assert turn and turn[0]["username"].endswith(":alice")
        second = await b.join("room-1")
        assert second["users"] == [first["you"]]
        assert (await a.expect("user-joined"))["id"] == second["you"]
        third = await c.join("room-1")
        assert third["users"] == [first["you"], second["you"]]
        assert (await a.expect("user-joined"))["id"] == third["you"]
        assert (await b.expect("user-joined"))["id"] == third["you"]
        assert len({first["you"], second["you"], third["you"]}) == 3


async def test_offer_answer_candidate_relay_with_server_stamped_from(
    start_server: StartServer, backend: str | None
) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        aid = (await a.join("call"))["you"]
        bid = (await b.join("call"))["you"]
        await a.expect("user-joined")
        sdp = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}
        await b.send(type="offer", to=aid, sdp=sdp, **{"from": "spoofed"})
        assert await a.expect("offer") == {"type": "offer", "from": bid, "sdp": sdp}
        await a.send(type="answer", to=bid, sdp={"type": "answer", "sdp": "v=0\r\n"})
        assert await b.expect("answer") == {"type": "answer", "from": aid, "sdp": {"type": "answer", "sdp": "v=0\r\n"}}
        cand = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
        await a.send(type="ice-candidate", to=bid, candidate=cand)
        assert await b.expect("ice-candidate") == {"type": "ice-candidate", "from": aid, "candidate": cand}
        await a.send(type="ice-candidate", to=bid, candidate=None)
        assert await b.expect("ice-candidate") == {"type": "ice-candidate", "from": aid, "candidate": None}


async def test_leave_room_and_disconnect_send_user_left(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a:
        aid = (await a.join("r"))["you"]
        async with srv.client("bob") as b:
            bid = (await b.join("r"))["you"]
            await a.expect("user-joined")
            await b.send(type="leave-room")
            assert await a.expect("user-left") == {"type": "user-left", "id": bid}
            await b.send(type="offer", to=aid, sdp={"type": "offer", "sdp": ""})
            err = await b.expect("error")
            assert err["code"] == "not-in-room" and err["ref"] == "offer"
            bid = (await b.join("r"))["you"]
            await a.expect("user-joined")
        assert await a.expect("user-left") == {"type": "user-left", "id": bid}


async def test_joining_another_room_leaves_the_first(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        await a.join("one")
        bid = (await b.join("one"))["you"]
        await a.expect("user-joined")
        moved = await b.join("two")
        assert moved["room"] == "two" and moved["users"] == [] and moved["you"] == bid
        assert await a.expect("user-left") == {"type": "user-left", "id": bid}


async def test_ice_servers_on_request(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a:
        await a.send(type="ice-servers")
        msg = await a.expect("ice-servers")
        assert set(msg) == {"type", "iceServers", "expiresAt"}
        urls = [u for s in msg["iceServers"] for u in s["urls"]]
        assert "stun:127.0.0.1:3478" in urls and "turn:127.0.0.1:3478?transport=udp" in urls


async def test_room_full(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("a") as a, srv.client("b") as b, srv.client("c") as c:
        await a.join("duo")
        await b.join("duo")
        await c.send(type="join-room", room="duo")
        err = await c.expect("error")
        assert err["code"] == "room-full" and err["ref"] == "join-room"
        # the refused peer is in no room, and the others were not told anything
        await c.send(type="leave-room")
        assert (await c.expect("error"))["code"] == "not-in-room"


async def test_cross_room_relay_is_unknown_peer(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("a") as a, srv.client("c") as c:
        aid = (await a.join("r1"))["you"]
        cid = (await c.join("r2"))["you"]
        for to in (aid, "no-such-peer", cid):
            await c.send(type="offer", to=to, sdp={"type": "offer", "sdp": "v=0"})
            err = await c.expect("error")
            assert err["code"] == "unknown-peer" and err["ref"] == "offer"
        await c.send(type="ice-servers")
        await c.expect("ice-servers")  # nothing else was queued for c, and a got nothing
        await a.send(type="ice-servers")
        await a.expect("ice-servers")


BAD_FRAMES: list[tuple[str | bytes, str, str | None]] = [
    ("{not json", "bad-json", None),
    ("[1, 2, 3]", "bad-json", None),
    ('"just a string"', "bad-json", None),
    (b"\x00\x01binary", "bad-json", None),
    ('{"room": "x"}', "bad-field", None),
    ('{"type": 7}', "bad-field", None),
    ('{"type": "dance"}', "unknown-type", "dance"),
    ('{"type": "all-users"}', "unknown-type", "all-users"),
    ('{"type": "join-room"}', "bad-field", "join-room"),
    ('{"type": "join-room", "room": "has space"}', "bad-field", "join-room"),
    ('{"type": "join-room", "room": "' + "x" * 65 + '"}', "bad-field", "join-room"),
    ('{"type": "offer", "sdp": {"type": "offer", "sdp": ""}}', "bad-field", "offer"),
    ('{"type": "offer", "to": "p", "sdp": "v=0"}', "bad-field", "offer"),
    ('{"type": "answer", "to": "p", "sdp": {"type": "bogus"}}', "bad-field", "answer"),
    ('{"type": "ice-candidate", "to": "p", "candidate": 5}', "bad-field", "ice-candidate"),
    ('{"type": "ice-candidate", "to": 5, "candidate": null}', "bad-field", "ice-candidate"),
    ('{"type": "offer", "to": "p", "sdp": {"type": "offer", "sdp": ""}}', "not-in-room", "offer"),
    ('{"type": "leave-room"}', "not-in-room", "leave-room"),
]


async def test_malformed_frames_get_the_right_error_and_keep_the_connection(
    start_server: StartServer, backend: str | None
) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a:
        for frame, code, ref in BAD_FRAMES:
            await a.ws.send(frame)
            err = await a.expect("error")
            assert (err["code"], err.get("ref")) == (code, ref), frame
            assert isinstance(err["message"], str) and err["message"]
        assert (await a.join("still-alive"))["room"] == "still-alive"


async def test_relay_that_would_exceed_the_frame_limit_is_too_large(
    start_server: StartServer, backend: str | None
) -> None:
    limit = 1024
    async with (
        start_server(backend, signaling={"max_frame_bytes": limit}) as srv,
        srv.client("a") as a,
        srv.client("b") as b,
    ):
        aid = (await a.join("r"))["you"]
        await b.join("r")
        await a.expect("user-joined")

        def offer(n: int) -> str:
            msg = {"type": "offer", "to": aid, "sdp": {"type": "offer", "sdp": "x" * n}}
            return json.dumps(msg, separators=(",", ":"))

        pad = limit - len(offer(0))
        frame = offer(pad)
        assert len(frame.encode()) == limit  # accepted by the transport...
        await b.ws.send(frame)
        err = await b.expect("error")  # ...but the stamped relay would be 2 bytes over
        assert err["code"] == "too-large" and err["ref"] == "offer"
        await b.ws.send(offer(pad - 2))
        assert len(json.dumps(await a.expect("offer"), separators=(",", ":"))) == limit


async def test_oversize_frame_closes_1009(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend, signaling={"max_frame_bytes": 1024}) as srv, srv.client("a") as a:
        await a.ws.send(json.dumps({"type": "ice-servers", "pad": "x" * 2000}))
        assert await a.closed_code() == 1009


async def test_rate_limit_warns_then_closes_1008(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend, signaling={"rate_limit": 0.01, "rate_burst": 3}) as srv, srv.client("a") as a:
        for _ in range(5):
            await a.send(type="ice-servers")
        for _ in range(3):
            await a.expect("ice-servers")
        err = await a.expect("error")
        assert err["code"] == Code.RATE_LIMITED.value
        assert await a.closed_code() == 1008


async def test_ice_servers_are_pushed_before_expiry(start_server: StartServer, backend: str | None) -> None:
    # ttl 60 s, margin 59 s: the next set is due one second after the last one was issued.
    async with (
        start_server(backend, project={"ttl": 60}, signaling={"refresh_margin": 59}) as srv,
        srv.client("a") as a,
    ):
        joined = await a.join("r")
        pushed = await a.expect("ice-servers", timeout=10)
        assert pushed["expiresAt"] >= joined["expiresAt"]
        turn = next(s for s in pushed["iceServers"] if "username" in s)
        assert turn["username"] == f"{pushed['expiresAt']}:a"
        again = await a.expect("ice-servers", timeout=10)  # and it keeps going
        assert again["expiresAt"] >= pushed["expiresAt"]


async def test_no_push_after_leaving(start_server: StartServer, backend: str | None) -> None:
    async with (
        start_server(backend, project={"ttl": 60}, signaling={"refresh_margin": 59}) as srv,
        srv.client("a") as a,
    ):
        await a.join("r")
        await a.send(type="leave-room")
        with pytest.raises(TimeoutError):
            await a.recv(timeout=2.5)


async def test_slow_reader_is_disconnected(start_server: StartServer, backend: str | None) -> None:
    import socket

    sig = {"send_queue": 4, "rate_limit": 100000.0, "rate_burst": 100000}
    async with start_server(backend, signaling=sig) as srv, srv.client("fast") as fast:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        async with srv.client("slow", sock=sock, max_queue=1) as slow:
            slow_id = (await slow.join("r"))["you"]
            await fast.join("r")
            sdp = {"type": "offer", "sdp": "a=x\r\n" * 6000}
            left: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()

            async def read_fast() -> None:
                while True:
                    msg = await fast.recv()
                    if msg["type"] == "user-left" and not left.done():
                        left.set_result(msg)

            reader = asyncio.create_task(read_fast())
            try:
                for _ in range(5000):
                    if left.done():
                        break
                    await fast.send(type="offer", to=slow_id, sdp=sdp)
                    await asyncio.sleep(0)
                assert (await asyncio.wait_for(left, 15))["id"] == slow_id
            finally:
                reader.cancel()
        assert srv.server.stats.closed["slow-reader"] == 1
        assert slow_id not in srv.server.hub.peers


def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame (RFC 6455 §5.2), masked, for payloads under 126 bytes."""
    mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_silent_connection_is_dropped_by_keepalive(start_server: StartServer, backend: str | None) -> None:
    # A dropped connection is parked for resume; a short window makes its user-left come soon.
    sig = {"resume_window": 1}
    async with (
        start_server(backend, signaling=sig, server_kw={"ping_interval": 0.5}) as srv,
        srv.client("alive") as alive,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(
            f"GET /ws?token={make_token('mute')} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        writer.write(masked_text_frame(b'{"type":"join-room","room":"k"}'))
        head = await reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        mute_id = json.loads(await reader.readexactly(size))["you"]
        assert (await alive.join("k"))["users"] == [mute_id]
        # the mute client never answers pings; the responsive one does and stays
        assert await alive.expect("user-left", timeout=20) == {"type": "user-left", "id": mute_id}
        assert srv.server.stats.closed["keepalive"] == 1
        await alive.send(type="ice-servers")
        await alive.expect("ice-servers")
        writer.close()


HOSTILE_RELAYS = [
    '{"type": "offer", "to": "%s", "sdp": {"type": "offer", "sdp": "v=0", "n": 1e999}}',
    '{"type": "offer", "to": "%s", "sdp": {"type": "offer", "sdp": "v=0", "n": NaN}}',
    '{"type": "ice-candidate", "to": "%s", "candidate": {"candidate": "c", "x": -Infinity}}',
    '{"type": "offer", "to": "%s", "sdp": {"type": "offer", "sdp": "\\ud800"}}',
    '{"type": "answer", "to": "%s", "sdp": {"type": "answer", "sdp": "\\udfff\\ud800"}}',
]


async def test_only_valid_json_is_relayed_and_nothing_is_logged_as_a_traceback(
    start_server: StartServer, backend: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        aid = (await a.join("j"))["you"]
        await b.join("j")
        await a.expect("user-joined")
        for template in HOSTILE_RELAYS:
            await b.ws.send(template % aid)
            err = await b.expect("error")
            assert err["code"] == "bad-json" and "ref" not in err, template
        await b.ws.send(
            b'{"type": "offer", "to": "%s", "sdp": {"type": "offer", "sdp": "\xed\xa0\x80"}}' % aid.encode()
        )
        assert (await b.expect("error"))["code"] == "bad-json"
        # a receives only the valid offer that follows, byte-for-byte valid JSON
        await b.send(type="offer", to=aid, sdp={"type": "offer", "sdp": "v=0 \U0001f600"})
        raw = await asyncio.wait_for(a.ws.recv(), 15)
        assert isinstance(raw, str)
        raw.encode()
        assert json.loads(raw, parse_constant=_refuse)["sdp"]["sdp"] == "v=0 \U0001f600"
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def _refuse(name: str) -> object:
    raise AssertionError(f"{name} relayed")
