"""What a probe run is made of: endpoints to check and typed check results. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Transport(StrEnum):
    """How the TURN control connection is carried (RFC 8656 §3.1; TLS per RFC 7065 `turns:`)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


class Failure(StrEnum):
    """Why a check failed: the step's outcome, as short as an operator needs it."""

    TIMEOUT = "timeout"
    UNAUTHORIZED = "401"
    FORBIDDEN = "403"
    TLS = "tls"
    DNS = "dns"
    REFUSED = "refused"
    ALLOWED = "allowed"  # the server accepted what it must refuse (open relay, forbidden peer, expired credential)
    OTHER = "other"


@dataclass(frozen=True)
class Credential:
    """A TURN username/password; `secret` (when known) lets checks mint an expired credential."""

    username: str
    password: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password=<redacted>)"


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a node: `stun`/`turn` over udp/tcp/tls at host:port."""

    region: str
    node: str
    host: str
    port: int
    transport: Transport
    scheme: str = "turn"  # stun | turn
    expected_ip: str | None = None  # the relayed address should be this (node's public IP)
    loopback_only: bool = False  # a node on this machine: hardening asks about loopback peers only
    loopback_allowed: bool = False  # a `local` region relays to loopback on purpose
    server_name: str | None = None  # TLS SNI / certificate name (default: host)

    @property
    def url(self) -> str:
        """The RFC 7064/7065 URI (IPv6 hosts in brackets)."""
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.scheme == "stun":
            return f"stun:{where}?transport={self.transport.value}"
        if self.transport is Transport.TLS:
            return f"turns:{where}?transport=tcp"
        return f"turn:{where}?transport={self.transport.value}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one endpoint, with its timing and, on failure, which step and why."""

    check: str
    region: str
    node: str
    transport: Transport
    status: Status
    duration: float
    failure: Failure | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    url: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "region": self.region,
            "node": self.node,
            "transport": self.transport.value,
            "url": self.url,
            "status": self.status.value,
            "ok": self.ok,
            "duration": round(self.duration, 6),
            "failure": self.failure.value if self.failure else None,
            "reason": self.reason,
            "details": self.details,
        }


class CheckFailed(Exception):
    """Raised inside a check to end it with a classified failure (caught by the runner)."""

    def __init__(self, failure: Failure, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.details = details


class CheckSkipped(Exception):
    """Raised inside a check that cannot run on this endpoint (e.g. no secret to mint with)."""
