"""The `daemon` marker's guard (tests/conftest.py): which child processes count as daemons, and that it bites."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import DaemonInUnmarkedTest, daemon_in


@pytest.mark.parametrize(
    ("argv", "daemon"),
    [
        (["turnserver", "-c", "turnserver.conf"], "turnserver"),
        (["taskset", "-c", "0", "/usr/bin/redis-server", "--port", "0"], "redis-server"),
        ("nginx -c /etc/nginx/nginx.conf", "nginx"),
        (["/venv/bin/turnkit", "signaling", "serve", "--port", "1"], "signaling serve"),
        (["/venv/bin/turnkit", "deploy", "--region", "local"], "deploy"),
        ([sys.executable, "-m", "bench", "--quick"], "-m bench"),
        (["/usr/bin/chromium", "--headless"], "chromium"),
        (["nginx", "-t", "-c", "x.conf"], None),
        (["turnserver", "--version"], None),
        (["/venv/bin/turnkit", "render", "--region", "local"], None),
        (["openssl", "x509", "-noout"], None),
    ],
)
def test_daemon_in_names_what_would_start(argv: list[str] | str, daemon: str | None) -> None:
    assert daemon_in(argv) == daemon


def test_an_unmarked_test_cannot_start_a_daemon() -> None:
    with pytest.raises(DaemonInUnmarkedTest, match="test_an_unmarked_test_cannot_start_a_daemon starts 'redis-server'"):
        subprocess.run(["redis-server", "--port", "0"], check=False, timeout=10)
    assert subprocess.run(["true"], check=False).returncode == 0  # short tools still run


@pytest.mark.daemon
def test_a_marked_test_may(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("daemon") is not None
    done = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=True)
    assert "Redis server" in done.stdout
