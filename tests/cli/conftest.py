"""Fixtures for the CLI input tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port standing in for the statsdb and the central store. The commands under test must
    fail before they connect: the test errors at teardown if anything connected."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.accept()  # nobody connected
