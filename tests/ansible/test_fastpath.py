"""turnkit_copy / turnkit_template / turnkit_file (playbooks/action_plugins, turnkit.fastpath): a path that
already is what the task asks costs one shell round trip and no module run; anything else, drift included,
goes through the builtin action and is corrected."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from turnkit import ansible, fastpath

# -- the pure part -----------------------------------------------------------------------------------


def test_the_probe_reads_a_real_file_whatever_its_name_holds(tmp_path: Path) -> None:
    hostile = tmp_path / "a b $(touch pwned) 'q'"
    hostile.write_text("content\n")
    hostile.chmod(0o2640)
    out = subprocess.run(["sh", "-c", fastpath.probe_command(str(hostile))], capture_output=True, text=True, check=True)
    found = fastpath.parse(out.stdout)
    st = hostile.stat()
    assert found == fastpath.Found(
        "file",
        (found.owner[0] if found else "", str(st.st_uid)),
        (found.group[0] if found else "", str(st.st_gid)),
        0o2640,
        hashlib.sha1(b"content\n").hexdigest(),
    )
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    for path, kind in ((tmp_path, "directory"), (tmp_path / "missing", "absent")):
        out = subprocess.run(["sh", "-c", fastpath.probe_command(str(path))], capture_output=True, text=True)
        assert (fastpath.parse(out.stdout) or fastpath.Found("?")).kind == kind
    (tmp_path / "link").symlink_to(hostile)
    out = subprocess.run(["sh", "-c", fastpath.probe_command(str(tmp_path / "link"))], capture_output=True, text=True)
    assert fastpath.parse(out.stdout) == fastpath.Found("link")


@pytest.mark.parametrize(
    "out",
    ["", "file\nroot 0 root 0 644\n", "file\nroot 0 root 0 9x9\nabc  /x\n", "directory\nroot 0 root\n", "what\n"],
)
def test_unexpected_probe_output_is_no_answer(out: str) -> None:
    assert fastpath.parse(out) is None


def test_only_what_the_check_models_is_judged_by_it() -> None:
    sha = "a" * 40
    want = fastpath.wanted(
        {"dest": "/x", "content": "c", "owner": "root", "group": "coturn", "mode": "0640"}, "file", sha
    )
    assert want == fastpath.Wanted("file", "root", "coturn", 0o640, sha)
    assert fastpath.wanted({"dest": "/x", "mode": 0o644, "follow": False, "force": "yes"}, "file", sha) is not None
    for odd in ({"mode": "u=rw,g=r"}, {"mode": "preserve"}, {"follow": True}, {"attributes": "+i"},
                {"setype": "etc_t"}, {"remote_src": True}, {"checksum": sha}):  # fmt: skip
        assert fastpath.wanted({"dest": "/x", **odd}, "file", sha) is None, odd
    assert fastpath.wanted({"path": "/d", "state": "directory", "mode": "0750"}, "directory") is not None
    assert fastpath.wanted({"path": "/d", "state": "link", "src": "/x"}, "directory") is None
    assert fastpath.wanted({"path": "/d", "state": "directory", "recurse": True}, "directory") is None


def test_a_path_is_satisfied_only_when_every_named_attribute_matches() -> None:
    found = fastpath.Found("file", ("root", "0"), ("coturn", "117"), 0o640, "a" * 40)
    base = fastpath.Wanted("file", "root", "coturn", 0o640, "a" * 40)
    assert fastpath.satisfied(base, found)
    assert fastpath.satisfied(fastpath.Wanted("file", "0", "117", None, "a" * 40), found)  # ids, mode not named
    for other in (
        fastpath.Wanted("file", "admin", "coturn", 0o640, "a" * 40),
        fastpath.Wanted("file", "root", "root", 0o640, "a" * 40),
        fastpath.Wanted("file", "root", "coturn", 0o644, "a" * 40),
        fastpath.Wanted("file", "root", "coturn", 0o640, "b" * 40),
        fastpath.Wanted("directory", "root", "coturn", 0o640),
    ):
        assert not fastpath.satisfied(other, found), other


# -- the plugins, run by the real ansible-playbook ------------------------------------------------------

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: A directory
      turnkit_file:
        path: "{{ d }}"
        state: directory
        mode: "0750"
    - name: A file from content
      turnkit_copy:
        content: "{{ secret }}\\n"
        dest: "{{ d }}/a.conf"
        mode: "0640"
      no_log: true
    - name: A file from a template
      turnkit_template:
        src: "{{ src }}"
        dest: "{{ d }}/b.conf"
        mode: "0644"
        lstrip_blocks: true
"""

TEMPLATE = "{% for x in items %}\n    {% if x %}\nitem {{ x }}\n    {% endif %}\n{% endfor %}\n"
SECRET = "fastpath-secret-value"


def _play(tmp: Path, *extra: str) -> tuple[list[dict[str, object]], str]:
    """Run the play (json callback); each task's result, and the verbose log."""
    variables = {"d": str(tmp / "d"), "src": str(tmp / "b.j2"), "secret": SECRET, "items": ["x", "", "y"]}
    (tmp / "vars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        **ansible.ANSIBLE_ENV,
        **ansible.plugin_env(),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    env |= {
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_LOG_PATH": str(tmp / "log"),
    }
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp / "ansible-tmp")
    argv = [
        ansible.ansible_playbook(),
        "-c",
        "local",
        "-vvv",
        "-e",
        f"@{tmp / 'vars.json'}",
        *extra,
        str(tmp / "play.yml"),
    ]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (tmp / "log").read_text()
    (tmp / "log").unlink()
    results = [t["hosts"]["localhost"] for t in json.loads(res.stdout[res.stdout.index("{") :])["plays"][0]["tasks"]]
    return results, log


def test_an_unchanged_path_runs_no_module_and_drift_is_corrected(tmp_path: Path) -> None:
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "b.j2").write_text(TEMPLATE)
    d = tmp_path / "d"

    first, _ = _play(tmp_path)
    assert [r["changed"] for r in first] == [True, True, True]
    assert (d / "b.conf").read_text() == "item x\nitem y\n"  # lstrip_blocks: the builtin's rendering
    assert (d / "a.conf").read_text() == SECRET + "\n"
    assert {p.name: p.stat().st_mode & 0o7777 for p in (d, d / "a.conf", d / "b.conf")} == {
        "d": 0o750, "a.conf": 0o640, "b.conf": 0o644,
    }  # fmt: skip

    again, log = _play(tmp_path)
    assert [r["changed"] for r in again] == [False, False, False]
    for module in ("stat", "file", "copy"):  # no module was built, let alone run, on the host
        assert f"ansible/modules/{module}.py" not in log, module
    assert SECRET not in log

    # Drift: every kind is put back, through the builtin action.
    (d / "a.conf").chmod(0o666)
    (d / "b.conf").write_text("edited by hand\n")
    d.chmod(0o777)
    checked, _ = _play(tmp_path, "--check")
    assert [r["changed"] for r in checked] == [True, True, True]
    assert (d / "b.conf").read_text() == "edited by hand\n"  # --check only tells
    fixed, log = _play(tmp_path)
    assert [r["changed"] for r in fixed] == [True, True, True]
    assert "ansible/modules/file.py" in log and "ansible/modules/copy.py" in log
    assert (d / "b.conf").read_text() == "item x\nitem y\n"
    assert {p.name: p.stat().st_mode & 0o7777 for p in (d, d / "a.conf")} == {"d": 0o750, "a.conf": 0o640}
