"""coturn's secret table: the pure diff, the one-transaction sync, file modes, and the node-side script."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from turnkit import secretdb
from turnkit.errors import SecretStoreError

SCRIPT = Path(secretdb.__file__)


def rows(path: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(path)
    try:
        return sorted(con.execute("SELECT realm, value FROM turn_secret"))
    finally:
        con.close()


def test_diff_is_order_free_and_sorted() -> None:
    plan = secretdb.diff(["b", "old", "a"], ["new", "a", "b", "a"])
    assert (plan.add, plan.remove, plan.changed) == (("new",), ("old",), True)
    assert not secretdb.diff(["x", "y"], ["y", "x"]).changed
    assert secretdb.diff([], ["s"]).summary() == {"added": 1, "removed": 0, "changed": True}


def test_plan_repr_hides_the_secrets() -> None:
    plan = secretdb.diff(["old-secret-value"], ["new-secret-value"])
    assert "secret-value" not in repr(plan) and "secret-value" not in str(plan)
    assert repr(plan) == "Plan(add=<1 secret(s)>, remove=<1 secret(s)>)"


def test_sync_creates_an_owner_only_table_coturn_can_read(tmp_path: Path) -> None:
    db = tmp_path / "turndb"
    assert secretdb.sync(db, "ex.test", ["s2", "s1"]).summary() == {"added": 2, "removed": 0, "changed": True}
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert rows(db) == [("ex.test", "s1"), ("ex.test", "s2")]
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert {"turn_secret", "turnusers_lt", "turn_origin_to_realm", "turn_realm_option", "denied_peer_ip"} <= tables
    assert secretdb.read(db, "ex.test") == {"s1", "s2"}
    assert secretdb.read(tmp_path / "absent", "ex.test") == set()


def test_sync_brings_the_realm_to_exactly_the_accepted_set(tmp_path: Path) -> None:
    db = tmp_path / "turndb"
    secretdb.sync(db, "ex.test", ["s1", "s2"])
    secretdb.sync(db, "other.test", ["o1"])
    plan = secretdb.sync(db, "ex.test", ["s2", "s3"])
    assert (plan.add, plan.remove) == (("s3",), ("s1",))
    assert rows(db) == [("ex.test", "s2"), ("ex.test", "s3"), ("other.test", "o1")]  # other realms untouched
    assert not secretdb.sync(db, "ex.test", ["s3", "s2"]).changed


def test_sync_tightens_a_world_readable_file_made_by_turnadmin_or_coturn(tmp_path: Path) -> None:
    db = tmp_path / "turndb"
    db.touch(mode=0o644)
    db.chmod(0o644)
    secretdb.sync(db, "ex.test", ["s1"])
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_empty_or_oversized_sets_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    db = tmp_path / "turndb"
    secretdb.sync(db, "ex.test", ["keep"])
    with pytest.raises(SecretStoreError) as empty:
        secretdb.sync(db, "ex.test", [])
    assert str(empty.value) == "no accepted TURN secrets: an empty table would refuse every allocation"
    with pytest.raises(SecretStoreError) as info:
        secretdb.sync(db, "ex.test", ["ok", "x" * 128])
    assert str(info.value) == "every TURN secret must be a non-empty string of at most 127 characters"
    assert rows(db) == [("ex.test", "keep")]


def test_a_failing_write_rolls_back_and_names_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "turndb"
    secretdb.sync(db, "ex.test", ["old-one"])
    monkeypatch.setattr(secretdb, "BUSY_TIMEOUT", 0.2)
    con = sqlite3.connect(db)  # another writer holds the lock: sync gives up and changes nothing
    con.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(SecretStoreError) as info:
            secretdb.sync(db, "ex.test", ["brand-new-secret"])
    finally:
        con.rollback()
        con.close()
    assert str(info.value) == f"{db}: cannot write the coturn secret table: OperationalError"
    assert rows(db) == [("ex.test", "old-one")]


def test_node_script_takes_secrets_on_stdin_and_prints_counts_only(tmp_path: Path) -> None:
    """The coturn role runs this file alone with the node's python3 (no turnkit installed there)."""
    db = tmp_path / "turndb"
    alone = tmp_path / "node" / "secretdb.py"
    alone.parent.mkdir()
    alone.write_text(SCRIPT.read_text())
    run = [sys.executable, "-I", str(alone), "--db", str(db), "--realm", "ex.test"]
    out = subprocess.run(run, input=json.dumps(["node-secret-1", "node-secret-2"]), capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, "")
    assert json.loads(out.stdout) == {"added": 2, "removed": 0, "changed": True}
    again = subprocess.run(run, input='["node-secret-2"]', capture_output=True, text=True)
    assert json.loads(again.stdout) == {"added": 0, "removed": 1, "changed": True}
    assert rows(db) == [("ex.test", "node-secret-2")]
    bad = subprocess.run(run, input='{"not": "a list"}', capture_output=True, text=True)
    assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", "error: stdin must be a JSON list of secrets\n")
    empty = subprocess.run(run, input="[]", capture_output=True, text=True)
    assert (empty.returncode, empty.stderr) == (
        3,
        "error: no accepted TURN secrets: an empty table would refuse every allocation\n",
    )
    nouser = subprocess.run([*run, "--owner", "no-such-user-here"], input='["x"]', capture_output=True, text=True)
    assert (nouser.returncode, nouser.stderr) == (3, "error: no such user `no-such-user-here`\n")


def test_owner_in_a_container_tree_comes_from_its_own_passwd(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nturnserver:x:104:108::/var/lib/turn:/bin/false\n")
    assert secretdb.owner_in(tmp_path) == (104, 108)
    with pytest.raises(SecretStoreError) as info:
        secretdb.owner_in(tmp_path, "nobody-here")
    assert str(info.value) == f"{tmp_path}/etc/passwd: no user `nobody-here` (is coturn installed there?)"
