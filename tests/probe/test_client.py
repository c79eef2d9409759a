"""Failure classification: every exception a step can raise maps to a kind and a one-line reason."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path

import pytest
from aioice import stun

from turnkit import pki
from turnkit.probe import client
from turnkit.probe.result import Failure


def stun_error(code: int, text: str) -> stun.TransactionFailed:
    response = stun.Message(stun.Method.ALLOCATE, stun.Class.ERROR)
    response.attributes["ERROR-CODE"] = (code, text)
    return stun.TransactionFailed(response)


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (stun_error(401, "Unauthorized"), Failure.UNAUTHORIZED, "401 Unauthorized"),
        (stun_error(403, "Forbidden IP"), Failure.FORBIDDEN, "403 Forbidden IP"),
        (stun_error(508, "Cannot create socket"), Failure.OTHER, "508 Cannot create socket"),
        (stun.TransactionTimeout(), Failure.TIMEOUT, "no response (STUN retransmissions exhausted)"),
        (TimeoutError(), Failure.TIMEOUT, "timed out"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Failure.DNS, "DNS: Name or service not known"),
        (ConnectionRefusedError(111, "Connection refused"), Failure.REFUSED, "connection refused"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), Failure.TLS, "TLS: [SSL: WRONG_VERSION_NUMBER] wrong version number"),
        (OSError(101, "Network is unreachable"), Failure.OTHER, "Network is unreachable"),
        (ValueError("odd"), Failure.OTHER, "ValueError: odd"),
    ],
)  # fmt: skip
def test_classify(exc: BaseException, kind: Failure, reason: str) -> None:
    assert client.classify(exc) == (kind, reason)


def test_cert_days_left(tmp_path: Path) -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    files = pki.make_ca_and_cert(tmp_path, ["127.0.0.1"], now, days=20)
    der = ssl.PEM_cert_to_DER_cert(
        files.cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    assert client.cert_days_left(der, now.timestamp()) == 20.0
    assert client.cert_days_left(der, (now + dt.timedelta(days=21)).timestamp()) == -1.0
