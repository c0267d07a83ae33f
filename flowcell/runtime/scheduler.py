"""Walk the flow graph for one recorded run, running ready tasks concurrently.

Branches of a static split and the splits of a foreach are independent tasks that
run at the same time (up to ``max_workers``).  A join starts when every branch of
the split it closes has arrived; arrivals are keyed by the stack of enclosing
splits, so joins inside a foreach only gather their own branch's tasks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..graph import FlowGraph
from ..model import FlowSource
from ..store.metadata import MetadataStore, TaskRecord
from .kernels import KernelPool
from ..protocol import Frame, JoinInput, NodeSpec
from .control import is_unbounded, record_control_task
from .recording import record_outcome, record_stopped
from .reuse import Fingerprints
from .task import EventSink, TaskOutcome, TaskRequest, execute_task


@dataclass
class Done:
    """A finished (or cloned) task, as its children need it."""

    step: str
    task_id: int
    pathspec: str
    artifacts: dict[str, dict[str, Any]]
    stack: list[Frame]
    outcome: TaskOutcome | None = None


@dataclass
class Pending:
    step: str
    parents: list[Done]
    stack: list[Frame]


def node_spec(graph: FlowGraph, step: str) -> NodeSpec:
    node = graph[step]
    return NodeSpec(node.type or "linear", list(node.out_funcs), node.foreach_param, node.condition,
                    dict(node.switch_cases))


def stack_key(frames: list[Frame] | list[dict[str, Any]]) -> tuple[Any, ...]:
    """Identity of a task's position among splits: ((split step, index), ...)."""
    return tuple((f.step, f.index) if isinstance(f, Frame) else (f["step"], f["index"]) for f in frames)


def _last(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    return frames[-1] if frames else None


def foreach_frames(stack: list[Frame]) -> list[dict[str, Any]]:
    return [f.to_json() for f in stack if f.kind == "foreach"]


@dataclass
class RunContext:
    """What every task of a run shares."""

    flow: FlowSource
    graph: FlowGraph
    meta: MetadataStore
    root: str
    run_number: int
    parameter_names: list[str]
    namespace: str
    username: str
    tags: list[str]
    cwd: str
    origin_run_id: int | None = None
    max_workers: int = 4
    #: Resume: successful tasks of the origin run by (step, stack key), and the
    #: steps that must run again (everything else is cloned by reference).
    #: Each (step, stack key) holds its tasks in order: a recursive switch's step has one per turn.
    clone_from: dict[tuple[str, tuple[Any, ...]], list[TaskRecord]] = field(default_factory=dict)
    rerun_steps: set[str] = field(default_factory=set)
    #: Parameter artifacts every executed task sees (resume may override values).
    param_refs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Records each executed task's fingerprint; with reuse on, finds tasks to take by reference.
    fingerprints: Fingerprints | None = None


@dataclass
class Scheduler:
    ctx: RunContext
    pool: KernelPool
    emit: EventSink
    failed: list[Done] = field(default_factory=list)
    _joins: dict[tuple[Any, ...], dict[int, Done]] = field(default_factory=dict)
    #: How many times each (step, stack key) has been reached: the turn of a recursive switch.
    _turns: dict[tuple[Any, ...], int] = field(default_factory=dict)

    async def run(self, first: list[Pending], skip: set[str] | None = None) -> str:
        """Run from ``first`` until ``end`` or a failure; return the run status."""
        ready: list[Pending] = list(first)
        running: dict[asyncio.Task[Done], Pending] = {}
        reached_end = False
        try:
            while ready or running:
                while ready and len(running) < self.ctx.max_workers and not self.failed:
                    pending = ready.pop(0)
                    running[asyncio.ensure_future(self._run_task(pending))] = pending
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    running.pop(fut)
                    result = fut.result()
                    if result.outcome is not None and not result.outcome.ok:
                        self.failed.append(result)
                        continue
                    if result.step == "end":
                        reached_end = True
                    ready.extend(self.successors(result))
                if self.failed and running:
                    await self._stop(running)
                    running.clear()
        except asyncio.CancelledError:
            await self._stop(running)
            raise
        return "completed" if reached_end and not self.failed else "failed"

    async def _stop(self, running: dict[asyncio.Task[Done], Pending]) -> None:
        for fut in running:
            fut.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # -- graph walking -------------------------------------------------------------

    def successors(self, t: Done) -> list[Pending]:
        graph = self.ctx.graph
        node = graph[t.step]
        outcome = t.outcome
        if node.type == "end":
            return []
        if node.type == "split":
            n = len(node.out_funcs)
            return [p for i, target in enumerate(node.out_funcs)
                    for p in self._route(target, t, t.stack + [Frame("split", t.step, i, n)])]
        if node.type == "foreach":
            n = outcome.num_splits if outcome and outcome.num_splits is not None else 0
            items = (outcome.split_items if outcome else None) or [None] * n
            unbounded = is_unbounded(self.ctx.flow, node.out_funcs[0])
            if unbounded:
                record_control_task(self.ctx, t, node.out_funcs[0], n)
            return [p for i in range(n)
                    for p in self._route(node.out_funcs[0], t, t.stack + [
                        Frame("foreach", t.step, i, n, node.foreach_param, items[i] if i < len(items) else None,
                              unbounded)])]
        if node.type == "split-switch":
            value = outcome.switch_value if outcome else None
            return self._route(node.switch_cases[str(value)], t, t.stack)
        return self._route(node.out_funcs[0], t, t.stack)

    def _route(self, target: str, parent: Done, stack: list[Frame]) -> list[Pending]:
        if self.ctx.graph[target].type != "join":
            return [Pending(target, [parent], stack)]
        closing = stack[-1]
        key = (target, tuple((f.step, f.index) for f in stack[:-1]))
        arrived = self._joins.setdefault(key, {})
        arrived[closing.index if closing.kind == "foreach" else len(arrived)] = parent
        if closing.kind == "split":
            # Static branches: order inputs as the join's parents are declared.
            order = {name: i for i, name in enumerate(self.ctx.graph[target].in_funcs)}
        if len(arrived) < closing.num_splits:
            return []
        del self._joins[key]
        parents = [arrived[i] for i in sorted(arrived)]
        if closing.kind == "split":
            parents.sort(key=lambda d: order.get(d.step, 0))
        return [Pending(target, parents, stack[:-1])]

    # -- one task ------------------------------------------------------------------

    def request(self, pending: Pending, task_id: int) -> TaskRequest:
        ctx = self.ctx
        pathspec = f"{ctx.flow.name}/{ctx.run_number}/{pending.step}/{task_id}"
        req = TaskRequest(
            flow=ctx.flow, node=node_spec(ctx.graph, pending.step), step=pending.step, pathspec=pathspec,
            root=ctx.root, foreach_stack=foreach_frames(pending.stack), run_id=ctx.run_number,
            task_id=task_id, origin_run_id=ctx.origin_run_id, namespace=ctx.namespace,
            username=ctx.username, tags=ctx.tags, parameter_names=ctx.parameter_names, cwd=ctx.cwd,
        )
        if ctx.graph[pending.step].type == "join":
            params = {k: v for k, v in pending.parents[0].artifacts.items() if k in ctx.parameter_names}
            params.update(ctx.param_refs)
            req.inputs = params
            req.join_inputs = [JoinInput(p.step, p.pathspec, p.artifacts, _last(foreach_frames(p.stack)))
                               for p in pending.parents]
        else:
            req.inputs = {**pending.parents[0].artifacts, **ctx.param_refs}
        return req

    def _clone(self, pending: Pending, origin: TaskRecord, artifacts: dict[str, dict[str, Any]] | None = None,
               transition: dict[str, Any] | None = None, how: str = "cloned") -> Done:
        """Record the origin's successful task in this run, by reference (resume; reuse with ``how="reused"``)."""
        ctx = self.ctx
        task_id = ctx.meta.new_task(
            ctx.flow.name, ctx.run_number, pending.step, [f.to_json() for f in pending.stack],
            [p.task_id for p in pending.parents], origin=origin.pathspec,
        )
        if artifacts is None:
            artifacts = ctx.meta.artifacts(origin.flow, origin.run_number, origin.task_id)
        if transition is None:
            transition = {k: v for k, v in (origin.transition or {}).items() if k != "reused"} or None
        ctx.meta.finish_task(ctx.flow.name, ctx.run_number, task_id, "completed", artifacts,
                             origin.stdout, origin.stderr, transition=transition)
        transition = transition or {}
        outcome = TaskOutcome(status="ok", attempt=origin.attempt, artifacts=artifacts,
                              num_splits=transition.get("num_splits"), switch_value=transition.get("switch_value"),
                              split_items=transition.get("items"))
        pathspec = f"{ctx.flow.name}/{ctx.run_number}/{pending.step}/{task_id}"
        self.emit("task_finished", {"status": "completed", "duration": 0.0, how: origin.pathspec,
                                    "pathspec": pathspec, "step": pending.step, "error": None})
        return Done(pending.step, task_id, pathspec, artifacts, pending.stack, outcome)

    def _reuse(self, pending: Pending) -> Done | None:
        """With reuse on: take the task from an earlier run when its fingerprint matches."""
        fps = self.ctx.fingerprints
        if fps is None or not fps.reuse:
            return None
        req = self.request(pending, 0)
        found = fps.find(self.ctx.run_number, pending.step, pending.stack, req.inputs or {}, req.join_inputs)
        if found is None:
            return None
        return self._clone(pending, found.origin, found.artifacts, {**found.transition, "reused": True}, "reused")

    async def _run_task(self, pending: Pending) -> Done:
        ctx = self.ctx
        key = (pending.step, stack_key(pending.stack))
        turn = self._turns[key] = self._turns.get(key, -1) + 1
        origins = ctx.clone_from.get(key, [])
        if turn < len(origins):  # resume decided which steps (and turns of a loop) are cloned
            return self._clone(pending, origins[turn])
        reused = self._reuse(pending)
        if reused is not None:
            return reused
        task_id = ctx.meta.new_task(
            ctx.flow.name, ctx.run_number, pending.step, [f.to_json() for f in pending.stack],
            [p.task_id for p in pending.parents],
        )
        req = self.request(pending, task_id)
        started = time.time()

        def emit(kind: str, payload: dict[str, Any]) -> None:
            self.emit(kind, {**payload, "pathspec": req.pathspec, "step": pending.step})

        def on_retry(attempt: int) -> None:
            ctx.meta.set_attempt(ctx.flow.name, ctx.run_number, task_id, attempt)

        emit("task_started", {"task_id": task_id})
        try:
            outcome = await execute_task(self.pool, req, emit, on_retry)
        except asyncio.CancelledError:
            record_stopped(ctx.meta, ctx.flow.name, ctx.run_number, task_id)
            emit("task_finished", {"status": "failed", "duration": time.time() - started, "stopped": True})
            raise
        status = record_outcome(ctx.meta, ctx.flow.name, ctx.run_number, task_id, outcome,
                                ctx.graph[pending.step].type == "join")
        if ctx.fingerprints is not None:
            ctx.fingerprints.record(ctx.run_number, task_id, pending.step, pending.stack, req.inputs or {},
                                    req.join_inputs, outcome)
        error = outcome.error.to_dict() if outcome.error else None
        emit("task_finished", {"status": status, "duration": time.time() - started, "error": error,
                               "created": outcome.created, "changed": outcome.changed})
        return Done(pending.step, task_id, req.pathspec, outcome.artifacts, pending.stack, outcome)
