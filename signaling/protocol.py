"""SIGNALING.md v1 frames: parse and validate client frames, build server frames. Pure, no I/O.

Validation is plain dict checks (this runs for every relayed message); every failure maps to one
error code from `ERRORS`. Frames are JSON objects in WebSocket text frames (RFC 6455 §5.6).

Only what RFC 8259 calls JSON is accepted, so only valid JSON is ever relayed: msgspec's decoder (C) takes
strict UTF-8 only and refuses `NaN`/`Infinity`, numbers that overflow a double (`1e999`) and `\\uD800`-style
escapes that leave a lone surrogate (RFC 8259 §8.2). A relayed frame is the server's own prefix with the
validated payload re-encoded by msgspec (compact, UTF-8 kept): about as long as the frame received.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_encode_bytes: Callable[[Any], bytes] = _encoder.encode
_decode: Callable[[bytes | str], Any] = msgspec.json.Decoder().decode


def encode(obj: Any) -> str:
    """Compact, UTF-8 preserving JSON text."""
    return _encode_bytes(obj).decode()


ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PEER_ID = 64
SDP_TYPES = frozenset({"offer", "answer", "pranswer", "rollback"})


class Code(StrEnum):
    """Error codes of the `error` frame."""

    BAD_JSON = "bad-json"
    UNKNOWN_TYPE = "unknown-type"
    BAD_FIELD = "bad-field"
    ROOM_FULL = "room-full"
    NOT_IN_ROOM = "not-in-room"
    UNKNOWN_PEER = "unknown-peer"
    RATE_LIMITED = "rate-limited"
    TOO_LARGE = "too-large"
    RESUME_FAILED = "resume-failed"


#: Default human text per code (the frame handler may say something more specific).
ERRORS: dict[Code, str] = {
    Code.BAD_JSON: "frame is not a JSON object",
    Code.UNKNOWN_TYPE: "unknown message type",
    Code.BAD_FIELD: "invalid field",
    Code.ROOM_FULL: "room is full",
    Code.NOT_IN_ROOM: "join a room first",
    Code.UNKNOWN_PEER: "no such peer in your room",
    Code.RATE_LIMITED: "too many messages; slow down or be disconnected",
    Code.TOO_LARGE: "relayed message would exceed the frame size limit",
    Code.RESUME_FAILED: "session cannot be resumed; join again",
}

#: Client → server message types that relay to another member, and the payload field each carries.
RELAY_FIELDS: dict[str, str] = {"offer": "sdp", "answer": "sdp", "ice-candidate": "candidate"}

CLIENT_TYPES = frozenset({"join-room", "leave-room", "ice-servers", *RELAY_FIELDS})
SERVER_TYPES = frozenset(
    {"all-users", "user-joined", "user-left", "offer", "answer", "ice-candidate", "ice-servers", "error"}
)


class FrameError(Exception):
    """A client frame that cannot be acted on; becomes an `error` frame, never a disconnect."""

    def __init__(self, code: Code, message: str | None = None, ref: str | None = None) -> None:
        super().__init__(message or ERRORS[code])
        self.code = code
        self.message = message or ERRORS[code]
        self.ref = ref[:MAX_PEER_ID] if ref is not None else None

    def frame(self) -> str:
        return error(self.code, self.message, self.ref)


def _check_room(msg: dict[str, Any]) -> None:
    room = msg.get("room")
    if not isinstance(room, str) or not ROOM_RE.fullmatch(room):
        raise FrameError(Code.BAD_FIELD, "room: must be 1-64 characters of A-Za-z0-9_-", "join-room")


def _check_to(msg: dict[str, Any], kind: str) -> None:
    to = msg.get("to")
    if not isinstance(to, str) or not 0 < len(to) <= MAX_PEER_ID:
        raise FrameError(Code.BAD_FIELD, "to: must be a peer id", kind)


def _check_sdp(msg: dict[str, Any], kind: str) -> None:
    """RTCSessionDescriptionInit: {type, sdp?} (W3C webrtc §4.8.1); extra keys pass through."""
    _check_to(msg, kind)
    sdp = msg.get("sdp")
    if not isinstance(sdp, dict) or sdp.get("type") not in SDP_TYPES:
        raise FrameError(Code.BAD_FIELD, "sdp: must be an RTCSessionDescriptionInit object", kind)
    body = sdp.get("sdp")
    if body is not None and not isinstance(body, str):
        raise FrameError(Code.BAD_FIELD, "sdp.sdp: must be a string", kind)


def _check_offer(msg: dict[str, Any]) -> None:
    _check_sdp(msg, "offer")


def _check_answer(msg: dict[str, Any]) -> None:
    _check_sdp(msg, "answer")


def _check_candidate(msg: dict[str, Any]) -> None:
    """RTCIceCandidateInit or null (end of candidates), W3C webrtc §4.8.2."""
    _check_to(msg, "ice-candidate")
    cand = msg.get("candidate", ...)
    if cand is None:
        return
    if not isinstance(cand, dict) or not isinstance(cand.get("candidate", ""), str):
        raise FrameError(Code.BAD_FIELD, "candidate: must be an RTCIceCandidateInit object or null", "ice-candidate")


def _check_nothing(msg: dict[str, Any]) -> None:
    return None


#: Per type, the validator of its fields (raises FrameError).
VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "join-room": _check_room,
    "offer": _check_offer,
    "answer": _check_answer,
    "ice-candidate": _check_candidate,
    "leave-room": _check_nothing,
    "ice-servers": _check_nothing,
}


def parse(data: str | bytes, binary: bool = False) -> tuple[str, dict[str, Any]]:
    """One client frame (text as str or raw UTF-8 bytes) → (type, message), or FrameError."""
    if binary:
        raise FrameError(Code.BAD_JSON, "binary frames are not accepted; send JSON text frames")
    try:
        msg = _decode(data if isinstance(data, bytes) else data.encode())  # str.encode: no surrogates either
    except msgspec.ValidationError:  # the one number case: a float beyond a double's range
        raise FrameError(Code.BAD_JSON, "frame is not valid JSON: number out of range") from None
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        raise FrameError(Code.BAD_JSON, "frame is not valid JSON") from None
    if type(msg) is not dict:
        raise FrameError(Code.BAD_JSON, "frame must be a JSON object")
    kind = msg.get("type")
    if type(kind) is not str:
        raise FrameError(Code.BAD_FIELD, "type: must be a string")
    check = VALIDATORS.get(kind)
    if check is None:
        raise FrameError(Code.UNKNOWN_TYPE, f"unknown message type (known: {', '.join(sorted(VALIDATORS))})", kind)
    check(msg)
    return kind, msg


# Server → client frames (SIGNALING.md "Server → client").


def all_users(
    room: str,
    you: str,
    users: list[str],
    ice: list[dict[str, object]],
    expires_at: int,
    resume: str | None = None,
    resumed: bool = False,
) -> str:
    frame: dict[str, object] = {
        "type": "all-users",
        "room": room,
        "you": you,
        "users": users,
        "iceServers": ice,
        "expiresAt": expires_at,
    }
    if resume is not None:
        frame["resume"] = resume  # docs/signaling.md "Session resume"
    if resumed:
        frame["resumed"] = True
    return encode(frame)


def user_joined(peer: str) -> str:
    return encode({"type": "user-joined", "id": peer})


def user_left(peer: str) -> str:
    return encode({"type": "user-left", "id": peer})


#: Per relayed type, the frame's fixed parts: `{"type":"offer","from":` and `,"sdp":`.
RELAY_PARTS: dict[str, tuple[bytes, bytes]] = {
    kind: (b'{"type":%s,"from":' % _encode_bytes(kind), b",%s:" % _encode_bytes(field))
    for kind, field in RELAY_FIELDS.items()
}


def relay(kind: str, sender: str, msg: dict[str, Any]) -> str:
    """The relayed frame: server-stamped `from`, the payload field, nothing else of the sender's.

    Same document as `encode({"type": kind, "from": sender, field: msg.get(field)})`, spliced from
    fixed parts so only the sender id and the (already validated) payload are encoded.
    """
    head, sep = RELAY_PARTS[kind]
    payload = _encode_bytes(msg.get(RELAY_FIELDS[kind]))
    return b"".join((head, _encode_bytes(sender), sep, payload, b"}")).decode()


def ice_servers(ice: list[dict[str, object]], expires_at: int, turn: str = "ok") -> str:
    """The `ice-servers` reply; `turn` other than "ok" says why it carries no TURN servers (quotas)."""
    frame: dict[str, object] = {"type": "ice-servers", "iceServers": ice, "expiresAt": expires_at}
    if turn != "ok":
        frame["turn"] = turn
    return encode(frame)


def error(code: Code, message: str | None = None, ref: str | None = None) -> str:
    frame: dict[str, str] = {"type": "error", "code": code.value, "message": message or ERRORS[code]}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)
