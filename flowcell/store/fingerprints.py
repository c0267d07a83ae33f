"""The ``task_fingerprints`` table: one row per executed task, looked up by reuse and status.

The raw text of the step cells and module code that records name by address is in
``fingerprint_sources`` (:func:`source_text`).  A task taken from another run (``--reuse`` or a resume clone) has no row of its
own: :func:`load` follows its ``origin`` to the task that ran.  The lookup for
reuse is one indexed query on ``(flow, step, code, split)``, newest first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .metadata import MetadataStore, TaskRecord


@dataclass
class TaskFingerprint:
    """A stored fingerprint: the executed task it belongs to and its record (see ``flowcell.fingerprint``)."""

    flow: str
    run_number: int
    task_id: int
    step: str
    code: str
    split: str
    digest: str
    record: dict[str, Any]

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_number}/{self.step}/{self.task_id}"


def save(meta: MetadataStore, fp: TaskFingerprint, sources: dict[str, str] | None = None) -> None:
    """Store the fingerprint of an executed task (replacing one of an earlier attempt), and the
    source texts it names (``{address: text}``) that the store may not have yet."""
    with meta.transaction() as cur:
        cur.executemany("INSERT OR IGNORE INTO fingerprint_sources (address, text) VALUES (?, ?)",
                        list((sources or {}).items()))
        cur.execute(
            "INSERT OR REPLACE INTO task_fingerprints (flow, run_number, task_id, step, code, split, digest, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (fp.flow, fp.run_number, fp.task_id, fp.step, fp.code, fp.split, fp.digest,
             json.dumps(fp.record, separators=(",", ":"))),
        )


def source_text(meta: MetadataStore, address: str) -> str | None:
    """The step cell or module code a record names (``record["step_source"]``, ``["module_source"]``)."""
    rows = meta._query("SELECT text FROM fingerprint_sources WHERE address = ?", (address,))
    return str(rows[0]["text"]) if rows else None


def _row(row: Any) -> TaskFingerprint:
    return TaskFingerprint(row["flow"], row["run_number"], row["task_id"], row["step"], row["code"], row["split"],
                           row["digest"], json.loads(row["record"]))


def candidates(meta: MetadataStore, flow: str, step: str, code: str, split: str,
               limit: int = 20) -> list[tuple[TaskRecord, TaskFingerprint]]:
    """Completed tasks of ``step`` that ran the same code at the same foreach position, newest first."""
    rows = meta._query(
        "SELECT f.code, f.split, f.digest, f.record, t.* FROM task_fingerprints f JOIN tasks t"
        " ON t.flow = f.flow AND t.run_number = f.run_number AND t.task_id = f.task_id"
        " WHERE f.flow = ? AND f.step = ? AND f.code = ? AND f.split = ? AND t.status = 'completed'"
        " ORDER BY f.run_number DESC, f.task_id DESC LIMIT ?",
        (flow, step, code, split, limit),
    )
    return [(meta._task_from_row(r), _row(r)) for r in rows]


def load(meta: MetadataStore, flow: str, run_number: int, task_id: int) -> TaskFingerprint | None:
    """The fingerprint of a task, following a reused or cloned task to the task that ran (None if unrecorded)."""
    for _ in range(64):  # origins form a chain (reuse of a reuse); never loop on a damaged store
        rows = meta._query("SELECT * FROM task_fingerprints WHERE flow = ? AND run_number = ? AND task_id = ?",
                           (flow, run_number, task_id))
        if rows:
            return _row(rows[0])
        task = meta.get_task(flow, run_number, task_id)
        if task is None or not task.origin:
            return None
        parts = task.origin.split("/")
        flow, run_number, task_id = parts[0], int(parts[1]), int(parts[3])
    return None


def for_run(meta: MetadataStore, flow: str, run_number: int) -> dict[int, TaskFingerprint]:
    """Fingerprints of every task of a run, by task id (reused and cloned tasks: their origin's)."""
    out = {r["task_id"]: _row(r) for r in meta._query(
        "SELECT * FROM task_fingerprints WHERE flow = ? AND run_number = ?", (flow, run_number))}
    for task in meta.tasks(flow, run_number):
        if task.task_id not in out and task.origin:
            found = load(meta, task.flow, task.run_number, task.task_id)
            if found is not None:
                out[task.task_id] = found
    return out
