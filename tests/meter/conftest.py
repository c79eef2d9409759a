"""Fixtures shared with the signaling tests (an in-process signaling server)."""

from tests.signaling.conftest import start_server  # noqa: F401
