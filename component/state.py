"""The component's own state on disk: SQLite files in `[state] dir`, one per feature, so that one feature's writes
never wait on another's lock. Opened here the one way: WAL (readers never block the writer, a commit is one
append), synchronous=NORMAL (a commit survives the process being killed; only a power cut may lose the last
ones), and a busy timeout instead of "database is locked"."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from component.options import ConfigError


def open_db(folder: str, name: str) -> sqlite3.Connection:
    """`folder`/`name`.sqlite3, created with its folder if missing. Raises ConfigError (naming state.dir) when the
    folder cannot be made or the file cannot be opened."""
    path = Path(folder) / f"{name}.sqlite3"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"state.dir: cannot open {path} ({exc})") from None
    return db
