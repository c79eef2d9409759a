"""The cheaper relay path (issue 13 item 3): msgspec parsing, the spliced relay frame, and text frames framed
by `Connection._write` itself. Behaviour only, no timing; the fuzz tests in test_protocol.py stay as they are."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling import protocol
from signaling.protocol import RELAY_FIELDS, Code, FrameError
from tests.helpers.signaling import StartServer

SDP = "v=0\r\n" + "a=candidate:1 1 udp 2122260223 192.0.2.5 54321 typ host\r\n" * 20

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def reference_relay(kind: str, sender: str, msg: dict[str, Any]) -> Any:
    """What the relayed frame must mean: the stdlib's reading of the plain dict."""
    return {"type": kind, "from": sender, RELAY_FIELDS[kind]: msg.get(RELAY_FIELDS[kind])}


@settings(max_examples=200, deadline=None)
@given(extra=json_values, sdp_text=st.text(), sender=st.text(min_size=1, max_size=64))
def test_spliced_relay_frame_is_the_json_of_the_relayed_fields(extra: Any, sdp_text: str, sender: str) -> None:
    """The frame built from fixed parts is valid JSON with exactly `type`, `from` and the payload."""
    wire = json.dumps({"type": "offer", "to": "p", "sdp": {"type": "offer", "sdp": sdp_text, "x": extra}})
    kind, msg = protocol.parse(wire.encode())
    frame = protocol.relay(kind, sender, msg)
    assert json.loads(frame) == reference_relay(kind, sender, msg)
    assert list(json.loads(frame)) == ["type", "from", "sdp"]


@pytest.mark.parametrize("kind", sorted(RELAY_FIELDS))
def test_relay_keeps_utf8_and_stays_compact(kind: str) -> None:
    payload: Any = {"type": "offer", "sdp": SDP + "ünïcødé 😀"} if kind != "ice-candidate" else {"candidate": "é"}
    wire = json.dumps({"type": kind, "to": "p", RELAY_FIELDS[kind]: payload}, ensure_ascii=False)
    parsed_kind, msg = protocol.parse(wire.encode())
    frame = protocol.relay(parsed_kind, "me", msg)
    assert "😀" in frame or "é" in frame  # not \\u-escaped: a relayed frame is as long as the one received
    assert json.loads(frame) == {"type": kind, "from": "me", RELAY_FIELDS[kind]: payload}
    assert len(frame.encode()) <= len(wire.encode())


def test_missing_candidate_relays_as_null() -> None:
    kind, msg = protocol.parse(b'{"type":"ice-candidate","to":"p","candidate":null}')
    assert json.loads(protocol.relay(kind, "me", msg)) == {"type": "ice-candidate", "from": "me", "candidate": None}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"type":"ice-servers","n":1e999}', "frame is not valid JSON: number out of range"),
        (b'{"type":"ice-servers","n":NaN}', "frame is not valid JSON"),
        (b'{"type":"ice-servers","s":"\\ud800"}', "frame is not valid JSON"),
        (b'{"type":"ice-servers","s":"\xc0\xaf"}', "frame is not valid JSON"),  # overlong UTF-8
        (b"\xef\xbb\xbf{}", "frame is not valid JSON"),  # a BOM is not JSON text (RFC 8259 §8.1)
        (b'{"type":"ice-servers"} {}', "frame is not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "frame is not valid JSON"),
    ],
)
def test_bad_json_messages(data: bytes, message: str) -> None:
    with pytest.raises(FrameError) as info:
        protocol.parse(data)
    assert (info.value.code, info.value.message) == (Code.BAD_JSON, message)


def test_big_integers_are_valid_json_and_relayed_exactly() -> None:
    big = 2**100
    kind, msg = protocol.parse(f'{{"type":"ice-candidate","to":"p","candidate":{{"candidate":"c","n":{big}}}}}')
    assert json.loads(protocol.relay(kind, "me", msg))["candidate"]["n"] == big


@pytest.mark.parametrize("length", [125, 126, 65535, 65536, 70_000])
async def test_frames_of_every_length_form_reach_the_peer_intact(start_server: StartServer, length: int) -> None:
    """7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2) at their edges, as framed by `Connection._write`."""
    async with (
        start_server(signaling={"max_frame_bytes": 200_000}) as srv,
        srv.client("alice", max_size=None) as a,
        srv.client("bob", max_size=None) as b,
    ):
        first = await a.join("sizes")
        second = await b.join("sizes")
        await a.expect("user-joined")
        overhead = len(protocol.relay("offer", second["you"], {"sdp": {"type": "offer", "sdp": ""}}).encode())
        body = "x" * (length - overhead)
        assert len(protocol.relay("offer", second["you"], {"sdp": {"type": "offer", "sdp": body}}).encode()) == length
        await b.send(type="offer", to=first["you"], sdp={"type": "offer", "sdp": body})
        got = await a.expect("offer")
        assert got == {"type": "offer", "from": second["you"], "sdp": {"type": "offer", "sdp": body}}
        # The connection is still in step after the frame: the next one arrives as well.
        await b.send(type="ice-candidate", to=first["you"], candidate={"candidate": "ü"})
        assert (await a.expect("ice-candidate"))["candidate"] == {"candidate": "ü"}
