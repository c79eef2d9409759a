"""Second opinion: coturn's turnutils_uclient and the relay check agree on pass/fail, breakage by breakage."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

from tests import daemons
from tests.helpers.probe import Project, endpoints, minted
from turnkit import credentials
from turnkit.probe import runner, uclient
from turnkit.probe.checks import Options
from turnkit.probe.result import Credential, Transport

#: uclient's client-to-client mode over TLS (`-t -S -y`) hangs or drops packets intermittently on
#: coturn 4.6.1 even against a healthy server, so the comparison covers UDP and TCP.
TRANSPORTS = (Transport.UDP, Transport.TCP)


async def both_verdicts(
    server: daemons.Coturn, secret: str, uclient_timeout: float = 30
) -> tuple[dict[str, bool], dict[str, uclient.UclientResult]]:
    options = Options(timeout=10.0, ca_file=str(server.certs.ca))
    eps = [ep for ep in endpoints(server) if ep.transport in TRANSPORTS]
    ours = await runner.run(eps, minted(secret), options, only=["relay"])
    c = credentials.issue("uclient", secret, int(time.time()), 600)
    cred = Credential(c.username, c.password)
    ports = {Transport.UDP: server.port, Transport.TCP: server.port, Transport.TLS: server.tls_port}
    runs = await asyncio.gather(
        *(
            uclient.run(
                uclient.command("127.0.0.1", ports[t], t, cred, messages=5, ca_file=str(server.certs.ca)),
                timeout=uclient_timeout,
            )
            for t in TRANSPORTS
        )
    )
    return {r.transport.value: r.ok for r in ours}, {t.value: run for t, run in zip(TRANSPORTS, runs, strict=True)}


def _healthy(project: Project) -> tuple[daemons.Coturn, str]:
    return project.start(), project.secret


def _wrong_secret(project: Project) -> tuple[daemons.Coturn, str]:
    return project.start(), "a-secret-coturn-does-not-know"


def _stopped(project: Project) -> tuple[daemons.Coturn, str]:
    server = project.start()
    server.stop()
    return server, project.secret


def _hardened(project: Project) -> tuple[daemons.Coturn, str]:
    """Loopback peers denied: the two relays on 127.0.0.1 may not talk to each other."""
    return project.start(loopback=False), project.secret


SCENARIOS: dict[str, tuple[Callable[[Project], tuple[daemons.Coturn, str]], bool]] = {
    "healthy": (_healthy, True),
    "wrong secret": (_wrong_secret, False),
    "coturn stopped": (_stopped, False),
    "loopback peers denied": (_hardened, False),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_relay_check_agrees_with_turnutils_uclient(project: Project, scenario: str) -> None:
    start, expected = SCENARIOS[scenario]
    server, secret = start(project)
    try:
        ours, theirs = await both_verdicts(server, secret)
    finally:
        server.stop()
    assert ours == {t.value: expected for t in TRANSPORTS}
    assert {t: r.ok for t, r in theirs.items()} == ours, {t: r.error for t, r in theirs.items()}
    if expected:
        assert all(r.sent > 0 and r.received > 0 for r in theirs.values()), theirs


async def test_relay_range_in_use_both_fail(project: Project) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", daemons.free_port(socket.SOCK_DGRAM)))
        port = squatter.getsockname()[1]
        server = project.start(extra={"coturn_min_port": port, "coturn_max_port": port})
        try:
            # uclient keeps retrying the failed Allocate until killed; that counts as a failure too.
            ours, theirs = await both_verdicts(server, project.secret, uclient_timeout=8)
        finally:
            server.stop()
    assert ours == {"udp": False, "tcp": False}
    assert {t: r.ok for t, r in theirs.items()} == ours


def test_command_never_carries_the_shared_secret() -> None:
    cred = Credential("1800000000:probe", "pw", secret="the-shared-secret")
    argv = uclient.command("127.0.0.1", 3478, Transport.TLS, cred, ca_file="/ca.pem")
    assert "the-shared-secret" not in argv and "-W" not in argv
    assert argv[:2] == ["turnutils_uclient", "-y"] and argv[-1] == "127.0.0.1"
    assert [a for a in argv if a in ("-t", "-S")] == ["-t", "-S"] and "-E" in argv
    assert argv[argv.index("-u") + 1] == "1800000000:probe"
