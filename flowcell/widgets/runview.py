"""Runs, one run, one task and a comparison of two runs, as plain JSON for the widgets.

Everything here reads metadata only (SQLite rows and artifact references); an
artifact's bytes are read when its preview is opened (see ``preview_data``) or,
in a comparison, only for small artifacts that differ.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..store.metadata import MetadataStore, RunRecord, TaskRecord

#: A comparison shows the values of differing artifacts up to this size.
COMPARE_VALUE_BYTES = 64 * 1024


def _duration(created: float, finished: float | None, status: str) -> float | None:
    if finished is not None:
        return finished - created
    return time.time() - created if status == "running" else None


def run_rows(meta: MetadataStore, flow: str, tags: tuple[str, ...], status: str | None, sort: str,
             descending: bool, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the run table and the number of runs matching the filter (LIMIT/OFFSET in SQL)."""
    total = meta.count_runs(flow, tags, status)
    records = meta.runs(flow, tags, status, limit=page_size, offset=page * page_size, sort=sort,
                        descending=descending)
    reused = meta.reused_counts(flow, [r.run_number for r in records])
    return [run_row(r, reused.get(r.run_number, 0)) for r in records], total


def run_row(r: RunRecord, reused: int = 0) -> dict[str, Any]:
    return {"id": str(r.run_number), "pathspec": r.pathspec, "status": r.status, "user": r.user,
            "started": r.created_at, "finished": r.finished_at,
            "duration": _duration(r.created_at, r.finished_at, r.status),
            # A run mirrored from Metaflow (--on metaflow) shows its Metaflow pathspec with its tags.
            "tags": list(r.tags) + sorted(t for t in r.system_tags if t.startswith("metaflow_run:")),
            "reused": reused, "origin": None if r.origin_run_number is None else str(r.origin_run_number)}


def _lanes(tasks: list[TaskRecord]) -> dict[int, int]:
    """Worker lane of each task for the timeline: a task takes the first lane free when it starts."""
    ends: list[float] = []
    lane: dict[int, int] = {}
    for t in sorted(tasks, key=lambda t: (t.created_at, t.task_id)):
        end = t.finished_at if t.finished_at is not None else time.time()
        for i, free_at in enumerate(ends):
            if free_at <= t.created_at + 1e-4:
                ends[i] = end
                lane[t.task_id] = i
                break
        else:
            lane[t.task_id] = len(ends)
            ends.append(end)
    return lane


def _foreach(t: TaskRecord, values: dict[tuple[str, tuple[int, ...], int], str]) -> list[dict[str, Any]]:
    stack = t.foreach_stack
    return [{"step": f["step"], "index": f["index"], "num_splits": f.get("num_splits"), "var": f.get("var"),
             "value": values.get((f["step"], tuple(g["index"] for g in stack[:d]), f["index"]))}
            for d, f in enumerate(stack) if f.get("kind", "foreach") == "foreach"]


def _step_status(tasks: list[TaskRecord]) -> str:
    states = {t.status for t in tasks}
    for status in ("failed", "crashed", "running"):  # crashed: its run's process is gone
        if status in states:
            return status
    return "completed"


def run_graph(tasks: list[TaskRecord]) -> dict[str, Any]:
    """The graph a run took, read from its tasks: steps coloured by status, with durations.

    Edges come from the tasks' parents; their kind from what the parent recorded
    (a foreach's split count, a switch's value) and whether the child is a join.
    """
    by_id = {t.task_id: t for t in tasks}
    steps: dict[str, list[TaskRecord]] = {}
    for t in tasks:
        if not t.step.startswith("_"):
            steps.setdefault(t.step, []).append(t)
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for t in tasks:
        for pid in t.parents:
            p = by_id.get(pid)
            if p is None or p.step.startswith("_") or (p.step, t.step) in edges:
                continue
            ptrans, ttrans = p.transition or {}, t.transition or {}
            kind, label = "linear", ""
            if "switch_value" in ptrans:
                kind, label = "conditional", str(ptrans["switch_value"])
            elif any(f.get("step") == p.step and f.get("kind", "foreach") == "foreach" for f in t.foreach_stack) \
                    and len(p.foreach_stack) < len(t.foreach_stack):
                kind = "foreach"
            elif ttrans.get("join"):
                kind = "join"
            edges[(p.step, t.step)] = {"source": p.step, "target": t.step, "kind": kind, "label": label}
    out_steps = {s for s, _ in edges}
    for (s, _), e in edges.items():
        if e["kind"] == "linear" and sum(1 for a, _ in edges if a == s) > 1:
            e["kind"] = "branch"
    nodes = []
    for name, ts in steps.items():
        started = min(t.created_at for t in ts)
        ends = [t.finished_at for t in ts if t.finished_at is not None]
        done = len(ends) == len(ts)
        reused = sum(1 for t in ts if (t.transition or {}).get("reused"))
        cloned = sum(1 for t in ts if t.origin) - reused
        nodes.append({"id": name, "status": _step_status(ts), "tasks": len(ts),
                      "type": "join" if (ts[0].transition or {}).get("join") else
                      ("end" if name not in out_steps else "linear"),
                      "duration": (max(ends) - started) if done and ends else None,
                      **({"reused": reused} if reused else {}), **({"cloned": cloned} if cloned else {})})
    return {"nodes": nodes, "edges": list(edges.values())}


def run_view(meta: MetadataStore, run: RunRecord) -> dict[str, Any]:
    """What the run view shows: header, parameters, graph, timeline and tasks."""
    tasks = meta.tasks(run.flow, run.run_number)
    visible = [t for t in tasks if not t.step.startswith("_")]
    lanes = _lanes(visible)
    values = _foreach_values(tasks, meta.path.parent)  # the store these records were read from
    rows = [{"pathspec": t.pathspec, "id": str(t.task_id), "step": t.step, "status": t.status,
             "attempt": t.attempt, "started": t.created_at, "finished": t.finished_at,
             "duration": _duration(t.created_at, t.finished_at, t.status), "lane": lanes[t.task_id],
             "foreach": _foreach(t, values), "origin": t.origin,
             # Taken by --reuse (an equal task found), else cloned by a resume; None: it ran.
             "taken": None if not t.origin else ("reused" if (t.transition or {}).get("reused") else "cloned"),
             "exception": None if not t.exception else f"{t.exception.get('ename')}: {t.exception.get('evalue')}"}
            for t in visible]
    return {**run_row(run, sum(1 for t in visible if t.origin)), "params": {k: _short(v) for k, v in run.params.items()},
            "system_tags": list(run.system_tags), "graph": run_graph(tasks), "tasks": rows,
            "workers": (max(lanes.values()) + 1) if lanes else 0}


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


#: Foreach values are shown when the split step's list is at most this big.
FOREACH_VALUES_BYTES = 256 * 1024


def _foreach_values(tasks: list[TaskRecord], store: Path) -> dict[tuple[str, tuple[int, ...], int], str]:
    """The value each foreach split iterates over, keyed (split step, enclosing indices, index).

    Read from the splitting task's foreach artifact only when that artifact is small
    (a list of names or numbers); a large one is never loaded and its splits show
    their index alone.
    """
    from ..client import Task

    out: dict[tuple[str, tuple[int, ...], int], str] = {}
    splitters = {(t.step, tuple(f["index"] for f in t.foreach_stack)): t for t in tasks}
    seen: set[tuple[str, tuple[int, ...]]] = set()
    for t in tasks:
        # A split step's own stack is the prefix of its children's stacks (static
        # branches included), which identifies the task that made this split.
        for depth, f in enumerate(t.foreach_stack):
            prefix = tuple(g["index"] for g in t.foreach_stack[:depth])
            key = (f["step"], prefix)
            if key in seen or f.get("kind", "foreach") != "foreach" or not f.get("var"):
                continue
            seen.add(key)
            split = splitters.get(key)
            if split is None:
                continue
            try:
                art = Task._of(split, store)[f["var"]]
                if art.size > FOREACH_VALUES_BYTES:
                    continue
                for i, v in enumerate(art.data):
                    out[(f["step"], prefix, i)] = _short(v, 60)
            except Exception:  # an unreadable list: splits keep their index, the view still opens
                continue
    return out


def task_detail(task: Any) -> dict[str, Any]:
    """A task's artifacts (references only), logs, cards and exception."""
    from ..client import get_cards

    r: TaskRecord = task._record
    artifacts = [{"name": a.id, "type": a.type, "size": a.size} for a in sorted(task.artifacts, key=lambda a: a.id)
                 if not a.id.startswith("_")]
    exc = r.exception or {}
    return {"pathspec": r.pathspec, "step": r.step, "status": r.status, "attempt": r.attempt,
            "artifacts": artifacts, "stdout": r.stdout, "stderr": r.stderr,
            "exception": None if not exc else {"ename": exc.get("ename"), "evalue": exc.get("evalue"),
                                               "text": exc.get("text") or "\n".join(exc.get("traceback") or [])},
            "cards": [{"type": c.type, "id": c.id, "html": c.html} for c in get_cards(task)]}


def compare_runs(a: Any, b: Any) -> dict[str, Any]:
    """Parameters and end artifacts of two runs side by side; ``same`` marks equal values.

    Artifacts are compared by content address, so equal ones are never loaded;
    differing small ones show a short value.
    """
    def params(run: Any) -> dict[str, Any]:
        return dict(run._record.params)

    pa, pb = params(a), params(b)
    prows = [{"name": k, "a": _short(pa[k]) if k in pa else None, "b": _short(pb[k]) if k in pb else None,
              "same": k in pa and k in pb and pa[k] == pb[k]} for k in sorted(set(pa) | set(pb))]
    left = {x.id: x for x in (a.end_task.artifacts if a.end_task else []) if not x.id.startswith("_")}
    right = {x.id: x for x in (b.end_task.artifacts if b.end_task else []) if not x.id.startswith("_")}

    def cell(art: Any, same: bool) -> dict[str, Any] | None:
        if art is None:
            return None
        out: dict[str, Any] = {"type": art.type, "size": art.size}
        if art.size <= COMPARE_VALUE_BYTES:
            try:
                out["value"] = _short(art.data)
            except Exception as exc:  # shown in place of the value
                out["value"] = f"({type(exc).__name__}: {exc})"
        return out

    arows = []
    # Parameters are artifacts too; they are compared above, once.
    for name in sorted((set(left) | set(right)) - set(pa) - set(pb)):
        la, ra = left.get(name), right.get(name)
        same = la is not None and ra is not None and la.sha == ra.sha
        arows.append({"name": name, "same": same, "a": cell(la, same), "b": cell(ra, same)})
    return {"a": a.pathspec, "b": b.pathspec, "a_status": a.status, "b_status": b.status,
            "params": prows, "artifacts": arows}
