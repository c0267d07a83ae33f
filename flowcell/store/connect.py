"""Opening the store's SQLite database, and turning SQLite's failures into sentences.

A writable store is opened in WAL mode and migrated to the current schema.  A
store this process cannot write (a read-only mount, an archive, someone else's
files) is opened read-only: every read works, a write says the store is
read-only.  A full disk, a damaged file or a deleted write-ahead log give one
sentence each instead of ``sqlite3.OperationalError``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import StoreError, StoreFullError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    flow TEXT NOT NULL,
    run_number INTEGER NOT NULL,
    user TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    params TEXT NOT NULL DEFAULT '{}',
    origin_run_number INTEGER,
    source TEXT,
    PRIMARY KEY (flow, run_number)
);
CREATE TABLE IF NOT EXISTS run_tags (
    flow TEXT NOT NULL,
    run_number INTEGER NOT NULL,
    tag TEXT NOT NULL,
    system INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (flow, run_number, tag)
);
CREATE INDEX IF NOT EXISTS run_tags_by_tag ON run_tags (flow, tag, run_number);
CREATE TABLE IF NOT EXISTS tasks (
    flow TEXT NOT NULL,
    run_number INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    finished_at REAL,
    foreach_stack TEXT NOT NULL DEFAULT '[]',
    parents TEXT NOT NULL DEFAULT '[]',
    stdout TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    exception TEXT,
    origin TEXT,
    transition TEXT,
    PRIMARY KEY (flow, run_number, task_id)
);
CREATE INDEX IF NOT EXISTS tasks_by_step ON tasks (flow, run_number, step, task_id);
CREATE TABLE IF NOT EXISTS artifacts (
    flow TEXT NOT NULL,
    run_number INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    ref TEXT NOT NULL,
    PRIMARY KEY (flow, run_number, task_id, name)
);
"""

#: Changes to the schema after the first release, in order; ``PRAGMA user_version``
#: counts how many a database has had.
MIGRATIONS = [
    # 1: large stdout and stderr are stored as blobs; the row keeps their address.
    "ALTER TABLE tasks ADD COLUMN stdout_blob TEXT; ALTER TABLE tasks ADD COLUMN stderr_blob TEXT;",
    # 2: each run records the process that runs it, so readers can tell a crashed run.
    "ALTER TABLE runs ADD COLUMN owner TEXT;",
    # 3: each executed task's fingerprint (flowcell/fingerprint.py), looked up by reuse.
    "CREATE TABLE IF NOT EXISTS task_fingerprints (flow TEXT NOT NULL, run_number INTEGER NOT NULL,"
    " task_id INTEGER NOT NULL, step TEXT NOT NULL, code TEXT NOT NULL, split TEXT NOT NULL DEFAULT '',"
    " digest TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (flow, run_number, task_id));"
    "CREATE INDEX IF NOT EXISTS task_fingerprints_by_code ON task_fingerprints"
    " (flow, step, code, split, run_number);",
    # 4: the raw text of step cells and module code the fingerprints name (status shows diffs of them);
    # kept here, not as blobs, so recording a new version costs no fsync.
    "CREATE TABLE IF NOT EXISTS fingerprint_sources (address TEXT PRIMARY KEY, text TEXT NOT NULL);",
]


def _open(path: Path, uri_options: str | None = None) -> sqlite3.Connection:
    target = f"file:{quote(str(path))}?{uri_options}" if uri_options else str(path)
    conn = sqlite3.connect(target, timeout=60.0, isolation_level=None, check_same_thread=False,
                           uri=uri_options is not None)
    conn.row_factory = sqlite3.Row
    return conn


def connect(path: Path, writable: bool) -> tuple[sqlite3.Connection, bool]:
    """Open the database at ``path``; return the connection and whether it is read-only."""
    if writable:
        conn = _open(path)
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL keeps every commit atomic and survives a process crash;
            # blob bytes are made durable before a task is committed here.
            conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(conn)
            return conn, False
        except sqlite3.OperationalError as exc:
            conn.close()
            if not (_is_read_only(exc) or disk_full(path.parent)):
                raise explain(exc, path) from None
    # Read-only (also on a full disk, where writes then say the disk is full): through
    # the WAL when its files are there (a live store on a read-only mount); else as an
    # immutable file (an archived store whose -shm cannot be created).
    for options in ("mode=ro", "immutable=1"):
        conn = _open(path, options)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn, True
        except sqlite3.OperationalError as exc:
            conn.close()
            last = exc
    raise explain(last, path) from None


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= len(MIGRATIONS) and _has_tables(conn):
        return
    # One process migrates, the others wait and find it done.  Statement by statement:
    # executescript() would commit the transaction first.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_tables(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'").fetchone()[0])


def _is_read_only(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def disk_full(folder: Path) -> bool:
    """Whether the file system holding ``folder`` has (almost) no room left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 256 * 1024


def explain(exc: sqlite3.Error, path: Path) -> StoreError:
    """One sentence for an SQLite failure on the store at ``path``."""
    text = str(exc).lower()
    folder = path.parent
    if "full" in text or disk_full(folder):
        return StoreFullError(f"The disk holding the store {folder} is full: free some space and try again "
                              "(finished runs are kept).")
    if _is_read_only(exc):
        return StoreError(f"The store {folder} is read-only for this process, so nothing can be written to it; "
                          "it can still be read.")
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if "disk i/o" in text and shm.exists() and (not wal.exists() or wal.stat().st_size == 0):
        # The shared index lists log frames that the (re-created, empty) log lacks.
        return StoreError(f"The store's metadata {path} cannot be read: its write-ahead log {wal.name} was "
                          "deleted while another process had the store open; stop the other flowcell "
                          "processes using this store (they still hold the log) and try again.")
    if "not a database" in text or "malformed" in text:
        return StoreError(f"The store's metadata {path} is damaged ({exc}); restore it from a backup or "
                          "move the store away to start a new one.")
    if "locked" in text or "busy" in text:
        return StoreError(f"The store {folder} stayed locked by another process for a minute ({exc}); "
                          "try again when the other flowcell command has finished.")
    return StoreError(f"The store's metadata {path} cannot be used: {exc}.")
