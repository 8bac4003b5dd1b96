"""The rooms added through the send API (or joined on an invitation), kept in `[state] dir`/rooms.sqlite3 so that
they survive a restart. SQLite, as the component's other state: one commit per change, atomic, and nothing to
parse by hand. Without a state dir they are kept in memory only."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass

from component import state

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT NOT NULL,
    bot TEXT NOT NULL,
    nick TEXT NOT NULL,
    password TEXT NOT NULL DEFAULT '',
    history INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    added REAL NOT NULL,
    PRIMARY KEY (room, bot)
)
"""


@dataclass(frozen=True, slots=True)
class Wanted:
    """A room one bot should sit in, whoever asked for it (`source`: config, api or invite)."""

    room: str
    bot: str
    nick: str
    password: str = ""
    history: int = 0
    source: str = "config"


class Store:
    """The kept rooms; `kept` is False when there is no state dir (then nothing outlives the process)."""

    def __init__(self, folder: str) -> None:
        self._db: sqlite3.Connection | None = None
        if folder:
            self._db = state.open_db(folder, "rooms")
            self._db.execute(SCHEMA)
            for suffix in ("", "-wal", "-shm"):  # it may hold room passwords (SQLite makes new -wal files alike)
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(folder, f"rooms.sqlite3{suffix}"), 0o600)

    @property
    def kept(self) -> bool:
        return self._db is not None

    def load(self) -> list[Wanted]:
        if self._db is None:
            return []
        rows = self._db.execute("SELECT room, bot, nick, password, history, source FROM rooms ORDER BY added, room")
        return [Wanted(*row) for row in rows]

    def put(self, wanted: Wanted, added: float) -> None:
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO rooms (room, bot, nick, password, history, source, added) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (wanted.room, wanted.bot, wanted.nick, wanted.password, wanted.history, wanted.source, added),
            )

    def delete(self, room: str, bot: str) -> None:
        if self._db is not None:
            self._db.execute("DELETE FROM rooms WHERE room = ? AND bot = ?", (room, bot))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
