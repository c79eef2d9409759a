"""Fixtures for probe tests: a project with a keyring, and real coturn started from its rendered config."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import daemons
from tests.helpers.probe import Project
from turnkit import keyring


@pytest.fixture
def project(tmp_path: Path) -> Project:
    cfg = daemons.local_config(tmp_path)
    ring = keyring.init(int(time.time()))
    keyring.save(cfg.secrets_path, ring)
    return Project(tmp_path, cfg, ring)


@pytest.fixture
def coturn(project: Project) -> Iterator[daemons.Coturn]:
    """coturn as the local region renders it (loopback peers allowed)."""
    server = project.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port."""
    port = daemons.free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        daemons.wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
