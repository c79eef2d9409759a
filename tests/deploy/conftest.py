"""A local region on free loopback ports, run through the real CLI; always taken down afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.deploy import Site, local_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with local_site(tmp_path) as s:
        yield s


@pytest.fixture
def site2(tmp_path: Path) -> Iterator[Site]:
    """Two coturn nodes (127.0.0.1 and 127.0.0.2, same ports)."""
    with local_site(tmp_path, nodes=2) as s:
        yield s
