"""Opening a SQLite file that several processes may create at once: the request log and
the Responses API's conversation state both need it.

Gateway workers (``llmroute serve --workers N``), or replicas of an application,
start together and open the same new file. Two things go wrong unless handled:
the file must be created private (it holds prompts, keys and conversations), and
turning it to WAL mode does not wait on SQLite's busy timeout, so every opener
but one is told "database is locked" at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

__all__ = ["create_private", "enable_wal"]


def create_private(path: Path) -> None:
    """Create the file readable by its owner only (0600), if it does not exist.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's own mode,
    so they are private too. An existing file keeps the mode its operator gave it.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (it stays so), waiting up to `timeout` seconds for the
    other openers rather than failing while one of them is doing the same."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        else:
            return
