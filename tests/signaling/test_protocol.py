"""The pure core: frame parsing, room bookkeeping, the push schedule, and a fuzzed frame handler."""

from __future__ import annotations

import asyncio
import json
import math
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import protocol
from signaling.backends.memory import MemoryBackend
from signaling.hub import Hub, Limits, Peer
from signaling.ice import IceProvider, NoHealth
from signaling.keysource import KeySource
from signaling.metrics import Stats
from signaling.protocol import CLIENT_TYPES, SERVER_TYPES, Code, FrameError
from signaling.rooms import Joined, Left, RoomTable
from signaling.schedule import push_at
from tests.helpers.signaling import write_config

KNOWN_CODES = {c.value for c in Code}


def test_parse_accepts_each_client_type() -> None:
    frames = {
        "join-room": {"room": "Room_1-a"},
        "offer": {"to": "p", "sdp": {"type": "offer", "sdp": "v=0"}},
        "answer": {"to": "p", "sdp": {"type": "answer", "sdp": "v=0", "extra": 1}},
        "ice-candidate": {"to": "p", "candidate": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0}},
        "leave-room": {},
        "ice-servers": {},
    }
    assert set(frames) == CLIENT_TYPES
    for kind, fields in frames.items():
        parsed_kind, msg = protocol.parse(json.dumps({"type": kind, **fields}))
        assert parsed_kind == kind and msg["type"] == kind
    assert protocol.parse(b'{"type": "ice-candidate", "to": "p", "candidate": null}')[0] == "ice-candidate"


@pytest.mark.parametrize(
    ("data", "binary", "code", "ref"),
    [
        ("", False, Code.BAD_JSON, None),
        ("nul", False, Code.BAD_JSON, None),
        (b"\xff\xfe{}", False, Code.BAD_JSON, None),
        ("[" * 100000, False, Code.BAD_JSON, None),
        ('{"type": "ice-servers"}', True, Code.BAD_JSON, None),
        ('{"type": null}', False, Code.BAD_FIELD, None),
        ('{"type": "x' + "y" * 200 + '"}', False, Code.UNKNOWN_TYPE, "x" + "y" * 63),
        ('{"type": "join-room", "room": ""}', False, Code.BAD_FIELD, "join-room"),
        ('{"type": "offer", "to": "", "sdp": {"type": "offer"}}', False, Code.BAD_FIELD, "offer"),
        ('{"type": "offer", "to": "' + "p" * 65 + '", "sdp": {"type": "offer"}}', False, Code.BAD_FIELD, "offer"),
        ('{"type": "offer", "to": "p", "sdp": {"type": "offer", "sdp": 5}}', False, Code.BAD_FIELD, "offer"),
        ('{"type": "ice-candidate", "to": "p"}', False, Code.BAD_FIELD, "ice-candidate"),
        ('{"type": "ice-candidate", "to": "p", "candidate": {"candidate": 1}}', False, Code.BAD_FIELD, "ice-candidate"),
    ],
)
def test_parse_rejects_with_the_right_code(data: str | bytes, binary: bool, code: Code, ref: str | None) -> None:
    with pytest.raises(FrameError) as info:
        protocol.parse(data, binary)
    assert (info.value.code, info.value.ref) == (code, ref)
    frame = json.loads(info.value.frame())
    assert frame["type"] == "error" and frame["code"] == code.value and frame.get("ref") == ref


def strict_json(frame: str) -> Any:
    """Parse as RFC 8259 JSON only: no NaN/Infinity, no overflowing numbers, UTF-8 encodable."""

    def refuse(name: str) -> float:
        raise ValueError(f"{name} is not JSON")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} overflows")
        return value

    frame.encode()  # a lone surrogate raises UnicodeEncodeError
    return json.loads(frame, parse_constant=refuse, parse_float=finite)


#: Frames Python's json module would take, but that are not JSON (RFC 8259 §6, §8.2).
NOT_JSON: list[str | bytes] = [
    '{"type": "ice-servers", "n": 1e999}',
    '{"type": "ice-servers", "n": -1E+400}',
    '{"type": "ice-servers", "n": NaN}',
    '{"type": "ice-servers", "n": Infinity}',
    '{"type": "ice-servers", "n": [-Infinity]}',
    '{"type": "join-room", "room": "r", "x": "\\ud800"}',
    '{"type": "offer", "to": "p", "sdp": {"type": "offer", "sdp": "v=0 \\uDC00"}}',
    '{"type": "offer", "to": "p", "sdp": {"type": "offer", "sdp": "\\ude00\\ud83d"}}',
    b'{"type": "ice-servers", "s": "\xed\xa0\x80"}',  # a surrogate encoded as if it were UTF-8 (CESU-8)
    '{"type": "ice-servers", "s": "\ud800"}',  # a str holding a surrogate already
]


@pytest.mark.parametrize("data", NOT_JSON, ids=range(len(NOT_JSON)))
def test_non_finite_numbers_and_lone_surrogates_are_bad_json(data: str | bytes) -> None:
    with pytest.raises(FrameError) as info:
        protocol.parse(data)
    assert info.value.code is Code.BAD_JSON and info.value.ref is None


def test_valid_escapes_and_numbers_still_parse() -> None:
    text = (
        '{"type": "offer", "to": "p", "sdp": {"type": "offer", "sdp": "\\ud83d\\ude00 \\u00e9 \\\\ud800", "n": 1e308}}'
    )
    kind, msg = protocol.parse(text.encode())
    assert kind == "offer" and msg["sdp"]["sdp"] == "\U0001f600 \u00e9 \\ud800" and msg["sdp"]["n"] == 1e308
    assert strict_json(protocol.relay("offer", "q", msg))["sdp"] == msg["sdp"]


def test_server_frames() -> None:
    ice: list[dict[str, object]] = [{"urls": ["stun:x:3478"]}]
    assert json.loads(protocol.all_users("r", "me", ["a"], ice, 5)) == {
        "type": "all-users",
        "room": "r",
        "you": "me",
        "users": ["a"],
        "iceServers": ice,
        "expiresAt": 5,
    }
    relayed = protocol.relay("offer", "me", {"type": "offer", "to": "a", "sdp": {"type": "offer"}, "from": "x", "z": 1})
    assert json.loads(relayed) == {"type": "offer", "from": "me", "sdp": {"type": "offer"}}
    assert json.loads(protocol.error(Code.ROOM_FULL)) == {
        "type": "error",
        "code": "room-full",
        "message": "room is full",
    }


def test_room_table_join_leave_capacity() -> None:
    t = RoomTable()
    assert t.join("a", "p1", "r", 2) == (None, Joined("r", "a", "p1", ()))
    assert t.join("b", "p2", "r", 2) == (None, Joined("r", "b", "p2", (("a", "p1"),)))
    assert t.join("c", "p1", "r", 2) is None
    assert t.join("a", "p1", "r", 2) == (None, Joined("r", "a", "p1", (("b", "p2"),), again=True))
    assert t.join("a", "p1", "s", 2) == (Left("r", "a", (("b", "p2"),)), Joined("s", "a", "p1", ()))
    assert t.leave("b") == Left("r", "b", ())
    assert t.leave("b") is None
    assert t.rooms == {"s": {"a": "p1"}} and t.where == {"a": "s"}
    t.put("s", (("x", "p3"), ("a", "p1")))
    assert list(t.rooms["s"]) == ["x", "a"] and t.room_of("x") == "s"
    t.drop("s")
    assert t.rooms == {} and t.where == {}


def test_push_schedule() -> None:
    assert push_at(now=1000, expires_at=4600, margin=300) == 4300
    assert push_at(now=1000, expires_at=1060, margin=300) == 1001  # margin ≥ ttl: bounded below
    assert push_at(now=1000, expires_at=1060, margin=300, floor=5) == 1005


class Sink:
    """A Link that records what the hub sends."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.dropped: list[int] = []

    def push(self, frame: str) -> None:
        self.frames.append(frame)

    def drop(self, code: int, reason: str) -> None:
        self.dropped.append(code)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    cfg = write_config(tmp_path, signaling={"room_capacity": 2})
    loop = asyncio.new_event_loop()
    ice = IceProvider(cfg, KeySource(cfg.secrets_path), NoHealth())
    hub = Hub(Limits(capacity=2, rate=1e9, burst=10**9), ice, MemoryBackend(), Stats(), loop)
    loop.run_until_complete(hub.backend.start(hub))
    try:
        yield hub
    finally:
        hub.close()
        loop.close()


def check_frame(frame: str) -> dict[str, Any]:
    msg = strict_json(frame)
    assert isinstance(msg, dict) and msg["type"] in SERVER_TYPES
    if msg["type"] == "error":
        assert msg["code"] in KNOWN_CODES and isinstance(msg["message"], str)
    return msg


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4),  # lone surrogates
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
peer_ids = st.sampled_from(["A", "B", "C", "A", "B", "nobody", ""]) | st.text(max_size=70)
sdps = st.fixed_dictionaries({"type": st.sampled_from(["offer", "answer", "nope"])}, optional={"sdp": st.text()})
shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_TYPES | SERVER_TYPES | {"x"}))},
    optional={
        "room": st.sampled_from(["r1", "r2", "r3", "bad room", ""]) | json_values,
        "to": peer_ids | json_values,
        "sdp": sdps | json_values,
        "candidate": st.none() | st.fixed_dictionaries({"candidate": st.text(max_size=10)}) | json_values,
    },
)
relays = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["offer", "answer", "ice-candidate"]),
        "to": st.sampled_from(["A", "B", "C"]),
        "sdp": sdps,
        "candidate": st.none() | st.fixed_dictionaries({"candidate": st.text(max_size=10)}),
    }
)
joins = st.fixed_dictionaries({"type": st.just("join-room"), "room": st.sampled_from(["r1", "r2", "r3"])}) | st.just(
    {"type": "leave-room"}
)
frames = st.one_of(
    relays.map(json.dumps),
    joins.map(json.dumps),
    shaped.map(json.dumps),
    shaped.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
)
steps = st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), frames, st.booleans() | st.just(False)), max_size=6)
BASELINE = {"A": "r1", "B": "r1", "C": "r2"}


#: Per hub, the fuzzer's three peers (made once per hub, reused across examples).
_SINKS: weakref.WeakKeyDictionary[Hub, dict[str, tuple[Peer, Sink]]] = weakref.WeakKeyDictionary()


def _peers(hub: Hub) -> dict[str, tuple[Peer, Sink]]:
    sinks = _SINKS.get(hub)
    if sinks is None:
        sinks = {}
        for name in BASELINE:
            sink = Sink()
            peer = hub.connect(name, "local", sink)
            hub.peers[name] = hub.peers.pop(peer.id)  # readable ids so the fuzzer can address them
            peer.id = name
            sinks[name] = (peer, sink)
        _SINKS[hub] = sinks
    return sinks


def run_script(hub: Hub, script: list[tuple[str, str | bytes, bool]]) -> None:
    """Feed frames to the hub; check every reply and the room invariants after each one."""
    sinks = _peers(hub)
    for name, room in BASELINE.items():  # start each example from A and B in r1, C in r2
        if sinks[name][0].room != room:
            hub.on_frame(sinks[name][0], json.dumps({"type": "join-room", "room": room}).encode())
    for sender, frame, binary in script:
        peer = sinks[sender][0]
        for _, sink in sinks.values():
            sink.frames.clear()
        hub.on_frame(peer, frame.encode() if isinstance(frame, str) and not binary else frame, binary)
        for name, (p, sink) in sinks.items():
            for out in sink.frames:
                msg = check_frame(out)
                if msg["type"] in ("offer", "answer", "ice-candidate"):
                    assert msg["from"] == sender and p.room == peer.room and name != sender
            assert not sink.dropped
        # the hub's view matches each peer's own idea of its room; rooms respect capacity
        for p, _ in sinks.values():
            assert hub.view.room_of(p.id) == p.room
        assert all(len(members) <= hub.limits.capacity for members in hub.view.rooms.values())


FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(script=steps)
def test_fuzzed_frames_never_escape_and_replies_are_valid(
    hub: Hub, script: list[tuple[str, str | bytes, bool]]
) -> None:
    run_script(hub, script)


def test_fuzzing_reaches_every_outcome(hub: Hub) -> None:
    """The fuzz strategy is not vacuous: it relays, fills rooms and hits the error codes."""

    @settings(FUZZ, max_examples=500, derandomize=True, database=None)
    @given(script=steps)
    def explore(script: list[tuple[str, str | bytes, bool]]) -> None:
        run_script(hub, script)

    explore()
    assert sum(hub.stats.relayed.values()) > 0
    for code in ("bad-json", "unknown-type", "bad-field", "not-in-room", "unknown-peer", "room-full"):
        assert hub.stats.errors[code] > 0, code


def test_hub_answers_every_garbage_frame(hub: Hub) -> None:
    sink = Sink()
    peer = hub.connect("u", None, sink)
    for i in range(1000):
        hub.on_frame(peer, bytes((i * 7 + j) % 256 for j in range(64)), i % 2 == 0)
    assert len(sink.frames) == 1000 and all(check_frame(f)["code"] == "bad-json" for f in sink.frames)
    assert hub.stats.errors["bad-json"] == 1000
