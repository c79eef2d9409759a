"""The signaling role's rolling restart: one instance at a time, each waited for on /readyz.

(Running it needs systemd; the chroot targets have none, so its shape is checked here and the
same rolling behaviour runs for real on the local region in tests/deploy/test_local_rolling.py.)
"""

from __future__ import annotations

from typing import Any

import yaml

from turnkit import resources

ROLE = resources.playbook_dir() / "roles" / "signaling"


def load(path: str) -> list[dict[str, Any]]:
    doc: list[dict[str, Any]] = yaml.safe_load((ROLE / path).read_text())
    return doc


def test_restart_handler_loops_over_the_ports_one_include_per_instance() -> None:
    (handler,) = [h for h in load("handlers/main.yml") if h["name"] == "Restart the signaling instances"]
    assert handler["ansible.builtin.include_tasks"] == "restart_instance.yml"
    assert handler["loop"] == "{{ signaling_ports }}"
    assert handler["loop_control"] == {"loop_var": "signaling_instance_port"}


def test_each_instance_is_restarted_then_waited_for_until_ready() -> None:
    restart, wait = load("tasks/restart_instance.yml")
    assert restart["ansible.builtin.systemd_service"] == {
        "name": "turnkit-signaling@{{ signaling_instance_port }}.service",
        "state": "restarted",
    }
    assert wait["ansible.builtin.uri"]["url"] == (
        "http://{{ signaling_ready_host }}:{{ signaling_instance_port }}/readyz"
    )
    assert wait["ansible.builtin.uri"]["status_code"] == 200
    assert (wait["until"], wait["retries"], wait["delay"]) == (
        "signaling_ready.status == 200",
        "{{ signaling_ready_retries }}",
        1,
    )
    assert wait["register"] == "signaling_ready"


def test_configuration_changes_notify_the_rolling_handler() -> None:
    notified = [t for t in load("tasks/configure.yml") if t.get("notify")]
    names = {n for t in notified for n in ([t["notify"]] if isinstance(t["notify"], str) else t["notify"])}
    assert "Restart the signaling instances" in names
