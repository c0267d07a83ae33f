"""Run and task metadata in SQLite (WAL mode, one transaction per state change).

Several processes may write one store at once (two ``flowcell run`` of the same
flow, a tagger in a third shell): run numbers are allocated inside an
``IMMEDIATE`` transaction, so they are distinct and increasing per flow, and every
state change is a single short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .. import owner as owner_mod
from ..config import METADATA_FILE
from ..errors import InvalidNameError, TagLimitError
from .blobs import BlobStore
from .connect import connect, explain
from .files import create_file, open_root

#: stdout or stderr longer than this (in UTF-8 bytes) is stored as a blob, not in its row.
LOG_INLINE_MAX = 64 * 1024


def check_tag_characters(tags: list[str]) -> None:
    """Refuse tags holding control characters or line breaks: they would break ``tag list``."""
    for tag in tags:
        for char in tag:
            if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
                raise InvalidNameError(
                    f"Tag {tag[:40]!r} contains the control character {char!r}; tags must be printable "
                    "text on one line."
                )



@dataclass
class RunRecord:
    flow: str
    run_number: int
    user: str
    status: str
    created_at: float
    finished_at: float | None
    params: dict[str, Any]
    origin_run_number: int | None
    source: str | None
    tags: list[str] = field(default_factory=list)
    system_tags: list[str] = field(default_factory=list)
    #: The process that ran it: ``{"pid", "host", "started"}`` (None for runs recorded before owners were).
    owner: dict[str, Any] | None = None

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_number}"


@dataclass
class TaskLogs:
    """A task's stdout and stderr: kept in its row when short, read from a blob when long."""

    inline: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)
    store: BlobStore | None = None

    def read(self, stream: str) -> str:
        address = self.blobs.get(stream)
        if address is None or self.store is None:
            return self.inline.get(stream, "")
        return self.store.get(address).decode("utf-8", errors="replace")


@dataclass
class TaskRecord:
    flow: str
    run_number: int
    task_id: int
    step: str
    status: str
    attempt: int
    created_at: float
    finished_at: float | None
    foreach_stack: list[dict[str, Any]]
    parents: list[int]
    exception: dict[str, Any] | None
    origin: str | None
    transition: dict[str, Any] | None = None
    logs: TaskLogs = field(default_factory=TaskLogs, repr=False, compare=False)

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_number}/{self.step}/{self.task_id}"

    @property
    def stdout(self) -> str:
        """What the task printed (read from its blob on access when it is long)."""
        return self.logs.read("stdout")

    @property
    def stderr(self) -> str:
        return self.logs.read("stderr")


#: The status a reader shows for a run still recorded as running whose owner process is gone.
CRASHED = "crashed"


def _owner(row: sqlite3.Row) -> dict[str, Any] | None:
    text = row["owner"] if "owner" in row.keys() else None
    return json.loads(text) if text else None


def _status(row: sqlite3.Row) -> str:
    """The recorded status, or :data:`CRASHED` for a "running" run whose process has gone.

    A process killed with SIGKILL (or a lost machine) cannot mark its run failed;
    readers see from the recorded owner (pid, host, start time) that nobody runs it.
    A run owned by another host is shown as recorded: its owner cannot be checked.
    """
    status = str(row["status"])
    if status != "running":
        return status
    who = _owner(row)
    if who is None:
        return status
    alive = owner_mod.Owner(int(who["pid"]), str(who["host"]), float(who["started"])).alive()
    return CRASHED if alive is False else status


class MetadataStore:
    """The SQLite side of a flowcell store (``ROOT/metadata.sqlite``)."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        self.path = root / METADATA_FILE
        self._lock = threading.RLock()
        modes, writable = open_root(root)
        if writable:
            create_file(self.path, modes)  # private; SQLite gives -wal and -shm the same mode
        self._conn, self.read_only = connect(self.path, writable)
        self._blobs: BlobStore | None = None

    @property
    def blobs(self) -> BlobStore:
        """The blob store beside the database (long logs live there)."""
        if self._blobs is None:
            self._blobs = BlobStore(self.path.parent)
        return self._blobs

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One IMMEDIATE transaction: the write lock is taken up front, so two
        processes never both read a max and then both insert it."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback(cur)
                raise explain(exc, self.path) from None
            except BaseException:
                self._rollback(cur)
                raise

    def _rollback(self, cur: sqlite3.Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except OverflowError:
                return []  # a number beyond SQLite's 64 bits is no run or task id
            except sqlite3.OperationalError as exc:
                raise explain(exc, self.path) from None

    # -- runs ----------------------------------------------------------------------

    def new_run(
        self,
        flow: str,
        user: str,
        tags: list[str],
        system_tags: list[str],
        params: dict[str, Any],
        origin_run_number: int | None = None,
        source: str | None = None,
    ) -> int:
        """Allocate the next run number of ``flow`` and record the run as running, owned by this process."""
        me = owner_mod.current()
        check_tag_characters(tags)
        with self.transaction() as cur:
            row = cur.execute(
                "SELECT COALESCE(MAX(run_number), 0) + 1 FROM runs WHERE flow = ?", (flow,)
            ).fetchone()
            number = int(row[0])
            cur.execute(
                "INSERT INTO runs (flow, run_number, user, status, created_at, params,"
                " origin_run_number, source, owner) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (flow, number, user, time.time(), json.dumps(params), origin_run_number, source,
                 json.dumps({"pid": me.pid, "host": me.host, "started": me.started})),
            )
            cur.executemany(
                "INSERT OR IGNORE INTO run_tags (flow, run_number, tag, system) VALUES (?, ?, ?, ?)",
                [(flow, number, t, 1) for t in system_tags] + [(flow, number, t, 0) for t in tags],
            )
        return number

    def finish_run(self, flow: str, run_number: int, status: str) -> None:
        with self.transaction() as cur:
            cur.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE flow = ? AND run_number = ?",
                (status, time.time(), flow, run_number),
            )

    def _runs_from_rows(self, rows: list[sqlite3.Row]) -> list[RunRecord]:
        """Records for ``rows`` with their tags, fetched in one query (not one per run)."""
        if not rows:
            return []
        flow = rows[0]["flow"]
        numbers = [r["run_number"] for r in rows]
        tags: dict[int, tuple[list[str], list[str]]] = {n: ([], []) for n in numbers}
        for chunk in range(0, len(numbers), 900):  # SQLite's bound-parameter limit
            part = numbers[chunk:chunk + 900]
            marks = ",".join("?" * len(part))
            for t in self._query(
                f"SELECT run_number, tag, system FROM run_tags WHERE flow = ? AND run_number IN ({marks})",
                (flow, *part),
            ):
                tags[t["run_number"]][1 if t["system"] else 0].append(t["tag"])
        for user, system in tags.values():
            user.sort()
            system.sort()
        return [
            RunRecord(
                flow=row["flow"], run_number=row["run_number"], user=row["user"], status=_status(row),
                created_at=row["created_at"], finished_at=row["finished_at"], params=json.loads(row["params"]),
                origin_run_number=row["origin_run_number"], source=row["source"],
                tags=tags[row["run_number"]][0], system_tags=tags[row["run_number"]][1],
                owner=_owner(row),
            )
            for row in rows
        ]

    def _run_from_row(self, row: sqlite3.Row) -> RunRecord:
        return self._runs_from_rows([row])[0]

    def get_run(self, flow: str, run_number: int) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE flow = ? AND run_number = ?", (flow, run_number))
        return self._run_from_row(rows[0]) if rows else None

    def flows(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT flow FROM runs ORDER BY flow")]

    #: Columns the run browser may sort by (whitelisted: they are spliced into SQL).
    SORT_COLUMNS = {
        "id": "r.run_number", "status": "r.status", "user": "r.user", "started": "r.created_at",
        "duration": "(COALESCE(r.finished_at, ?) - r.created_at)",
    }

    def _run_filter(self, flow: str, tags: tuple[str, ...], status: str | None) -> tuple[str, list[Any]]:
        """FROM/WHERE of a query over ``flow``'s runs having every tag in ``tags``.

        The first tag drives the query through the tag index (callers put the most
        selective tag first: user tags before the namespace), the others are
        checked per candidate, so a rare tag among many runs is found without a scan.
        """
        args: list[Any] = [flow]
        if tags:
            # CROSS JOIN pins the tag index as the outer loop (SQLite keeps that order).
            sql = (" FROM run_tags d CROSS JOIN runs r ON r.flow = d.flow AND r.run_number = d.run_number"
                   " WHERE d.flow = ? AND d.tag = ?")
            args.append(tags[0])
        else:
            sql = " FROM runs r WHERE r.flow = ?"
        for tag in tags[1:]:
            sql += (
                " AND EXISTS (SELECT 1 FROM run_tags t WHERE t.flow = r.flow"
                " AND t.run_number = r.run_number AND t.tag = ?)"
            )
            args.append(tag)
        if status is not None:
            sql += " AND r.status = ?"
            args.append(status)
        return sql, args

    def runs(
        self,
        flow: str,
        tags: tuple[str, ...] = (),
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        sort: str = "id",
        descending: bool = True,
    ) -> list[RunRecord]:
        """Runs of ``flow`` having every tag in ``tags``, newest first unless ``sort`` says otherwise.

        ``limit``/``offset`` page through the result in SQL (the run browser shows
        one page of 10,000 runs without reading the others); ``sort`` is one of
        :attr:`SORT_COLUMNS`, ties broken by run number.
        """
        if sort not in self.SORT_COLUMNS:
            raise ValueError(f"Cannot sort runs by {sort!r}; choose one of {', '.join(self.SORT_COLUMNS)}.")
        where, args = self._run_filter(flow, tags, status)
        column = self.SORT_COLUMNS[sort]
        order_args: list[Any] = [time.time()] if "?" in column else []
        direction = "DESC" if descending else "ASC"
        # With a tag filter the tag index already yields run numbers in order.
        number = "d.run_number" if tags else "r.run_number"
        order = f"{number} {direction}" if sort == "id" else f"{column} {direction}, {number} DESC"
        sql = f"SELECT r.*{where} ORDER BY {order}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            order_args += [-1 if limit is None else limit, offset]
        return self._runs_from_rows(self._query(sql, (*args, *order_args)))

    def count_runs(self, flow: str, tags: tuple[str, ...] = (), status: str | None = None) -> int:
        """How many runs :meth:`runs` would list without a limit (one COUNT, no rows read)."""
        where, args = self._run_filter(flow, tags, status)
        return int(self._query(f"SELECT COUNT(*){where}", tuple(args))[0][0])

    def reused_counts(self, flow: str, run_numbers: list[int]) -> dict[int, int]:
        """Per run, how many of its tasks were taken from another run (resume clones, ``--reuse``)."""
        out = {n: 0 for n in run_numbers}
        for chunk in range(0, len(run_numbers), 900):  # SQLite's bound-parameter limit
            part = run_numbers[chunk:chunk + 900]
            marks = ",".join("?" * len(part))
            for row in self._query(
                f"SELECT run_number, COUNT(*) FROM tasks WHERE flow = ? AND run_number IN ({marks})"
                " AND origin IS NOT NULL AND step NOT LIKE '\\_%' ESCAPE '\\' GROUP BY run_number",
                (flow, *part),
            ):
                out[row[0]] = int(row[1])
        return out

    def latest_run_with_step(self, flow: str, step: str, tags: tuple[str, ...] = ()) -> RunRecord | None:
        """The newest run of ``flow`` having every tag in ``tags`` and a completed task of ``step``."""
        sql = ("SELECT r.* FROM runs r WHERE r.flow = ? AND EXISTS (SELECT 1 FROM tasks t WHERE t.flow = r.flow"
               " AND t.run_number = r.run_number AND t.step = ? AND t.status = 'completed')")
        args: list[Any] = [flow, step]
        for tag in tags:
            sql += (" AND EXISTS (SELECT 1 FROM run_tags g WHERE g.flow = r.flow"
                    " AND g.run_number = r.run_number AND g.tag = ?)")
            args.append(tag)
        rows = self._query(sql + " ORDER BY r.run_number DESC LIMIT 1", tuple(args))
        return self._run_from_row(rows[0]) if rows else None

    def set_tags(self, flow: str, run_number: int, add: list[str], remove: list[str],
                 max_tags: int | None = None) -> None:
        """Add and remove user tags in one transaction (system tags are untouched).

        With ``max_tags``, the transaction fails if the run would end up with more
        user tags than that (checked inside the transaction, so concurrent taggers
        cannot overshoot together).  Tags being removed may hold anything, so a tag
        stored before control characters were refused can still be cleaned away.
        """
        check_tag_characters(add)
        with self.transaction() as cur:
            cur.executemany(
                "DELETE FROM run_tags WHERE flow = ? AND run_number = ? AND tag = ? AND system = 0",
                [(flow, run_number, t) for t in remove],
            )
            cur.executemany(
                "INSERT OR IGNORE INTO run_tags (flow, run_number, tag, system) VALUES (?, ?, ?, 0)",
                [(flow, run_number, t) for t in add],
            )
            if max_tags is not None:
                count = cur.execute(
                    "SELECT COUNT(*) FROM run_tags WHERE flow = ? AND run_number = ? AND system = 0",
                    (flow, run_number),
                ).fetchone()[0]
                if count > max_tags:
                    raise TagLimitError(f"A run can have at most {max_tags} user tags; this change would give "
                                        f"{flow}/{run_number} {count}. Remove some first.")

    # -- tasks ---------------------------------------------------------------------

    def new_task(
        self,
        flow: str,
        run_number: int,
        step: str,
        foreach_stack: list[dict[str, Any]],
        parents: list[int],
        status: str = "running",
        attempt: int = 0,
        origin: str | None = None,
    ) -> int:
        with self.transaction() as cur:
            row = cur.execute(
                "SELECT COALESCE(MAX(task_id), 0) + 1 FROM tasks WHERE flow = ? AND run_number = ?",
                (flow, run_number),
            ).fetchone()
            task_id = int(row[0])
            cur.execute(
                "INSERT INTO tasks (flow, run_number, task_id, step, status, attempt, created_at,"
                " foreach_stack, parents, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (flow, run_number, task_id, step, status, attempt, time.time(),
                 json.dumps(foreach_stack), json.dumps(parents), origin),
            )
        return task_id

    def set_attempt(self, flow: str, run_number: int, task_id: int, attempt: int) -> None:
        with self.transaction() as cur:
            cur.execute(
                "UPDATE tasks SET attempt = ?, status = 'running' WHERE flow = ? AND run_number = ? AND task_id = ?",
                (attempt, flow, run_number, task_id),
            )

    def finish_task(
        self,
        flow: str,
        run_number: int,
        task_id: int,
        status: str,
        artifacts: dict[str, dict[str, Any]],
        stdout: str = "",
        stderr: str = "",
        exception: dict[str, Any] | None = None,
        transition: dict[str, Any] | None = None,
    ) -> None:
        """Commit a task's outcome and artifact references in one transaction.

        A long stdout or stderr is written to a blob first (durable before the commit).
        """
        stdout, stdout_blob = self._log_blob(stdout)
        stderr, stderr_blob = self._log_blob(stderr)
        with self.transaction() as cur:
            cur.execute(
                "UPDATE tasks SET status = ?, finished_at = ?, stdout = ?, stderr = ?, stdout_blob = ?,"
                " stderr_blob = ?, exception = ?, transition = ? WHERE flow = ? AND run_number = ? AND task_id = ?",
                (status, time.time(), stdout, stderr, stdout_blob, stderr_blob,
                 json.dumps(exception) if exception else None,
                 json.dumps(transition) if transition else None, flow, run_number, task_id),
            )
            cur.execute(
                "DELETE FROM artifacts WHERE flow = ? AND run_number = ? AND task_id = ?",
                (flow, run_number, task_id),
            )
            cur.executemany(
                "INSERT INTO artifacts (flow, run_number, task_id, name, ref) VALUES (?, ?, ?, ?, ?)",
                [(flow, run_number, task_id, n, json.dumps(r)) for n, r in artifacts.items()],
            )

    def _log_blob(self, text: str) -> tuple[str, str | None]:
        """``(row text, blob address)``: long logs go to a blob, the row keeps nothing."""
        if len(text) * 4 <= LOG_INLINE_MAX:  # at most 4 UTF-8 bytes per character: surely short
            return text, None
        data = text.encode("utf-8", errors="replace")
        if len(data) <= LOG_INLINE_MAX:
            return text, None
        return "", self.blobs.put(data)

    def _task_from_row(self, row: sqlite3.Row) -> TaskRecord:
        return TaskRecord(
            flow=row["flow"],
            run_number=row["run_number"],
            task_id=row["task_id"],
            step=row["step"],
            status=row["status"],
            attempt=row["attempt"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            foreach_stack=json.loads(row["foreach_stack"]),
            parents=json.loads(row["parents"]),
            exception=json.loads(row["exception"]) if row["exception"] else None,
            origin=row["origin"],
            transition=json.loads(row["transition"]) if row["transition"] else None,
            logs=self._logs(row),
        )

    def _logs(self, row: sqlite3.Row) -> TaskLogs:
        keys = row.keys()
        blobs = {stream: row[f"{stream}_blob"] for stream in ("stdout", "stderr")
                 if f"{stream}_blob" in keys and row[f"{stream}_blob"]}
        return TaskLogs({"stdout": row["stdout"], "stderr": row["stderr"]}, blobs,
                        self.blobs if blobs else None)

    def tasks(self, flow: str, run_number: int, step: str | None = None) -> list[TaskRecord]:
        if step is None:
            rows = self._query(
                "SELECT * FROM tasks WHERE flow = ? AND run_number = ? ORDER BY task_id",
                (flow, run_number),
            )
        else:
            rows = self._query(
                "SELECT * FROM tasks WHERE flow = ? AND run_number = ? AND step = ? ORDER BY task_id",
                (flow, run_number, step),
            )
        return self._crashed_tasks([self._task_from_row(r) for r in rows])

    def _crashed_tasks(self, records: list[TaskRecord]) -> list[TaskRecord]:
        """Tasks recorded as running in a run whose owner is gone are shown as crashed, like the run."""
        running = [t for t in records if t.status == "running"]
        if running:
            rows = self._query("SELECT * FROM runs WHERE flow = ? AND run_number = ?",
                               (running[0].flow, running[0].run_number))
            if rows and _status(rows[0]) == CRASHED:
                for task in running:
                    task.status = CRASHED
        return records

    def get_task(self, flow: str, run_number: int, task_id: int) -> TaskRecord | None:
        rows = self._query(
            "SELECT * FROM tasks WHERE flow = ? AND run_number = ? AND task_id = ?",
            (flow, run_number, task_id),
        )
        return self._crashed_tasks([self._task_from_row(rows[0])])[0] if rows else None

    def steps(self, flow: str, run_number: int) -> list[str]:
        rows = self._query(
            "SELECT step, MIN(task_id) AS first FROM tasks WHERE flow = ? AND run_number = ?"
            " GROUP BY step ORDER BY first",
            (flow, run_number),
        )
        return [r["step"] for r in rows]

    def artifacts(self, flow: str, run_number: int, task_id: int) -> dict[str, dict[str, Any]]:
        rows = self._query(
            "SELECT name, ref FROM artifacts WHERE flow = ? AND run_number = ? AND task_id = ? ORDER BY name",
            (flow, run_number, task_id),
        )
        return {r["name"]: json.loads(r["ref"]) for r in rows}
