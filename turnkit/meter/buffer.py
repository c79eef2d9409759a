"""The durable on-node buffer (SQLite): open sessions, usage not yet sealed, sealed batches to send.

One transaction per step keeps sessions and usage consistent across a meter crash. A batch is
sealed once (its rows and id frozen) and resent as is until the central store acknowledges it, so
the store can drop a batch id it has already applied.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import asdict
from pathlib import Path

from turnkit.meter.events import Counts
from turnkit.meter.ledger import Session, Step, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    day TEXT NOT NULL, user TEXT NOT NULL,
    client_rx INTEGER NOT NULL DEFAULT 0, client_tx INTEGER NOT NULL DEFAULT 0,
    peer_rx INTEGER NOT NULL DEFAULT 0, peer_tx INTEGER NOT NULL DEFAULT 0,
    started INTEGER NOT NULL DEFAULT 0, ended INTEGER NOT NULL DEFAULT 0,
    relay_seconds INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user));
CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, rows TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS months (month TEXT PRIMARY KEY, egress INTEGER NOT NULL DEFAULT 0);
"""

_FIELDS = ("client_rx", "client_tx", "peer_rx", "peer_tx", "started", "ended", "relay_seconds")


def _session_doc(s: Session) -> str:
    return json.dumps(asdict(s))


def _session(doc: str) -> Session:
    d = json.loads(doc)
    return Session(**{**d, "client": Counts(**d["client"]), "peer": Counts(**d["peer"])})


class Buffer:
    """The meter's SQLite file; `epoch` makes batch ids unique even if the file is ever recreated."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE name='epoch'").fetchone()
        if row is None:
            self.epoch = secrets.token_hex(8)
            self.db.execute("INSERT INTO meta VALUES ('epoch', ?)", (self.epoch,))
        else:
            self.epoch = str(row[0])

    def close(self) -> None:
        self.db.close()

    def sessions(self) -> dict[str, Session]:
        return {k: _session(doc) for k, doc in self.db.execute("SELECT key, doc FROM sessions")}

    def apply(self, step: Step) -> None:
        """Store one ledger step atomically."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for s in step.upsert:
                self.db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?)", (s.key, _session_doc(s)))
            for key in step.remove:
                self.db.execute("DELETE FROM sessions WHERE key = ?", (key,))
            for u in step.usage:
                self._add(u)

    def _add(self, u: Usage) -> None:
        if u.empty:
            return
        values = [getattr(u, f) for f in _FIELDS]
        sets = ", ".join(f"{f} = {f} + excluded.{f}" for f in _FIELDS)
        self.db.execute(
            f"INSERT INTO pending (day, user, {', '.join(_FIELDS)}) VALUES (?, ?, {', '.join('?' * len(_FIELDS))}) "
            f"ON CONFLICT (day, user) DO UPDATE SET {sets}",
            (u.day, u.user, *values),
        )
        egress = u.client_tx + u.peer_tx
        if egress:
            self.db.execute(
                "INSERT INTO months VALUES (?, ?) ON CONFLICT (month) DO UPDATE SET egress = egress + excluded.egress",
                (u.day[:7], egress),
            )

    def seal(self) -> int | None:
        """Freeze every pending row into a new batch; its sequence number, or None if nothing pends."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(f"SELECT day, user, {', '.join(_FIELDS)} FROM pending ORDER BY day, user").fetchall()
            if not rows:
                return None
            cur = self.db.execute("INSERT INTO batches (rows) VALUES (?)", (json.dumps(rows),))
            self.db.execute("DELETE FROM pending")
            return int(cur.lastrowid or 0)

    def batches(self) -> list[tuple[str, list[Usage]]]:
        """Sealed, unacknowledged batches, oldest first, as (batch id, rows)."""
        out = []
        for seq, doc in self.db.execute("SELECT seq, rows FROM batches ORDER BY seq"):
            rows = [Usage(day, user, *vals) for day, user, *vals in json.loads(doc)]
            out.append((f"{self.epoch}:{seq}", rows))
        return out

    def ack(self, batch_id: str) -> None:
        seq = int(batch_id.rsplit(":", 1)[1])
        with self.db:
            self.db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    def month_egress(self, month: str) -> int:
        row = self.db.execute("SELECT egress FROM months WHERE month = ?", (month,)).fetchone()
        return int(row[0]) if row else 0
