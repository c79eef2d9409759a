"""coturn's accepted TURN secrets as rows of its SQLite `turn_secret` table (no restart needed).

With `use-auth-secret`, `realm=R` and `userdb=<file>` (and no `static-auth-secret` lines) coturn
4.6.1 reads `SELECT value FROM turn_secret WHERE realm=R` for every new session: a row added while
it runs allocates at once, a deleted one gets 401 on the next Allocate, live sessions keep the
key they authenticated with (verified in tests/ops/test_secretdb.py). The keyring stays the
source of truth; `sync` brings one realm's rows to exactly its accepted set in one transaction.

`diff` is pure; `sync` is the I/O edge. Secrets never go to argv, logs or exception texts. This
module imports only the standard library at run time, so the coturn role copies it to each TURN
node and runs it there (`python3 secretdb.py --db F --realm R < secrets.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    from turnkit.errors import SecretStoreError as SecretDbError
except ImportError:  # alone on a TURN node (copied by playbooks/roles/coturn/tasks/secrets.yml)

    class SecretDbError(Exception):  # type: ignore[no-redef]
        """The coturn secret table could not be read or written."""


#: The table layout coturn 4.6.1 itself creates for a fresh SQLite userdb (every table, so coturn's
#: other per-session lookups such as turn_origin_to_realm find theirs).
SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS turnusers_lt (realm varchar(127) default '', name varchar(512),"
    " hmackey char(128), PRIMARY KEY (realm,name))",
    "CREATE TABLE IF NOT EXISTS turn_secret (realm varchar(127) default '', value varchar(127),"
    " primary key (realm,value))",
    "CREATE TABLE IF NOT EXISTS allowed_peer_ip (realm varchar(127) default '', ip_range varchar(256),"
    " primary key (realm,ip_range))",
    "CREATE TABLE IF NOT EXISTS denied_peer_ip (realm varchar(127) default '', ip_range varchar(256),"
    " primary key (realm,ip_range))",
    "CREATE TABLE IF NOT EXISTS turn_origin_to_realm (origin varchar(127),realm varchar(127),primary key (origin))",
    "CREATE TABLE IF NOT EXISTS turn_realm_option (realm varchar(127) default '', opt varchar(32),"
    " value varchar(128), primary key (realm,opt))",
    "CREATE TABLE IF NOT EXISTS oauth_key (kid varchar(128),ikm_key varchar(256),timestamp bigint default 0,"
    "lifetime integer default 0,as_rs_alg varchar(64) default '',realm varchar(127) default '',primary key (kid))",
    "CREATE TABLE IF NOT EXISTS admin_user (name varchar(32), realm varchar(127), password varchar(127),"
    " primary key (name))",
)

#: The file holds secrets: owner only (coturn runs as that owner, `turnserver` under Debian's unit).
FILE_MODE = 0o600
#: How long a write waits for coturn's readers to let go of the file.
BUSY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Plan:
    """What bringing a table to the accepted set takes: rows to add and rows to delete."""

    add: tuple[str, ...] = field(repr=False)
    remove: tuple[str, ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"Plan(add=<{len(self.add)} secret(s)>, remove=<{len(self.remove)} secret(s)>)"

    @property
    def changed(self) -> bool:
        return bool(self.add or self.remove)

    def summary(self) -> dict[str, int | bool]:
        """Counts only: safe to print or log."""
        return {"added": len(self.add), "removed": len(self.remove), "changed": self.changed}


def diff(current: Iterable[str], accepted: Iterable[str]) -> Plan:
    """Rows to add and delete so that a realm's rows equal `accepted` (order-free, sorted output)."""
    have, want = set(current), set(accepted)
    return Plan(tuple(sorted(want - have)), tuple(sorted(have - want)))


def _check_accepted(accepted: Sequence[str]) -> None:
    if not accepted:
        raise SecretDbError("no accepted TURN secrets: an empty table would refuse every allocation")
    if any(not isinstance(s, str) or not s or len(s) > 127 for s in accepted):
        raise SecretDbError("every TURN secret must be a non-empty string of at most 127 characters")


def _prepare_file(path: Path, owner: tuple[int, int] | None) -> None:
    """Create the file owner-only if missing; tighten a too-open one; hand it to `owner` (uid, gid)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SecretDbError(f"{path}: cannot prepare the coturn secret table: {exc.strerror}") from None


def read(path: Path, realm: str) -> set[str]:
    """The secrets the table holds for `realm` (empty when the file or table does not exist)."""
    if not path.exists():
        return set()
    try:
        con = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        try:
            return {row[0] for row in con.execute("SELECT value FROM turn_secret WHERE realm = ?", (realm,))}
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return set()
        raise SecretDbError(f"{path}: cannot read the coturn secret table: {exc}") from None
    except sqlite3.Error as exc:
        raise SecretDbError(f"{path}: cannot read the coturn secret table: {type(exc).__name__}") from None


def sync(path: Path, realm: str, accepted: Sequence[str], owner: tuple[int, int] | None = None) -> Plan:
    """Bring `realm`'s rows of `turn_secret` in `path` to exactly `accepted`, atomically.

    One IMMEDIATE transaction: coturn's sessions see the old set or the new one, never a mix.
    Other realms' rows are left alone. Returns what changed (an unchanged table is not written).

    The database is in WAL mode: coturn 4.6.1 reads the table once per new session and does not
    retry a busy database ("Error retrieving SQLite DB information: database is locked" → 401),
    and in rollback-journal mode every commit locks readers out for a moment. In WAL mode readers
    never wait for a writer. (SQLite gives the -wal/-shm files the database file's owner.)
    """
    _check_accepted(accepted)
    if not realm:
        raise SecretDbError("the coturn realm must not be empty")
    _prepare_file(path, owner)
    try:
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise SecretDbError(f"{path}: cannot open the coturn secret table: {type(exc).__name__}") from None
    try:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")  # once per file; it persists
        con.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            con.execute(statement)
        current = [row[0] for row in con.execute("SELECT value FROM turn_secret WHERE realm = ?", (realm,))]
        plan = diff(current, accepted)
        con.executemany("DELETE FROM turn_secret WHERE realm = ? AND value = ?", [(realm, s) for s in plan.remove])
        con.executemany("INSERT INTO turn_secret (realm, value) VALUES (?, ?)", [(realm, s) for s in plan.add])
        con.execute("COMMIT")
        return plan
    except sqlite3.Error as exc:
        if con.in_transaction:
            con.execute("ROLLBACK")
        # sqlite3 messages carry no bound values, but keep the text generic all the same.
        raise SecretDbError(f"{path}: cannot write the coturn secret table: {type(exc).__name__}") from None
    finally:
        con.close()


def owner_in(root: Path, user: str = "turnserver") -> tuple[int, int]:
    """`user`'s uid and primary gid from `root`/etc/passwd: the owner to give a table written from
    the host into a container's tree (the lab region), where the host's user database does not apply."""
    passwd = root / "etc" / "passwd"
    try:
        lines = passwd.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SecretDbError(f"{passwd}: cannot read: {exc.strerror}") from None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(fields[3])
    raise SecretDbError(f"{passwd}: no user `{user}` (is coturn installed there?)")


def _owner_ids(user: str | None, group: str | None) -> tuple[int, int] | None:
    import grp
    import pwd

    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SecretDbError(f"no such user `{user}`") from None
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError:
        raise SecretDbError(f"no such group `{group}`") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run on a TURN node: the accepted secrets come as a JSON list on stdin, counts go to stdout."""
    parser = argparse.ArgumentParser(description="Bring coturn's turn_secret table to the accepted set on stdin.")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--realm", required=True)
    parser.add_argument("--owner")
    parser.add_argument("--group")
    args = parser.parse_args(argv)
    try:
        accepted = json.load(sys.stdin)
        if not isinstance(accepted, list):
            raise ValueError
    except ValueError:
        print("error: stdin must be a JSON list of secrets", file=sys.stderr)
        return 2
    try:
        plan = sync(args.db, args.realm, accepted, _owner_ids(args.owner, args.group))
    except SecretDbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(plan.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
