"""bench/lab.py's parsers, on output as Ansible (profile_tasks) and systemd-analyze really print it."""

from __future__ import annotations

from bench import lab

DEPLOY = """\
PLAY RECAP *********************************************************************
turn-1                     : ok=22   changed=16   unreachable=0    failed=0    skipped=11   rescued=0    ignored=0

TASKS RECAP ********************************************************************
Monday 30 November 2026  07:45:31 +0000 (0:00:00.412)       0:00:40.101 *******
===============================================================================
certbot : Install the certbot package ----------------------------------- 15.25s
coturn : Install the coturn package ------------------------------------- 8.13s
PLAY RECAP *********************************************************************
signaling                  : ok=43   changed=26   unreachable=0    failed=0    skipped=13   rescued=0    ignored=0

TASKS RECAP ********************************************************************
signaling : Copy the wheelhouse (turnkit and its dependencies, the controller's versions) -- 26.89s
certbot : Install the certbot package ----------------------------------- 4.76s
"""


def test_changed_tasks_per_host_and_seconds_per_task_are_summed_over_runs() -> None:
    changed, tasks = lab.parse_ansible(DEPLOY)
    assert changed == {"turn-1": 16, "signaling": 26}
    assert tasks["certbot : Install the certbot package"] == 15.25 + 4.76
    wheelhouse = "signaling : Copy the wheelhouse (turnkit and its dependencies, the controller's versions)"
    assert lab.slowest(tasks, 2) == [(wheelhouse, 26.89), ("certbot : Install the certbot package", 15.25 + 4.76)]


def test_lines_of_parallel_runs_count_without_their_run_label() -> None:
    prefixed = "".join(
        f"[{'turn-1' if i < 10 else 'signaling'}] {line}\n" for i, line in enumerate(DEPLOY.splitlines())
    )
    assert lab.parse_ansible(prefixed) == lab.parse_ansible(DEPLOY)


def test_exposure_is_read_from_systemd_analyze_security() -> None:
    text = "✗ UMask=   Files created by service are world-readable by default  0.1\n\n"
    text += "→ Overall exposure level for turnkit-signaling@8080.service: 1.2 OK 🙂\n"
    assert lab.exposure(text) == ("1.2", "OK")
    assert lab.exposure("Unit foo.service not found.") is None


def test_deploy_steps_run_from_one_progress_marker_to_the_next() -> None:
    lines = [
        (0.5, "==> provision\n"),
        (1.0, "lab region `lab`: 4 container(s) up on tk08db2ebr\n"),
        (2.0, "==> render\n"),
        (3.0, "building the wheelhouse for the signaling host in /x/wheelhouse\n"),
        (9.0, "==> configure with Ansible (coturn, certbot certificates, nginx, signaling, probe)\n"),
        (9.5, "configuring turn-1\n"),
        (50.0, "configuring the signaling host\n"),
        (120.0, "==> probe\n"),
    ]
    steps = dict(lab.phases(lines, 130.0))
    assert list(steps) == [
        "==> provision",
        "==> render",
        "building the wheelhouse for the signaling host in /x/wheelhouse",
        "==> configure with Ansible (coturn, certbot certificates, nginx, signaling, probe)",
        "configuring turn-1",
        "configuring the signaling host",
        "==> probe",
    ]
    assert steps["configuring turn-1"] == 40.5 and steps["==> probe"] == 10.0
    assert lab.phases([(0.1, "secret `s1` created\n")], 1.0) == []  # a command without progress markers
