"""Run checks over many endpoints at once: bounded concurrency, a timeout per check."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence

from turnkit.errors import InputError
from turnkit.probe import client
from turnkit.probe.checks import CHECKS, PLAN, CredentialSource, Options, Probe
from turnkit.probe.result import CheckFailed, CheckResult, CheckSkipped, Endpoint, Failure, Status

#: Called with each finished check (the CLI advances its progress bar); not `turnkit.progress.Progress`.
OnResult = Callable[[CheckResult], None]


def plan(endpoints: Sequence[Endpoint], only: Sequence[str] = ()) -> list[tuple[Endpoint, str]]:
    """Every (endpoint, check) pair to run, per the PLAN table, optionally limited to `only`.

    A check runs once per server address and transport even if several URLs name it
    (`stun:h:3478` and `turn:h:3478?transport=udp` share one STUN check).
    """
    pairs, seen = [], set()
    for ep in endpoints:
        for check in PLAN[(ep.scheme, ep.transport)]:
            key = (ep.host, ep.port, ep.transport, check)
            if (only and check not in only) or key in seen:
                continue
            seen.add(key)
            pairs.append((ep, check))
    return pairs


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """System CAs, or only `ca_file` when given."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"--ca-file: cannot load `{ca_file}`: {getattr(exc, 'strerror', None) or exc}") from None


def _result(probe: Probe, status: Status, start: float, **kw: object) -> CheckResult:
    ep = probe.endpoint
    return CheckResult(
        check=probe.check,
        region=ep.region,
        node=ep.node,
        transport=ep.transport,
        status=status,
        duration=time.perf_counter() - start,
        url=ep.url,
        **kw,  # type: ignore[arg-type]
    )


async def run_check(probe: Probe) -> CheckResult:
    """Run one check under the per-check timeout; any failure becomes a classified result."""
    start = time.perf_counter()
    try:
        async with asyncio.timeout(probe.options.timeout):
            try:
                details = await CHECKS[probe.check](probe)
            finally:
                await probe.close()
    except CheckSkipped as exc:
        return _result(probe, Status.SKIP, start, reason=str(exc))
    except CheckFailed as exc:
        return _result(probe, Status.FAIL, start, failure=exc.failure, reason=exc.reason, details=exc.details)
    except TimeoutError:
        reason = f"{probe.step}: no answer within {probe.options.timeout:g}s"
        return _result(probe, Status.FAIL, start, failure=Failure.TIMEOUT, reason=reason)
    except Exception as exc:
        kind, why = client.classify(exc)
        return _result(probe, Status.FAIL, start, failure=kind, reason=f"{probe.step}: {why}")
    return _result(probe, Status.PASS, start, details=details)


async def run(
    endpoints: Sequence[Endpoint],
    credential_for: CredentialSource,
    options: Options,
    only: Sequence[str] = (),
    on_result: OnResult | None = None,
) -> list[CheckResult]:
    """Probe all endpoints concurrently (at most `options.concurrency` checks at a time)."""
    context = ssl_context(options.ca_file)
    gate = asyncio.Semaphore(options.concurrency)

    async def one(ep: Endpoint, check: str) -> CheckResult:
        async with gate:
            result = await run_check(Probe(ep, check, options, credential_for, context))
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(ep, check) for ep, check in plan(endpoints, only))))
