"""The durable queue: `queue.sqlite3` in `[state] dir` (component.state.open_db: WAL, synchronous=NORMAL).

Two tables: `pending` (stanzas accepted and not yet delivered, in arrival order) and `dead` (stanzas given up, with
their last error). Writes are batched per loop turn: whatever was added, finished, noted or buried during one turn
of the event loop is written in one transaction, early in the next turn; `on_written` then hands the added
entries over, so that nothing is POSTed before it is on disk. The stanza's fields are columns, so that a restart
reads them back without parsing XML.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from component.metrics import Metrics
from component.stanza import Stanza, as_kind
from component.state import open_db

log = logging.getLogger(__name__)

STANZA_COLUMNS = "kind, recipient, sender, type, stanza_id, body, xml"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,      -- arrival order, never reused (dead letters keep theirs as their id)
    webhook_id TEXT NOT NULL,     -- the same on every attempt: the bot's idempotency key
    url TEXT NOT NULL,
    accepted REAL NOT NULL,       -- Unix time; bot.retry_for counts from it
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    last_error_at REAL,
    {STANZA_COLUMNS.replace(", ", " TEXT, ")} TEXT
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    url TEXT NOT NULL,
    accepted REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    last_error_at REAL,
    {STANZA_COLUMNS.replace(", ", " TEXT, ")} TEXT,
    died REAL NOT NULL
);
"""
ENTRY_COLUMNS = f"seq, webhook_id, url, accepted, attempts, last_error, last_error_at, {STANZA_COLUMNS}"
_INSERT = f"INSERT INTO pending ({ENTRY_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_DELETE = "DELETE FROM pending WHERE seq = ?"
_NOTE = "UPDATE pending SET attempts = ?, last_error = ?, last_error_at = ? WHERE seq = ?"
_BURY = f"INSERT INTO dead ({ENTRY_COLUMNS}, died) VALUES ({', '.join('?' * 15)})"
_UNBURY = "DELETE FROM dead WHERE seq = ?"


class Entry:
    """A stanza in the queue and what its delivery has been through. Plain slots: one is built per stanza."""

    __slots__ = ("accepted", "attempts", "last_error", "last_error_at", "seq", "stanza", "url", "webhook_id")

    def __init__(
        self,
        seq: int,
        webhook_id: str,
        url: str,
        accepted: float,
        stanza: Stanza,
        attempts: int = 0,
        last_error: str = "",
        last_error_at: float | None = None,
    ) -> None:
        self.seq = seq
        self.webhook_id = webhook_id
        self.url = url
        self.accepted = accepted
        self.stanza = stanza
        self.attempts = attempts
        self.last_error = last_error
        self.last_error_at = last_error_at

    def row(self) -> tuple[Any, ...]:
        s = self.stanza
        return (
            self.seq, self.webhook_id, self.url, self.accepted, self.attempts, self.last_error, self.last_error_at,
            s.kind, s.to, s.from_, s.type, s.id, s.body, s.xml,
        )  # fmt: skip


def _entry(row: tuple[Any, ...]) -> Entry:
    seq, webhook_id, url, accepted, attempts, last_error, last_error_at, kind, to, from_, type_, id_, body, xml = row
    stanza = Stanza(as_kind(kind) or "message", to, from_, type_, id_, body, xml)
    return Entry(seq, webhook_id, url, accepted, stanza, attempts, last_error, last_error_at)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A stanza given up: its entry (with the last error) and when it was given up."""

    entry: Entry
    died: float


class Store:
    def __init__(
        self,
        folder: str,
        metrics: Metrics,
        on_written: Callable[[list[Entry]], None],
        on_lost: Callable[[list[Entry], str], None],
    ) -> None:
        """`on_written` gets the entries added in a transaction once it is committed; `on_lost` those of a
        transaction that failed (they are not on disk), with the reason."""
        self._folder = folder
        self._metrics = metrics
        self._on_written = on_written
        self._on_lost = on_lost
        self._db: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._scheduled = False
        self._added: list[Entry] = []
        self._noted: list[tuple[Any, ...]] = []
        self._done: list[tuple[int]] = []
        self._buried: list[tuple[Any, ...]] = []
        self._unburied: list[tuple[int]] = []
        self.dead_count = 0

    def open(self) -> list[Entry]:
        """Open (or create) the queue; the pending entries, oldest first. Raises ConfigError naming state.dir."""
        self._loop = asyncio.get_running_loop()
        self._db = db = open_db(self._folder, "queue")
        db.executescript(SCHEMA)
        entries = [_entry(row) for row in db.execute(f"SELECT {ENTRY_COLUMNS} FROM pending ORDER BY seq")]
        last = db.execute("SELECT max(seq) FROM (SELECT max(seq) AS seq FROM pending UNION SELECT max(seq) FROM dead)")
        self._seq = last.fetchone()[0] or 0
        self.dead_count = db.execute("SELECT count(*) FROM dead").fetchone()[0]
        return entries

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- changes, written together at the next turn -----------------------------------------------------------
    def add(self, entry: Entry) -> None:
        self._added.append(entry)
        self._soon()

    def note(self, entry: Entry) -> None:
        """A failed attempt: its count and error, so that a restart knows them."""
        self._noted.append((entry.attempts, entry.last_error, entry.last_error_at, entry.seq))
        self._soon()

    def done(self, entry: Entry) -> None:
        self._done.append((entry.seq,))
        self._soon()

    def bury(self, entry: Entry, died: float) -> None:
        """Move an entry to the dead letters."""
        self._done.append((entry.seq,))
        self._buried.append((*entry.row(), died))
        self.dead_count += 1
        self._soon()

    def unbury(self, seq: int, new_seq: int, accepted: float) -> Entry | None:
        """Queue a dead letter again, at the end of its conversation, with its webhook-id and a new `seq` and
        acceptance time (bot.retry_for starts again); None when there is no such dead letter."""
        assert self._db is not None
        row = self._db.execute(f"SELECT {ENTRY_COLUMNS} FROM dead WHERE seq = ?", (seq,)).fetchone()
        if row is None or any(s == seq for (s,) in self._unburied):
            return None
        old = _entry(row)
        entry = Entry(new_seq, old.webhook_id, old.url, accepted, old.stanza)
        self._unburied.append((seq,))
        self.dead_count -= 1
        self.add(entry)
        return entry

    def _soon(self) -> None:
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every change since the last flush in one transaction."""
        self._scheduled = False
        db = self._db
        if db is None:
            return
        added, noted, done, buried, unburied = self._added, self._noted, self._done, self._buried, self._unburied
        if not (added or noted or done or buried or unburied):
            return
        self._added, self._noted, self._done, self._buried, self._unburied = [], [], [], [], []
        try:
            db.execute("BEGIN")
            if added:
                db.executemany(_INSERT, [entry.row() for entry in added])
            if noted:
                db.executemany(_NOTE, noted)
            if done:
                db.executemany(_DELETE, done)
            if buried:
                db.executemany(_BURY, buried)
            if unburied:
                db.executemany(_UNBURY, unburied)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.rollback()
            self._metrics.internal_errors.inc()
            self.dead_count += len(unburied) - len(buried)
            log.error(
                "could not write the delivery queue (%s): %d new stanzas not accepted; %d finished ones stay "
                "queued and may be POSTed again after a restart",
                exc,
                len(added),
                len(done),
            )
            if added:
                self._on_lost(added, str(exc))
            return
        self._metrics.delivery_commits.inc()
        if added:
            self._on_written(added)

    # -- reading ---------------------------------------------------------------------------------------------
    def dead(self, limit: int, after: int = 0) -> list[DeadLetter]:
        """Up to `limit` dead letters whose id is above `after`, oldest first."""
        assert self._db is not None
        rows = self._db.execute(
            f"SELECT {ENTRY_COLUMNS}, died FROM dead WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [DeadLetter(_entry(row[:-1]), row[-1]) for row in rows]

    def close(self) -> None:
        """Write what is left and close; the pending entries stay for the next start."""
        if self._db is None:
            return
        self.flush()
        self._db.close()
        self._db = None
