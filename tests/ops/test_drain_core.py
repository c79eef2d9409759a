"""The pure parts of draining: status keys, liveness, the draining mark in node health, waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnkit import drain, health
from turnkit.errors import InputError
from turnkit.health import NodeHealth
from turnkit.nodes import Node

A = Node("turn-1", "eu", "a.example.test")
B = Node("turn-2", "eu", "b.example.test")
KEY = "turn/realm/ex.test/user/1796013091:alice/allocation/001000000000000001/status"


def test_status_keys_are_parsed_and_filtered_by_realm_and_lifetime() -> None:
    assert drain.parse_status_key(KEY) == drain.Allocation("ex.test", "1796013091:alice", "001000000000000001")
    assert drain.parse_status_key("turn/realm/ex.test/user/u/allocation/1/traffic") is None
    statuses: dict[str, str | None] = {
        KEY: "new lifetime=600, type=UDP, local=127.0.0.1:3478",
        KEY.replace("alice", "bob"): "refreshed lifetime=0, type=UDP",  # being deleted
        KEY.replace("alice", "carol"): None,  # gone between SCAN and GET
        KEY.replace("alice", "dave"): "refreshed lifetime=300, type=TCP",
        KEY.replace("ex.test", "other.test"): "new lifetime=600",
    }
    assert [a.user for a in drain.live_allocations(statuses, "ex.test")] == ["1796013091:alice", "1796013091:dave"]


def test_scan_pattern_escapes_glob_characters_of_the_realm() -> None:
    assert drain.status_pattern("ex.test") == "turn/realm/ex.test/user/*/allocation/*/status"
    assert drain.status_pattern("a*b?[c]") == r"turn/realm/a\*b\?\[c\]/user/*/allocation/*/status"


def test_draining_outlives_probe_results_until_cleared(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    health.write_draining(path, "eu/turn-1", True, 5)
    assert health.read_file(path) == {"eu/turn-1": NodeHealth(True, 5, (), True)}
    health.write_file(path, {"eu/turn-1": NodeHealth(False, 9, ("allocate",))})  # a probe run
    assert health.read_file(path)["eu/turn-1"] == NodeHealth(False, 9, ("allocate",), True)
    health.write_draining(path, "eu/turn-1", False, 10)
    assert health.read_file(path)["eu/turn-1"] == NodeHealth(False, 9, ("allocate",), False)
    assert '"draining"' not in path.read_text()  # absent when false: older readers see the same document


def test_healthy_excludes_draining_and_serving_is_the_fallback() -> None:
    marks = {"eu/turn-1": NodeHealth(True, 1, (), True), "eu/turn-2": NodeHealth(False, 1, ("allocate",))}
    assert health.healthy([A, B], marks) == []
    assert health.serving([A, B], marks) == [B]  # failing but not draining beats draining
    assert health.healthy([A, B], {"eu/turn-1": NodeHealth(True, 1, (), True)}) == [B]


def test_wait_until_idle_stops_at_zero_or_at_the_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    counts = iter([3, 2, 0])
    seen: list[int] = []
    live, waited = drain.wait_until_idle(lambda: next(counts), 60, 1.0, lambda: now[0], sleep, seen.append)
    assert (live, waited, seen) == (0, 2.0, [3, 2])
    now[0] = 0.0
    assert drain.wait_until_idle(lambda: 4, 2.5, 1.0, lambda: now[0], sleep) == (4, 2.5)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "--statsdb: put the password in $TURNKIT_STATSDB_PASSWORD, not in the URL"),
        ("127.0.0.1:6379", "--statsdb: expected redis://HOST:PORT/DB, got `127.0.0.1:6379`"),
    ],
)
def test_statsdb_url_is_checked_and_never_carries_a_password(url: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        drain.StatsDb(url)
    assert str(info.value) == message
    assert "pw" not in repr(drain.StatsDb("redis://127.0.0.1:6379/0", password="pw"))
