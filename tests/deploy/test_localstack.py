"""The process supervisor's handling with real processes: start, keep, SIGKILL fallback, pid reuse."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.daemons import free_port
from tests.helpers.deploy import alive
from turnkit import supervisor
from turnkit.errors import DaemonError
from turnkit.supervisor import Layout, Listen, Service

#: A TCP listener that ignores SIGTERM (so only SIGKILL ends it).
STUBBORN = """
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    time.sleep(1)
"""


def service(tmp_path: Path, port: int, script: str = STUBBORN) -> Service:
    path = tmp_path / "server.py"
    path.write_text(script)
    return Service(
        name="stubborn",
        argv=(sys.executable, str(path), str(port)),
        env={},
        listens=(Listen("127.0.0.1", port, "tcp", "signaling.port"),),
        inputs=(path,),
    )


def test_stop_escalates_to_sigkill_and_cleans_up(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "state")
    svc = service(tmp_path, free_port())
    assert supervisor.ensure(lay, svc, lambda _: None) == "started"
    rec = supervisor.running(lay, "stubborn")
    assert rec is not None and alive(rec.pid)
    assert supervisor.ensure(lay, svc, lambda _: None) == "kept"

    assert supervisor.stop(lay, "stubborn", lambda _: None, timeout=1.0)
    assert not alive(rec.pid)
    assert not lay.pidfile("stubborn").exists()


def test_changed_input_restarts(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "state")
    svc = service(tmp_path, free_port())
    supervisor.ensure(lay, svc, lambda _: None)
    first = supervisor.running(lay, "stubborn")
    (tmp_path / "server.py").write_text(STUBBORN + "\n# changed\n")
    try:
        assert supervisor.ensure(lay, svc, lambda _: None) == "restarted"
        second = supervisor.running(lay, "stubborn")
        assert first is not None and second is not None and second.pid != first.pid
        assert not alive(first.pid)
    finally:
        supervisor.stop(lay, "stubborn", lambda _: None, timeout=1.0)


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    """A pidfile whose pid now runs another program (here: this test) is stale, not ours to kill."""
    lay = Layout(tmp_path / "state")
    lay.run.mkdir(parents=True)
    record = {"name": "signaling", "pid": os.getpid(), "fingerprint": "x", "argv": ["turnkit", "signaling", "serve"]}
    lay.pidfile("signaling").write_text(json.dumps(record))
    assert supervisor.running(lay, "signaling") is None
    assert supervisor.stop(lay, "signaling", lambda _: None) is False
    assert not lay.pidfile("signaling").exists()


def test_a_service_that_dies_at_start_is_one_line_with_its_log(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "state")
    svc = service(tmp_path, free_port(), script="import sys; sys.exit(7)\n")
    with pytest.raises(DaemonError) as info:
        supervisor.start(lay, svc, lambda _: None)
    assert str(info.value) == f"stubborn exited at start with status 7 (see {lay.logfile('stubborn')})"
    assert not lay.pidfile("stubborn").exists()


def test_a_missing_program_is_one_line(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "state")
    svc = Service("coturn-turn-1", ("turnserver-not-installed", "-c", "x"), {}, (), ())
    with pytest.raises(DaemonError) as info:
        supervisor.start(lay, svc, lambda _: None)
    assert str(info.value) == "coturn-turn-1: cannot run `turnserver-not-installed`: No such file or directory"


def test_an_address_that_is_not_local_is_named(tmp_path: Path) -> None:
    svc = Service("x", ("true",), {}, (Listen("192.0.2.1", free_port(), "udp", "ports.listening"),), ())
    with pytest.raises(supervisor.PortInUse) as info:
        supervisor.check_ports(svc)
    assert str(info.value).endswith("on 192.0.2.1 cannot be bound: address not available")
