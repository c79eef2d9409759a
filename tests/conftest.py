"""The `daemon` marker, applied here and only here, and the guard that keeps unmarked tests daemon-free.

A test is a daemon test when it uses one of DAEMON_FIXTURES (or DAEMON_PARAMS' values), lives in one of
DAEMON_MODULES or is one of DAEMON_TESTS. `make check` runs `pytest -m "not daemon"`; `make test` runs everything. Every test that is
*not* marked runs under a guard: starting one of DAEMON_PROGRAMS (or a turnkit/bench command that starts them)
fails the test with a message naming what to add here. So the marker cannot silently go stale.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
TMP = os.path.realpath(tempfile.gettempdir()) + os.sep

#: Fixtures that start (or need) a daemon: coturn, redis-server, moto_server, the ansible chroot, a local stack.
DAEMON_FIXTURES = frozenset(
    {
        "coturn",  # tests/probe: turnserver
        "redis_url",  # tests/probe: redis-server
        "redis_server",  # tests/signaling: redis-server
        "moto_endpoint",  # tests/provision: moto_server
        "aws_env",  # tests/provision: moto_server behind it
        "target",  # tests/ansible: ansible-playbook into a debootstrap chroot
        "site",  # tests/deploy: the local stack (coturn, signaling, nginx)
        "site2",
        "fleet",  # tests/lab: a deployed lab region (nspawn hosts, pebble, ansible-playbook)
        "lab_site",  # tests/lab: a lab region provisioned by the test
    }
)
#: Parametrized fixtures whose listed values start a daemon (the other values do not).
DAEMON_PARAMS: dict[str, frozenset[object]] = {"backend": frozenset({"redis"})}
#: Modules whose every test starts a daemon (paths relative to tests/).
DAEMON_MODULES = frozenset(
    {
        "ansible/test_fastpath.py",  # ansible-playbook, connection local, files in a temporary dir
        "ansible/test_site.py",  # ansible-playbook against the chroot
        "bench/test_smoke.py",  # python -m bench: every benchmark server
        "certs/test_certbot_pebble.py",  # pebble + certbot
        "certs/test_deploy_hook_store.py",  # redis-server (the usage store the hook restarts)
        "deploy/test_fleet.py",
        "deploy/test_local.py",
        "deploy/test_local_call.py",
        "deploy/test_local_drain.py",
        "deploy/test_local_meter.py",
        "deploy/test_local_rolling.py",
        "deploy/test_localstack.py",
        "deploy/test_rollout.py",
        "deploy/test_rotation.py",
        "lab/test_fleet.py",  # nspawn hosts, pebble, ansible-playbook, chromium behind NAT
        "lab/test_provision.py",  # nspawn hosts, pebble and challtestsrv on the bridge
        "meter/test_meter_coturn.py",  # coturn + statsdb redis + TLS central redis + turnkit meter
        "meter/test_quota.py",  # redis-server + signaling server
        "meter/test_usage_cli.py",  # redis-server
        "ops/test_ansible_secrets.py",  # ansible-playbook
        "ansible/test_signaling_env.py",  # ansible-playbook (the signaling role, on this machine)
        "ops/test_drain.py",  # coturn + signaling
        "ops/test_rotation.py",  # a coturn fleet
        "probe/test_checks.py",  # turnserver
        "probe/test_cli.py",
        "probe/test_monitoring.py",  # prometheus
        "probe/test_signaling.py",
        "probe/test_uclient.py",
        "provision/test_aws.py",  # moto_server
        "signaling/test_aiortc.py",  # coturn + signaling server
        "signaling/test_browser.py",  # chromium
        "signaling/test_browser_ice_restart.py",  # chromium + two coturn nodes
        "signaling/test_browser_resume.py",  # chromium + coturn + signaling restarted
        "signaling/test_cli.py",  # turnkit signaling serve
        "signaling/test_redis_reconnect.py",  # redis-server, restarted
        "signaling/test_rolling.py",  # signaling processes restarted under 50 rooms
        "signaling/test_sentinel.py",  # redis-server + redis-sentinel
        "test_coturn.py",  # turnserver
    }
)
#: Single tests that start a daemon in a module whose other tests do not (module path::test name).
DAEMON_TESTS = frozenset(
    {
        "signaling/test_limits.py::test_flood_leaves_one_timer_per_connection_and_no_memory_behind",  # signaling serve
        "test_nginx_systemd.py::test_real_nginx_logs_ws_and_api_requests_without_their_tokens",  # nginx
    }
)

#: Programs that are daemons (or drive them); seen anywhere in a child's argv, they need the marker.
DAEMON_PROGRAMS = frozenset(
    {
        "turnserver",
        "nginx",
        "redis-server",
        "redis-sentinel",
        "pebble",
        "pebble-challtestsrv",
        "certbot",
        "chromium",
        "node",  # Playwright's driver, the Node benchmark peers
        "ansible-playbook",
        "moto_server",
        "prometheus",
        "systemd-nspawn",  # the fleet lab's hosts
    }
)
#: One-shot uses of those programs that start nothing: a flag that only prints a version or checks a config.
ONE_SHOT_FLAGS = frozenset({"--version"})
ONE_SHOT_FLAGS_OF: dict[str, frozenset[str]] = {"nginx": frozenset({"-t", "-T", "-v", "-V"})}
#: turnkit/bench invocations that start daemons themselves (consecutive argv words).
DAEMON_COMMANDS: tuple[tuple[str, ...], ...] = (("signaling", "serve"), ("deploy",), ("-m", "bench"))


def is_daemon_item(item: pytest.Item) -> bool:
    module = Path(str(item.path)).resolve()
    if module.is_relative_to(TESTS):
        where = module.relative_to(TESTS).as_posix()
        if where in DAEMON_MODULES or f"{where}::{getattr(item, 'originalname', item.name)}" in DAEMON_TESTS:
            return True
    names = set(getattr(item, "fixturenames", ()))
    if names & DAEMON_FIXTURES:
        return True
    params: dict[str, Any] = getattr(getattr(item, "callspec", None), "params", {})
    return any(params.get(name) in values for name, values in DAEMON_PARAMS.items() if name in params)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "daemon: starts a real daemon (coturn, nginx, redis, pebble, chromium, ...)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_daemon_item(item):
            item.add_marker(pytest.mark.daemon)


def _has(words: Sequence[str], run: tuple[str, ...]) -> bool:
    return any(tuple(words[i : i + len(run)]) == run for i in range(len(words) - len(run) + 1))


def daemon_in(args: Any) -> str | None:
    """The daemon a child process's argv would start, or None (`nginx -t`, `turnserver --version` start none)."""
    argv = (
        shlex.split(args) if isinstance(args, str) else [args] if isinstance(args, bytes | os.PathLike) else list(args)
    )
    paths = [os.fsdecode(a) for a in argv]
    words = [os.path.basename(a) for a in paths]
    for path, word in zip(paths, words, strict=True):
        stand_in = os.path.realpath(path).startswith(TMP)  # a test's own fake, e.g. a scripted ansible-playbook
        if (
            word in DAEMON_PROGRAMS
            and not stand_in
            and not (ONE_SHOT_FLAGS | ONE_SHOT_FLAGS_OF.get(word, frozenset())) & set(words)
        ):
            return word
    starter = any(w in ("turnkit", "python", "python3") or w.startswith("python3.") for w in words[:3])
    return next((" ".join(run) for run in DAEMON_COMMANDS if starter and _has(words, run)), None)


class DaemonInUnmarkedTest(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _daemon_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unmarked tests may run short tools (openssl, nginx -t, turnkit render) but start no daemon."""
    if request.node.get_closest_marker("daemon") is not None:
        yield
        return
    execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def guarded(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
        found = daemon_in(args)
        if found is not None:
            raise DaemonInUnmarkedTest(
                f"{request.node.nodeid} starts {found!r} but is not marked `daemon`: "
                "add its fixture to DAEMON_FIXTURES or its module to DAEMON_MODULES in tests/conftest.py"
            )
        execute(self, args, *rest, **kw)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", guarded)
    yield
