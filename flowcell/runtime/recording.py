"""Recording a task's outcome in the metadata: the one seam runs and spins share."""

from __future__ import annotations

from typing import Any

from ..store.metadata import MetadataStore
from .task import TaskOutcome

#: Recorded for a task stopped because the run was interrupted or a sibling failed.
STOPPED = {"ename": "RunInterrupted", "evalue": "stopped: the run was interrupted or another task failed"}


def transition_of(outcome: TaskOutcome, is_join: bool) -> dict[str, Any] | None:
    """What a later spin or resume needs to know about how the task ended."""
    transition = {k: v for k, v in (("num_splits", outcome.num_splits), ("switch_value", outcome.switch_value),
                                    ("cards", outcome.cards)) if v is not None and v != []}
    if is_join:
        transition["join"] = True
    if outcome.split_items is not None:
        transition["items"] = outcome.split_items  # per-item digests: reuse matches each split by its item
    return transition or None


def record_outcome(meta: MetadataStore, flow: str, run_number: int, task_id: int, outcome: TaskOutcome,
                   is_join: bool) -> str:
    """Commit the task's artifacts, logs, exception and transition; return its status."""
    status = "completed" if outcome.ok else "failed"
    exception = outcome.error.record() if outcome.error and not outcome.ok else None
    meta.finish_task(flow, run_number, task_id, status, outcome.artifacts if outcome.ok else {}, outcome.stdout,
                     outcome.stderr, exception, transition=transition_of(outcome, is_join))
    return status


def record_stopped(meta: MetadataStore, flow: str, run_number: int, task_id: int) -> None:
    """The task was cancelled before it finished."""
    meta.finish_task(flow, run_number, task_id, "failed", {}, exception=dict(STOPPED))
