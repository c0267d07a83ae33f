"""Start a recorded run: lint, resolve parameters, record, schedule, finish."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import parameters as params_mod
from ..config import check_tags, default_namespace, find_store_root, has_store, system_tags, username
from ..errors import FlowcellError, NothingToResume
from ..graph import FlowGraph
from ..lint import prepare
from ..model import FlowSource
from ..pins import flow_environment, record_run_environment
from ..project import needs_module_code, project_fields, project_tags
from ..store.blobs import BlobStore
from ..store.metadata import MetadataStore, RunRecord, TaskRecord
from ..store.serialize import dump_artifact
from .engine import Observer, Runtime
from .reuse import Fingerprints, reuse_summary
from .scheduler import Done, Pending, RunContext, Scheduler, stack_key


@dataclass
class RunResult:
    flow: str
    run_number: int
    status: str
    root: str
    failures: list[Done] = field(default_factory=list)
    #: ``(pathspec, origin pathspec)`` of each task taken from an earlier run by ``reuse``.
    reused: list[tuple[str, str]] = field(default_factory=list)
    #: How many tasks of the flow's steps the run recorded (executed, reused or cloned).
    tasks: int = 0

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_number}"

    def reuse_summary(self) -> str:
        """``"reused 18 of 20 tasks (from run 12)"``, or "" when nothing was reused."""
        return reuse_summary(self.reused, self.tasks)


def _record_parameters(meta: MetadataStore, flow: str, run_number: int,
                       refs: dict[str, dict[str, Any]]) -> Done:
    task_id = meta.new_task(flow, run_number, "_parameters", [], [])
    meta.finish_task(flow, run_number, task_id, "completed", refs)
    return Done("_parameters", task_id, f"{flow}/{run_number}/_parameters/{task_id}", refs, [])


def _execute(runtime: Runtime, ctx: RunContext, first: Done, observer: Observer | None) -> RunResult:
    """Schedule a recorded run from ``start`` and wait for it; always finish the record."""
    flow, meta, run_number = ctx.flow, ctx.meta, ctx.run_number
    result = RunResult(flow.name, run_number, "running", ctx.root)
    runtime.resize(min(ctx.max_workers, 4))

    async def go(outer: Observer) -> str:
        def emit(kind: str, payload: dict[str, Any]) -> None:
            if kind == "task_finished" and not payload.get("stopped"):
                result.tasks += 1
                if payload.get("reused"):
                    result.reused.append((payload["pathspec"], payload["reused"]))
            outer(kind, payload)

        emit("run_started", {"pathspec": f"{flow.name}/{run_number}", "steps": list(ctx.graph.sorted_nodes()),
                             "origin": ctx.origin_run_id})
        scheduler = Scheduler(ctx, runtime.pool, emit)
        status = "failed"
        try:
            status = await scheduler.run([Pending("start", [first], [])])
        finally:
            meta.finish_run(flow.name, run_number, status)
            emit("run_finished", {"pathspec": f"{flow.name}/{run_number}", "status": status,
                                  "reused": len(result.reused), "tasks": result.tasks})
        result.failures = scheduler.failed
        return status

    try:
        result.status = runtime.run(go, observer)
    finally:
        meta.close()
    return result


def start_run(
    runtime: Runtime,
    flow: FlowSource,
    given_params: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    max_workers: int = 4,
    run_id_file: str | None = None,
    observer: Observer | None = None,
    root: Path | None = None,
    namespace: str | None = None,
    reuse: bool = False,
) -> RunResult:
    """Run ``flow`` as a recorded run and wait for it (Ctrl-C stops it).

    ``namespace`` is the Client namespace of code inside the steps (default: the
    user's); it does not change how the run itself is tagged.  With ``reuse``, a
    task whose fingerprint matches a completed task of an earlier run is taken
    from it by reference instead of running (see docs/reuse.md).
    """
    graph = prepare(flow)
    values = params_mod.resolve(flow, given_params or {}, _base_dirs(flow))
    user_tags = check_tags(list(tags or []))
    check_run_id_file(run_id_file)
    root = root or find_store_root(flow.path)
    meta = MetadataStore(root)
    blobs = BlobStore(root)
    user = username()
    shown = params_mod.display_values(values)
    run_number = meta.new_run(flow.name, user, user_tags, system_tags(user) + _project_tags(flow, user), shown,
                              source=flow.path)
    with _failing_run(meta, flow.name, run_number):
        record_run_environment(meta, flow.name, run_number, flow_environment(flow, with_metaflow=False))
        write_run_id(run_id_file, run_number)
        refs = {name: dump_artifact(blobs, name, value, step="_parameters").to_json()
                for name, value in values.items()}
        first = _record_parameters(meta, flow.name, run_number, refs)
    ctx = RunContext(flow=flow, graph=graph, meta=meta, root=str(root), run_number=run_number,
                     parameter_names=list(values), namespace=namespace or default_namespace(), username=user,
                     tags=user_tags, cwd=os.getcwd(), max_workers=max_workers,
                     fingerprints=Fingerprints(meta, flow, str(root), list(values), shown, reuse))
    return _execute(runtime, ctx, first, observer)


def _project_tags(flow: FlowSource, user: str) -> list[str]:
    """``project:N`` and ``project_branch:B`` for a flow with ``@project`` (Metaflow's system tags)."""
    if needs_module_code(flow.flow_decorators, [c.source for c in flow.code_cells]):
        from .._evaluate import evaluate_project  # runs the module code in a process: only for such flows

        return project_tags(evaluate_project(flow, user))
    return project_tags(project_fields(flow.flow_decorators, flow.name, user))


def check_run_id_file(path: str | None) -> None:
    """Refuse a ``--run-id-file`` that cannot be written, before anything is recorded."""
    if not path:
        return
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FlowcellError(f"Cannot write the run id to {path}: folder {folder} does not exist; "
                            "create it or choose another path.")
    if target.is_dir():
        raise FlowcellError(f"Cannot write the run id to {path}: it is a folder; give a file name.")


def write_run_id(path: str | None, run_number: int) -> None:
    if not path:
        return
    try:
        Path(path).write_text(str(run_number))
    except OSError as exc:
        raise FlowcellError(f"Cannot write the run id to {path}: {exc.strerror or exc}.") from None


@contextmanager
def _failing_run(meta: MetadataStore, flow: str, run_number: int) -> Iterator[None]:
    """A failure while a recorded run is set up marks it failed (never left "running")."""
    try:
        yield
    except BaseException:
        meta.finish_run(flow, run_number, "failed")
        meta.close()
        raise


def _base_dirs(flow: FlowSource) -> list[Path]:
    return [Path.cwd()] + ([Path(flow.path).parent] if flow.path else [])


def descendants(graph: FlowGraph, step: str) -> set[str]:
    """``step`` and every step reachable from it."""
    seen = {step}
    stack = [step]
    while stack:
        for out in graph[stack.pop()].out_funcs:
            if out not in seen:
                seen.add(out)
                stack.append(out)
    return seen


def start_resume(
    runtime: Runtime,
    flow: FlowSource,
    step: str | None = None,
    origin_run_id: int | str | None = None,
    given_params: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    max_workers: int = 4,
    run_id_file: str | None = None,
    observer: Observer | None = None,
    root: Path | None = None,
    namespace: str | None = None,
) -> RunResult:
    """A new run that clones the origin's successful tasks before ``step`` and runs the rest.

    ``namespace`` is where the default origin (the latest run) is looked for: the
    user's by default, ``""`` for every run.

    ``step`` defaults to the origin's first failed step, the origin to the latest
    run of the flow in the current namespace.  Cloned tasks reference the origin's
    blobs (no bytes are copied).
    """
    graph = prepare(flow)
    check_run_id_file(run_id_file)
    root = root or find_store_root(flow.path)
    if not has_store(root):
        raise FlowcellError(f"Nothing to resume: flow {flow.name} has no runs yet; run it first.")
    meta = MetadataStore(root)
    try:
        origin = _origin_run(meta, flow.name, origin_run_id, namespace)
        origin_tasks = meta.tasks(flow.name, origin.run_number)
        if step is None:
            failed = [t for t in origin_tasks if t.status != "completed" and t.step in graph]
            if not failed:
                raise NothingToResume(origin.pathspec, graph.sorted_nodes()[-1])
            step = failed[0].step
        if step not in graph:
            raise FlowcellError(f"Flow {flow.name} has no step {step!r}; its steps are {', '.join(graph.sorted_nodes())}.")
        rerun = descendants(graph, step)
        clone_from = _clones(graph, origin_tasks, rerun, step)
        param_task = next((t for t in origin_tasks if t.step == "_parameters"), None)
        origin_params = meta.artifacts(flow.name, origin.run_number, param_task.task_id) if param_task else {}
        given = given_params or {}
        values = params_mod.resolve(flow, given, _base_dirs(flow)) if given else {}
        names = {s.name: s.var for s in flow.parameters}
        overrides = {names.get(k, names.get(k.replace("-", "_"), k)) for k in given}
        blobs = BlobStore(root)
        override_refs = {var: dump_artifact(blobs, var, values[var], step="_parameters").to_json()
                         for var in overrides if var in values}
        user_tags = check_tags(list(tags or []))
        user = username()
        shown = {**origin.params, **params_mod.display_values({k: values[k] for k in override_refs})}
        run_number = meta.new_run(flow.name, user, user_tags, system_tags(user) + _project_tags(flow, user), shown,
                                  origin_run_number=origin.run_number, source=flow.path)
        record_run_environment(meta, flow.name, run_number, flow_environment(flow, with_metaflow=False))
    except BaseException:
        meta.close()
        raise
    with _failing_run(meta, flow.name, run_number):
        write_run_id(run_id_file, run_number)
        first = _record_parameters(meta, flow.name, run_number, {**origin_params, **override_refs})
    ctx = RunContext(flow=flow, graph=graph, meta=meta, root=str(root), run_number=run_number,
                     parameter_names=[s.var for s in flow.parameters], namespace=default_namespace(),
                     username=user, tags=user_tags, cwd=os.getcwd(), origin_run_id=origin.run_number,
                     max_workers=max_workers, clone_from=clone_from, rerun_steps=rerun,
                     param_refs=override_refs,
                     fingerprints=Fingerprints(meta, flow, str(root), [s.var for s in flow.parameters], shown))
    return _execute(runtime, ctx, first, observer)


def _clones(graph: FlowGraph, origin_tasks: list[TaskRecord], rerun: set[str], step: str
            ) -> dict[tuple[str, tuple[Any, ...]], list[TaskRecord]]:
    """The origin's tasks a resume clones, by (step, stack key), in the order they ran.

    Every completed task of a step before ``step``; and when ``step`` is a recursive
    switch (a conditional that loops back to itself), its turns that completed before the
    first that did not, as Metaflow clones them.
    """
    clones: dict[tuple[str, tuple[Any, ...]], list[TaskRecord]] = {}
    looping = graph[step].type == "split-switch" and step in graph[step].out_funcs
    stopped: set[tuple[Any, ...]] = set()
    for t in sorted(origin_tasks, key=lambda t: t.task_id):
        if t.step not in graph:
            continue
        key = (t.step, stack_key(t.foreach_stack))
        if t.step not in rerun:
            if t.status == "completed":
                clones.setdefault(key, []).append(t)
        elif looping and t.step == step and key not in stopped:
            if t.status == "completed":
                clones.setdefault(key, []).append(t)
            else:
                stopped.add(key)
    return clones


def _origin_run(meta: MetadataStore, flow: str, origin_run_id: int | str | None,
                namespace: str | None = None) -> RunRecord:
    if origin_run_id is not None:
        text = str(origin_run_id).split("/")[-1]
        try:
            number = int(text)
        except ValueError:
            raise FlowcellError(f"--origin-run-id takes a run id such as 3, not {origin_run_id!r}.") from None
        run = meta.get_run(flow, number)
        if run is None:
            raise FlowcellError(f"Run {flow}/{number} does not exist, so it cannot be resumed.")
        return run
    ns = default_namespace() if namespace is None else namespace
    runs = meta.runs(flow, (ns,) if ns else (), limit=1)
    if not runs:
        where = f"in namespace {ns}" if ns else "at all"
        raise FlowcellError(f"Nothing to resume: flow {flow} has no runs {where}; run it first.")
    return runs[0]
