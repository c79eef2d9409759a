"""One shell round trip that tells whether a file or directory on a host already is what a task asks.

The shipped playbook's action plugins (`playbooks/action_plugins/turnkit_{copy,template,file}.py`)
ask this first. Ansible's own `copy` and `template` run two Python modules on the host for a file
that needs nothing (`stat` for its checksum, then `file` for its owner and mode), and `file` one;
on a small host each module run costs about 0.3 s of CPU (its module_utils are imported from a zip,
uncached). A re-deploy with nothing changed is mostly such checks. This asks `stat` and `sha1sum`
in one plain shell command instead; anything it does not answer with certainty (a link, a missing
path, an argument it does not model, check or diff mode differences) goes the builtin way, so the
plugins change nothing about what a task does, only what an unchanged task costs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Arguments whose effect on an existing path the check models; any other one → the builtin action.
#: (`validate` and `backup` only act when content changes; `state` is `directory` for directories.)
MODELLED: dict[str, frozenset[str]] = {
    "file": frozenset({"src", "content", "dest", "owner", "group", "mode", "validate", "backup", "decrypt"}),
    "directory": frozenset({"path", "dest", "name", "state", "owner", "group", "mode"}),
}
#: Arguments allowed at their default value only (the builtin's default for that kind of task).
NEUTRAL: dict[str, dict[str, bool]] = {
    "file": {"follow": False, "force": True, "remote_src": False},
    "directory": {"follow": True, "recurse": False},
}
_TRUE, _FALSE = ("true", "yes", "on", "1", "y", "t"), ("false", "no", "off", "0", "n", "f")

#: `stat` format of the probe: owner name and id, group name and id, octal mode (with special bits).
_STAT = "%U %u %G %g %a"


@dataclass(frozen=True)
class Wanted:
    """What a task asks of one path: its kind, and only the attributes the task names."""

    kind: str  # "file" or "directory"
    owner: str | None = None
    group: str | None = None
    mode: int | None = None
    sha1: str | None = None  # files: the content's SHA-1 (what Ansible's copy compares)


@dataclass(frozen=True)
class Found:
    """What the path is on the host."""

    kind: str  # "file", "directory", "link", "other" or "absent"
    owner: tuple[str, str] = ("", "")
    group: tuple[str, str] = ("", "")
    mode: int = 0
    sha1: str | None = None


def probe_command(path: str) -> str:
    """A POSIX shell command printing the path's kind, then its `stat` line and (files) its SHA-1."""
    p = shlex.quote(path)
    return (
        f"LC_ALL=C; export LC_ALL; "
        f"if [ -L {p} ]; then echo link; "
        f"elif [ -d {p} ]; then echo directory; stat -c '{_STAT}' -- {p}; "
        f"elif [ -f {p} ]; then echo file; stat -c '{_STAT}' -- {p} && sha1sum -- {p}; "
        f"elif [ -e {p} ]; then echo other; "
        f"else echo absent; fi"
    )


def parse(out: str) -> Found | None:
    """The probe's output as a `Found`; None for anything unexpected."""
    lines = out.strip().splitlines()
    if not lines:
        return None
    kind = lines[0].strip()
    if kind in ("link", "other", "absent"):
        return Found(kind) if len(lines) == 1 else None
    if kind not in ("file", "directory") or len(lines) != (3 if kind == "file" else 2):
        return None
    fields = lines[1].split()
    if len(fields) != 5 or not all(c in "01234567" for c in fields[4]):
        return None
    sha1 = lines[2].split()[0] if kind == "file" else None
    if sha1 is not None and (len(sha1) != 40 or any(c not in "0123456789abcdef" for c in sha1)):
        return None
    return Found(kind, (fields[0], fields[1]), (fields[2], fields[3]), int(fields[4], 8), sha1)


def octal_mode(value: object) -> int | None:
    """A task's `mode` as an int; None when it is not a plain octal mode (symbolic, `preserve`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value and len(value) <= 5 and all(c in "01234567" for c in value):
        return int(value, 8)
    return None


def flag(value: object) -> bool | None:
    """An Ansible boolean (`yes`, `true`, 1 …) as a bool; None when it is none of them."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def wanted(args: Mapping[str, Any], kind: str, sha1: str | None = None) -> Wanted | None:
    """What `args` (a task's arguments) ask of a path of `kind`; None when the check cannot judge it."""
    neutral = NEUTRAL[kind]
    for k, v in args.items():
        if k not in MODELLED[kind] and not (k in neutral and flag(v) is neutral[k]):
            return None
    if kind == "directory" and args.get("state") != "directory":
        return None
    mode = args.get("mode")
    if mode is not None and octal_mode(mode) is None:
        return None
    owner, group = args.get("owner"), args.get("group")
    if not all(v is None or isinstance(v, str | int) for v in (owner, group)):
        return None
    return Wanted(
        kind,
        None if owner is None else str(owner),
        None if group is None else str(group),
        None if mode is None else octal_mode(mode),
        sha1,
    )


def satisfied(want: Wanted, found: Found) -> bool:
    """True when the path already is what the task asks (the builtin action would report `ok`)."""
    return (
        found.kind == want.kind
        and (want.owner is None or want.owner in found.owner)
        and (want.group is None or want.group in found.group)
        and (want.mode is None or want.mode == found.mode)
        and (want.sha1 is None or want.sha1 == found.sha1)
    )


def check(run: Callable[[str], Mapping[str, Any]], path: str, want: Wanted) -> Found | None:
    """Probe `path` through `run` (an action plugin's `_low_level_execute_command`: a shell command →
    its `rc` and `stdout`); the `Found` when the path already is what `want` asks, else None (the
    caller runs the builtin action)."""
    res = run(probe_command(path))
    found = parse(str(res.get("stdout", ""))) if res.get("rc", 1) == 0 else None
    return found if found is not None and satisfied(want, found) else None


def result(path: str, found: Found, key: str) -> dict[str, Any]:
    """The task result for an unchanged path, shaped like the builtin module's (`key`: dest or path)."""
    out: dict[str, Any] = {
        "changed": False,
        key: path,
        "state": found.kind,
        "owner": found.owner[0],
        "uid": int(found.owner[1]),
        "group": found.group[0],
        "gid": int(found.group[1]),
        "mode": f"{found.mode:04o}",
    }
    if found.sha1 is not None:
        out["checksum"] = found.sha1
    return out
