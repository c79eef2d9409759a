"""Session resume (docs/signaling.md "Session resume"): same peer id and room, no user-left/user-joined,
frames queued during the gap, clear refusals — on the in-memory and the Redis backend."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from signaling.backends import MAX_QUEUED
from tests.helpers.signaling import Client, Running, StartServer, make_token

FAST = {"rate_limit": 100000.0, "rate_burst": 100000}


@contextlib.asynccontextmanager
async def resuming(srv: Running, sub: str, token: str) -> AsyncIterator[Client]:
    async with connect(srv.ws_url(make_token(sub), resume=token)) as ws:
        yield Client(ws)


def abort(client: Client) -> None:
    """Drop the TCP connection with no close handshake (a network loss, a killed browser)."""
    client.ws.transport.abort()


def offer(n: int) -> dict[str, Any]:
    return {"type": "offer", "sdp": f"seq:{n}"}


async def pair(srv: Running, a: Client, b: Client, room: str = "r") -> tuple[dict[str, Any], dict[str, Any]]:
    first = await a.join(room)
    second = await b.join(room)
    await a.expect("user-joined")
    return first, second


async def metrics(srv: Running) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"{srv.http}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    return await asyncio.to_thread(get)


async def test_all_users_carries_an_unguessable_resume_token(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        first, second = await pair(srv, a, b)
        assert len(first["resume"]) >= 32 and first["resume"] != second["resume"]
        assert first["resume"] not in (first["you"], second["you"])
        assert "resumed" not in first


async def test_resume_keeps_peer_id_room_and_queued_frames(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        first, second = await pair(srv, a, b)
        abort(a)
        await asyncio.sleep(0.3)  # the server notices and parks alice
        for n in range(3):
            await b.send(type="offer", to=first["you"], sdp=offer(n))
        async with resuming(srv, "alice", first["resume"]) as again:
            back = await again.expect("all-users")
            assert (back["you"], back["room"], back["users"], back["resumed"]) == (
                first["you"],
                "r",
                [second["you"]],
                True,
            )
            assert back["resume"] == first["resume"]
            for n in range(3):  # what bob sent during the gap, in order
                got = await again.expect("offer")
                assert (got["from"], got["sdp"]) == (second["you"], offer(n))
            # Both ways work after the resume, and bob saw neither user-left nor user-joined.
            await again.send(type="answer", to=second["you"], sdp={"type": "answer", "sdp": "x"})
            assert (await b.expect("answer"))["from"] == first["you"]
            await b.send(type="offer", to=first["you"], sdp=offer(9))
            assert (await again.expect("offer"))["sdp"] == offer(9)
        assert srv.server.stats.resumes["ok"] == 1


async def test_wrong_or_foreign_token_is_refused_and_a_fresh_join_works(
    start_server: StartServer, backend: str | None
) -> None:
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        first, second = await pair(srv, a, b)
        abort(a)
        await asyncio.sleep(0.3)
        cases = [
            ("alice", "A" * 32, "unknown or expired resume token; join again"),
            ("mallory", first["resume"], "resume token belongs to another user; join again"),
            ("alice", "short", "malformed resume token; join again"),
        ]
        for sub, token, message in cases:
            async with resuming(srv, sub, token) as c:
                err = await c.expect("error")
                assert err == {"type": "error", "code": "resume-failed", "message": message, "ref": "resume"}
                fresh = await c.join("other")
                assert fresh["users"] == [] and fresh["you"] not in (first["you"], second["you"])
        # The refusals did not disturb the parked session: the right token still resumes it.
        async with resuming(srv, "alice", first["resume"]) as again:
            assert (await again.expect("all-users"))["you"] == first["you"]
        assert srv.server.stats.resumes["refused"] == 3


async def test_expired_window_means_user_left_and_refusal(start_server: StartServer, backend: str | None) -> None:
    sig = {"resume_window": 1}
    async with start_server(backend, signaling=sig) as srv, srv.client("alice") as a, srv.client("bob") as b:
        first, _ = await pair(srv, a, b)
        abort(a)
        left = await b.expect("user-left", timeout=20)  # the Redis sweep runs every heartbeat
        assert left["id"] == first["you"]
        async with resuming(srv, "alice", first["resume"]) as c:
            assert (await c.expect("error"))["message"] == "unknown or expired resume token; join again"


async def test_clean_close_leaves_at_once(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend) as srv, srv.client("bob") as b:
        async with srv.client("alice") as a:
            first, _ = await pair(srv, a, b)
        assert (await b.expect("user-left", timeout=5))["id"] == first["you"]
        async with resuming(srv, "alice", first["resume"]) as c:
            assert (await c.expect("error"))["code"] == "resume-failed"


async def test_queue_is_bounded_and_drops_are_counted(start_server: StartServer, backend: str | None) -> None:
    async with start_server(backend, signaling=FAST) as srv, srv.client("alice") as a, srv.client("bob") as b:
        first, _ = await pair(srv, a, b)
        abort(a)
        await asyncio.sleep(0.3)
        extra = 20
        for n in range(MAX_QUEUED + extra):
            await b.send(type="offer", to=first["you"], sdp=offer(n))
        await b.send(type="ice-servers")  # answered after every offer before it was handled
        await b.expect("ice-servers")
        async with resuming(srv, "alice", first["resume"]) as again:
            await again.expect("all-users")
            got = [(await again.expect("offer"))["sdp"] for _ in range(MAX_QUEUED)]
            assert got == [offer(n) for n in range(MAX_QUEUED)]
            await b.send(type="offer", to=first["you"], sdp=offer(-1))
            assert (await again.expect("offer"))["sdp"] == offer(-1)  # nothing else was queued
        assert srv.server.stats.queue_dropped == extra
        assert f"turnkit_signaling_resume_queue_dropped_total {float(extra)}" in await metrics(srv)


async def test_resume_on_another_process(start_server: StartServer, redis_server: Any) -> None:
    """Through Redis: alice drops from process 1, resumes on process 2; frames sent meanwhile arrive."""
    url = redis_server.url
    async with start_server(url) as one, start_server(url) as two, one.client("alice") as a, two.client("bob") as b:
        first, second = await pair(one, a, b)
        abort(a)
        await asyncio.sleep(0.3)
        await b.send(type="offer", to=first["you"], sdp=offer(1))
        async with resuming(two, "alice", first["resume"]) as again:
            back = await again.expect("all-users")
            assert (back["you"], back["users"], back["resumed"]) == (first["you"], [second["you"]], True)
            assert (await again.expect("offer"))["sdp"] == offer(1)
            await b.send(type="offer", to=first["you"], sdp=offer(2))
            assert (await again.expect("offer"))["sdp"] == offer(2)
            await again.send(type="answer", to=second["you"], sdp={"type": "answer", "sdp": "y"})
            assert (await b.expect("answer"))["from"] == first["you"]


async def test_resume_takes_over_a_connection_that_is_still_open(
    start_server: StartServer, backend: str | None
) -> None:
    """The server has not noticed the old connection is dead yet: the resume wins, the old one closes."""
    async with start_server(backend) as srv, srv.client("alice") as a, srv.client("bob") as b:
        first, _ = await pair(srv, a, b)
        async with resuming(srv, "alice", first["resume"]) as again:
            assert (await again.expect("all-users"))["you"] == first["you"]
            assert await a.closed_code() == 1008
            await b.send(type="offer", to=first["you"], sdp=offer(5))
            assert (await again.expect("offer"))["sdp"] == offer(5)


@pytest.mark.parametrize("window", [0])
async def test_window_zero_disables_resume(start_server: StartServer, backend: str | None, window: int) -> None:
    sig = {"resume_window": window}
    async with start_server(backend, signaling=sig) as srv, srv.client("bob") as b, srv.client("alice") as a:
        first, _ = await pair(srv, a, b)
        abort(a)
        assert (await b.expect("user-left", timeout=5))["id"] == first["you"]


class NoEvents:
    """Events sink for a backend driven directly (no server)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


@pytest.mark.parametrize(
    "text",
    ["not json", '{"version": 2}', '{"version": 1, "rooms": {"r": ["p"]}, "parked": {"p": {"deadline": "x"}}}', "[]"],
)
async def test_a_bad_resume_state_file_is_ignored(tmp_path: Any, text: str) -> None:
    from signaling.backends.memory import MemoryBackend

    state = tmp_path / "signaling-1.resume.json"
    state.write_text(text)
    backend = MemoryBackend(state)
    await backend.start(NoEvents())
    assert backend.parked == {} and backend.table.rooms == {}
    assert not state.exists()


async def test_parked_members_survive_a_restart_through_the_state_file(tmp_path: Any) -> None:
    from signaling.backends.memory import MemoryBackend
    from signaling.hub import token_hash

    state = tmp_path / "signaling-1.resume.json"
    first = MemoryBackend(state)
    await first.start(NoEvents())
    first.join("p1", "r", 2, "alice", token_hash("a" * 32))
    first.join("p2", "r", 2, "bob", token_hash("b" * 32))
    first.park("p1", 30)
    first.forward("-", "p1", "r", '{"type":"offer"}')
    first.park("p2", 30)
    await first.stop()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    second = MemoryBackend(state)
    await second.start(NoEvents())
    assert second.table.rooms == {"r": {"p1": "-", "p2": "-"}}
    assert list(second.parked["p1"].frames) == ['{"type":"offer"}']
    assert second.tokens[token_hash("b" * 32)] == ("p2", "bob")
    await second.stop()


def test_held_frames_for_a_resumed_peer_are_split_out() -> None:
    from signaling.backends.redis import Publish, _split_lines

    batch = Publish("ch:dead", 'B\np1 r {"a":1}\np2 r {"b":2}\np1 r {"c":3}', 3)
    kept, moved = _split_lines(batch, "p1")
    assert moved == ['p1 r {"a":1}', 'p1 r {"c":3}']
    assert kept == Publish("ch:dead", 'D p2 r {"b":2}', 1)
    assert _split_lines(Publish("ch:dead", 'D p1 r {"a":1}', 1), "p1") == (None, ['p1 r {"a":1}'])
    untouched = Publish("ch:dead", "L r p1", 0)
    assert _split_lines(untouched, "p1") == (untouched, [])
