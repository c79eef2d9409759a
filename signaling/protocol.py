"""SIGNALING.md v1 frames: parse and validate client frames, build server frames. Pure, no I/O.

Validation is plain dict checks (this runs for every relayed message); every failure maps to one
error code from `ERRORS`. Frames are JSON objects in WebSocket text frames (RFC 6455 §5.6).

Only what RFC 8259 calls JSON is accepted, so only valid JSON is ever relayed: text must be strict UTF-8,
`NaN`/`Infinity` and numbers that overflow a double (`1e999`) are refused, and so are `\\uD800`-style
escapes that leave a lone surrogate (RFC 8259 §8.2: not encodable as UTF-8).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

#: Compact, UTF-8 preserving encoder: a relayed frame is about as long as the one received.
encode: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PEER_ID = 64
SDP_TYPES = frozenset({"offer", "answer", "pranswer", "rollback"})
#: A `\\u` escape of a UTF-16 surrogate; only then can a parsed string hold a lone one.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class _NotJson(ValueError):
    """A JSON extension Python accepts and RFC 8259 does not."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson("number out of range")
    return value


def _no_constant(name: str) -> float:
    raise _NotJson(f"{name} is not JSON")


#: Python's decoder (C scanner) minus NaN, Infinity and overflowing numbers.
_decode: Callable[[str], Any] = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant).decode


def _has_lone_surrogate(text: str, msg: object) -> bool:
    """True when a `\\uD8xx`-style escape in `text` decoded to an unpaired surrogate in `msg`."""
    if SURROGATE_ESCAPE.search(text) is None:
        return False
    try:
        encode(msg).encode()
    except UnicodeEncodeError:
        return True
    return False


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
        text = data.decode() if isinstance(data, bytes) else data  # strict UTF-8: no encoded surrogates
        if type(data) is str and not data.isascii():
            data.encode()  # a str caller may hand us surrogates directly
        msg = _decode(text)
    except _NotJson as exc:
        raise FrameError(Code.BAD_JSON, f"frame is not valid JSON: {exc}") from None
    except (ValueError, TypeError, RecursionError):
        raise FrameError(Code.BAD_JSON, "frame is not valid JSON") from None
    if "\\u" in text and _has_lone_surrogate(text, msg):
        raise FrameError(Code.BAD_JSON, "frame is not valid JSON: lone surrogate in a string")
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


def relay(kind: str, sender: str, msg: dict[str, Any]) -> str:
    """The relayed frame: server-stamped `from`, the payload field, nothing else of the sender's."""
    field = RELAY_FIELDS[kind]
    return encode({"type": kind, "from": sender, field: msg.get(field)})


def ice_servers(ice: list[dict[str, object]], expires_at: int) -> str:
    return encode({"type": "ice-servers", "iceServers": ice, "expiresAt": expires_at})


def error(code: Code, message: str | None = None, ref: str | None = None) -> str:
    frame: dict[str, str] = {"type": "error", "code": code.value, "message": message or ERRORS[code]}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)
