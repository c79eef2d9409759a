"""Fetch ICE servers from the signaling service exactly as a browser would (`GET /api/ice-servers`)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from turnkit.errors import ExitCode, InputError, TurnkitError

PATH = "/api/ice-servers"


class SignalingError(TurnkitError):
    """The signaling service did not hand out ICE servers: the chain a browser relies on is broken."""

    exit_code = ExitCode.CHECK_FAILED


def endpoint(base: str) -> str:
    """`https://call.example.test` → `https://call.example.test/api/ice-servers`."""
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--via-signaling: expected an http(s):// URL, got {base!r}")
    return base.rstrip("/") + PATH


def _get(url: str, token: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SignalingError(f"signaling: GET {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise SignalingError(f"signaling: GET {url}: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise SignalingError(f"signaling: GET {url}: {exc}") from None
    except ValueError:
        raise SignalingError(f"signaling: GET {url}: answer is not JSON") from None


def get_ice_servers(base: str, token: str, timeout: float = 10.0) -> Any:
    """The parsed `{"iceServers": [...], "ttl": N, "expiresAt": T}` answer (blocking)."""
    return _get(endpoint(base), token, timeout)


async def fetch_ice_servers(base: str, token: str, timeout: float = 10.0) -> Any:
    """`get_ice_servers` off the event loop."""
    return await asyncio.to_thread(get_ice_servers, base, token, timeout)
