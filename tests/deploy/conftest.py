"""A local region on free loopback ports, run through the real CLI; always taken down afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.deploy import Site, write_site
from turnkit import localstack


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = write_site(tmp_path)
    try:
        yield s
    finally:
        localstack.down(s.load(), "local", lambda _: None)


@pytest.fixture
def site2(tmp_path: Path) -> Iterator[Site]:
    """Two coturn nodes (127.0.0.1 and 127.0.0.2, same ports)."""
    s = write_site(tmp_path, nodes=2)
    try:
        yield s
    finally:
        localstack.down(s.load(), "local", lambda _: None)
