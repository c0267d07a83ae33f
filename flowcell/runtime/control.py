"""The control task of an unbounded foreach, as Metaflow's local runtime records it.

A step under ``@unbounded_test_foreach_internal`` (Metaflow's local stand-in for an
unbounded foreach, the shape ``@parallel`` and Kubernetes/Batch jobsets use) runs as one
*control* task plus one worker task per item.  flowcell runs the workers as an ordinary
foreach and records the control task beside them: it runs no step code and carries its
parent's artifacts, ``Step.control_tasks()`` lists it, and joins never see it.
"""

from __future__ import annotations

from typing import Any

from ..protocol import Frame

#: The decorator that makes a foreach's step unbounded (Metaflow's test decorator name).
UBF_DECORATOR = "unbounded_test_foreach_internal"
#: ``kind`` of the frame that marks a control task in its recorded stack.
CONTROL = "control"


def is_unbounded(flow: Any, step: str) -> bool:
    cell = flow.steps.get(step)
    return cell is not None and cell.decorator(UBF_DECORATOR) is not None


def record_control_task(ctx: Any, parent: Any, step: str, num_splits: int) -> None:
    """Record the control task of ``step`` under the foreach ``parent`` (a finished ``Done``)."""
    # index -1: its stack never matches a worker's, in joins, resume clones or reuse
    frame = Frame(CONTROL, parent.step, -1, num_splits, "_ubf_control")
    task_id = ctx.meta.new_task(ctx.flow.name, ctx.run_number, step, [f.to_json() for f in [*parent.stack, frame]],
                                [parent.task_id])
    ctx.meta.finish_task(ctx.flow.name, ctx.run_number, task_id, "completed", dict(parent.artifacts))
