"""coturn's own client, `turnutils_uclient`, as a second opinion on a node (and for benchmarks).

`-y` makes two clients on the node relay to each other, the same path as the `relay` check.
The credential goes in as `-u/-w` (a short-lived REST credential), never the shared secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass

from turnkit.probe.result import Credential, Transport

BINARY = "turnutils_uclient"

#: Transport → uclient flags (-S is DTLS on UDP and TLS on TCP).
_FLAGS: dict[Transport, tuple[str, ...]] = {
    Transport.UDP: (),
    Transport.TCP: ("-t",),
    Transport.TLS: ("-t", "-S"),
}

_RECV = re.compile(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", re.MULTILINE)
_RTT = re.compile(r"Average round trip delay ([\d.]+) ms")


@dataclass(frozen=True)
class UclientResult:
    ok: bool
    returncode: int | None
    sent: int
    received: int
    rtt_avg_ms: float | None
    duration: float
    error: str


def command(
    host: str,
    port: int,
    transport: Transport,
    cred: Credential,
    messages: int = 5,
    ca_file: str | None = None,
    binary: str = BINARY,
) -> list[str]:
    """The argv for a client-to-client relay run of `messages` packets."""
    argv = [binary, "-y", "-c", "-n", str(messages), "-m", "1", "-p", str(port), *_FLAGS[transport]]
    if ca_file and transport is Transport.TLS:
        argv += ["-E", ca_file]
    return [*argv, "-u", cred.username, "-w", cred.password, host]


def parse(output: str, returncode: int | None, duration: float) -> UclientResult:
    """Read the final totals; success = exit 0 and at least one packet came back."""
    totals = _RECV.findall(output)
    sent, received = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
    rtt = _RTT.search(output)
    errors = [line.split("ERROR:", 1)[1].strip() for line in output.splitlines() if "ERROR:" in line]
    ok = returncode == 0 and received > 0
    error = errors[0] if errors else ("" if ok else f"exit {returncode}, {received}/{sent} packets back")
    return UclientResult(ok, returncode, sent, received, float(rtt.group(1)) if rtt else None, duration, error)


async def run(argv: list[str], timeout: float = 30.0) -> UclientResult:
    """Run uclient; a run that outlives `timeout` is killed and counts as failed."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return UclientResult(False, None, 0, 0, None, time.perf_counter() - start, f"timed out after {timeout:g}s")
    return parse(out.decode(errors="replace"), proc.returncode, time.perf_counter() - start)
