"""Where a spin's inputs come from: a past task, a run's parents, an earlier spin, or Metaflow.

Input artifacts are never copied: their references carry the root of the store
that holds their bytes, and the step reads an artifact only when it touches it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from ..errors import FlowcellError, NamespaceMismatch, NotFoundError
from ..graph import FlowGraph
from ..model import FlowSource
from ..options import parse_pathspec
from ..protocol import JoinInput
from ..store.blobs import BlobStore
from ..store.metadata import CRASHED, MetadataStore, RunRecord, TaskRecord
from ..store.serialize import dump_artifact


@dataclass
class SpinInputs:
    """Where a spin's inputs come from, ready for a :class:`TaskRequest`."""

    source: str
    inputs: dict[str, dict[str, Any]]
    join_inputs: list[JoinInput] | None = None
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float = 0.0


@dataclass
class SpunStep:
    """A successful spin of this session that a later spin of a child step can take inputs from."""

    step: str
    root: str
    pathspec: str
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float = field(default_factory=time.time)


def _with_root(refs: dict[str, dict[str, Any]], root: Path) -> dict[str, dict[str, Any]]:
    return {k: ({**v, "root": v.get("root") or str(root)}) for k, v in refs.items()}


def _split_task(pathspec: str) -> tuple[str, int, int]:
    flow, run, _, task = pathspec.split("/")
    return flow, int(run), int(task)


def _foreach_frame_of(parent: TaskRecord, graph: FlowGraph) -> dict[str, Any]:
    """The frame a child of foreach task ``parent`` runs in (its first split)."""
    node = graph[parent.step]
    num = (parent.transition or {}).get("num_splits", 1)
    return {"kind": "foreach", "step": parent.step, "index": 0, "num_splits": num, "var": node.foreach_param}


class InputFinder:
    """Finds the inputs of a spin in the store at ``root`` and among the session's spins."""

    def __init__(self, root: Path | None, session: dict[str, SpunStep]) -> None:
        self.root = root
        self.session = session
        #: Where to look for past runs (``--namespace``): None for the user's default, "" for every run.
        self.namespace: str | None = None

    def store_root(self, flow: FlowSource) -> Path:
        return self.root or config.find_store_root(flow.path)

    def _meta(self, root: Path) -> MetadataStore | None:
        return MetadataStore(root) if config.has_store(root) else None

    def _run(self, meta: MetadataStore, flow: str, run: str | None) -> RunRecord | None:
        ns = config.default_namespace() if self.namespace is None else self.namespace
        if run is None:
            found = meta.runs(flow, (ns,) if ns else (), limit=1)
            return found[0] if found else None
        if not run.isdigit():
            raise NotFoundError(f"Run ids are integers, not {run!r}.")
        record = meta.get_run(flow, int(run))
        if record is None:
            raise NotFoundError(f"Run {flow}/{run} does not exist.")
        if ns and ns not in record.tags and ns not in record.system_tags:
            raise NamespaceMismatch(
                f"Run {flow}/{run} is not in the current namespace {ns!r} (it belongs to user:{record.user}); "
                "set FLOWCELL_USER or switch namespaces to use it."
            )
        return record

    def inputs_from_task(self, meta: MetadataStore, graph: FlowGraph, task: TaskRecord, root: Path) -> SpinInputs:
        node = graph[task.step]
        parents = [p for i in task.parents if (p := meta.get_task(task.flow, task.run_number, i)) is not None]
        recorded_join = bool((task.transition or {}).get("join"))
        if node.type == "join" and not recorded_join:
            raise FlowcellError(
                f"Step '{task.step}' is now a join, but task {task.pathspec} ran before that change as a regular "
                "step; run the flow again, or spin its parents, to record inputs for the new shape."
            )
        if node.type != "join" and recorded_join:
            raise FlowcellError(
                f"Step '{task.step}' is no longer a join, but task {task.pathspec} ran as one; run the flow again, "
                "or spin its parent, to record inputs for the new shape."
            )
        return self._inputs_from_parents(meta, graph, task.step, parents, task.foreach_stack, root, task.pathspec)

    def _inputs_from_parents(self, meta: MetadataStore, graph: FlowGraph, step: str, parents: list[TaskRecord],
                             stack: list[dict[str, Any]], root: Path, source: str) -> SpinInputs:
        params = set(s.var for s in graph.flow.parameters)
        frames = [f for f in stack if f.get("kind") == "foreach"]
        if graph[step].type == "join":
            join_inputs: list[JoinInput] = []
            for p in parents:
                arts = _with_root(meta.artifacts(p.flow, p.run_number, p.task_id), root)
                pframes = [f for f in p.foreach_stack if f.get("kind") == "foreach"]
                join_inputs.append(JoinInput(p.step, p.pathspec, arts, pframes[-1] if pframes else None))
            base = {k: v for k, v in join_inputs[0].artifacts.items() if k in params} if join_inputs else {}
            return SpinInputs(source, base, join_inputs, frames)
        parent = parents[0]
        arts = _with_root(meta.artifacts(parent.flow, parent.run_number, parent.task_id), root)
        return SpinInputs(source, arts, None, frames)

    def find(self, flow: FlowSource, graph: FlowGraph, step: str, pathspec: str | None) -> SpinInputs:
        """Inputs for spinning ``step``: a named past task, else the freshest available."""
        if step not in graph:
            raise NotFoundError(f"Flow {flow.name} has no step {step!r}; its steps are {', '.join(graph.sorted_nodes())}.")
        root = self.store_root(flow)
        meta = self._meta(root)
        try:
            run_id, task_id = None, None
            if pathspec:
                run_id, pstep, task_id = parse_pathspec(flow.name, pathspec)
                if pstep != step:
                    raise NotFoundError(f"Pathspec {pathspec!r} names step {pstep!r}, not {step!r}.")
                if meta is None:
                    raise NotFoundError(f"No runs recorded yet in {root}, so {pathspec!r} does not exist.")
            run = self._run(meta, flow.name, run_id) if meta is not None else None
            if not pathspec:
                fresh = self._from_session(graph, step, run)
                if fresh is not None:
                    return fresh
            if run is None or meta is None:
                raise NotFoundError(self._no_inputs_message(graph, step))
            note = None
            if not pathspec:
                run, note = self._settled_run(meta, run, step)
            tasks = meta.tasks(flow.name, run.run_number, step)
            if task_id is not None:
                tasks = [t for t in tasks if str(t.task_id) == task_id]
                if not tasks:
                    raise NotFoundError(f"Task {flow.name}/{run.run_number}/{step}/{task_id} does not exist.")
            found = (self.inputs_from_task(meta, graph, tasks[0], root) if tasks
                     else self._from_run_parents(meta, graph, step, run, root))
            if note:
                found.source = f"{found.source}; {note}"
            return found
        finally:
            if meta is not None:
                meta.close()

    def _settled_run(self, meta: MetadataStore, run: RunRecord, step: str) -> tuple[RunRecord, str | None]:
        """For a bare STEP: the latest run, unless it is still being written (or its process died)
        without a finished task of ``step``; then the latest run that has one, and why."""
        finished = any(t.status == "completed" for t in meta.tasks(run.flow, run.run_number, step))
        if run.status not in ("running", CRASHED) or finished:
            return run, None
        other = meta.latest_run_with_step(run.flow, step, (config.default_namespace(),))
        if other is None:
            return run, None
        return other, (f"run {run.pathspec} is unfinished and has no finished '{step}' task yet, "
                       f"so the latest run that has one, {other.pathspec}, was used")

    def _from_run_parents(self, meta: MetadataStore, graph: FlowGraph, step: str, run: RunRecord,
                          root: Path) -> SpinInputs:
        """The step never ran in ``run`` (new, or the run failed before it): use its parents' outputs."""
        node = graph[step]
        parents: list[TaskRecord] = []
        for parent_step in node.in_funcs:
            done = [t for t in meta.tasks(run.flow, run.run_number, parent_step) if t.status == "completed"]
            parents.extend(done if node.type == "join" else done[:1])
            if parents and node.type != "join":
                break
        if step == "start":
            parents = [t for t in meta.tasks(run.flow, run.run_number, "_parameters")]
        if not parents:
            raise NotFoundError(self._no_inputs_message(graph, step, run))
        stack = parents[0].foreach_stack if node.type != "join" else []
        if node.type != "join" and graph[parents[0].step].type == "foreach":
            stack = stack + [_foreach_frame_of(parents[0], graph)]
        source = f"outputs of {', '.join(p.pathspec for p in parents[:3])}{'...' if len(parents) > 3 else ''}"
        return self._inputs_from_parents(meta, graph, step, parents, stack, root, source)

    def _from_session(self, graph: FlowGraph, step: str, run: RunRecord | None) -> SpinInputs | None:
        """A parent's spin in this session, if newer than the latest run."""
        node = graph[step]
        newest_run = run.created_at if run else 0.0
        spins = [self.session[p] for p in node.in_funcs if p in self.session]
        spins = [s for s in spins if s.finished_at > newest_run]
        if not spins:
            return None
        spins.sort(key=lambda s: s.finished_at, reverse=True)
        meta = MetadataStore(spins[0].root)
        try:
            parents = [p for s in spins if (p := meta.get_task(*_split_task(s.pathspec))) is not None]
            if node.type != "join":
                parents = parents[:1]
            else:
                order = {name: i for i, name in enumerate(node.in_funcs)}
                parents.sort(key=lambda p: order.get(p.step, 0))
            stack = list(spins[0].foreach_stack) if node.type != "join" else []
            if node.type != "join" and graph[parents[0].step].type == "foreach":
                stack.append(_foreach_frame_of(parents[0], graph))
            source = "spin of " + ", ".join(s.pathspec for s in spins[: len(parents)])
            return self._inputs_from_parents(meta, graph, step, parents, stack, Path(spins[0].root), source)
        finally:
            meta.close()

    def default_parameters(self, flow: FlowSource, blobs: BlobStore) -> SpinInputs:
        """``start`` before any run: its inputs are the parameters' default values."""
        from .. import parameters as params_mod

        base_dirs = [Path.cwd()] + ([Path(flow.path).parent] if flow.path else [])
        values = params_mod.resolve(flow, {}, base_dirs)
        refs = {k: dump_artifact(blobs, k, v, step="_parameters").to_json() for k, v in values.items()}
        return SpinInputs("parameter defaults", refs)

    def _no_inputs_message(self, graph: FlowGraph, step: str, run: RunRecord | None = None) -> str:
        parents = graph[step].in_funcs
        where = f"run {run.pathspec} has no output of {' or '.join(parents) or 'its parameters'}" if run else \
            "no run of this flow is recorded yet"
        hint = f"spin {' and '.join(repr(p) for p in parents)} first, or " if parents else ""
        return f"No inputs for step '{step}': {where}; {hint}run the flow (%run_flow / flowcell run)."


def inputs_from_metaflow(pathspec: str, graph: FlowGraph, step: str, blobs: BlobStore) -> SpinInputs:
    """Inputs of ``step`` from a Metaflow run, through Metaflow's client (any datastore it can reach).

    Artifacts are read from Metaflow and written into the spin store, since
    Metaflow's datastore is not content-addressed the same way.
    """
    try:
        import metaflow  # optional, and slow to import: only for --from-metaflow
    except ImportError:
        raise FlowcellError("--from-metaflow needs the metaflow package: pip install metaflow") from None
    parts = pathspec.strip("/").split("/")
    task: Any = None
    try:
        metaflow.namespace(None)  # type: ignore[attr-defined]
        if len(parts) == 2:
            task = metaflow.Run(pathspec)[step].task  # type: ignore[attr-defined]
        elif len(parts) == 4:
            task = metaflow.Task(pathspec)  # type: ignore[attr-defined]
            if parts[2] != step:
                raise FlowcellError(f"--from-metaflow {pathspec} is a task of step {parts[2]!r}, not {step!r}.")
        else:
            raise FlowcellError(f"--from-metaflow takes FLOW/RUN or FLOW/RUN/STEP/TASK, not {pathspec!r}.")
        parents = list(task.parent_tasks)
    except FlowcellError:
        raise
    except Exception as exc:  # Metaflow's own errors: not found, no access
        raise NotFoundError(f"Metaflow could not find {pathspec}: {type(exc).__name__}: {exc}") from None

    def artifacts(t: object) -> dict[str, dict[str, Any]]:
        return {a.id: dump_artifact(blobs, a.id, a.data, step=step).to_json()
                for a in t if not a.id.startswith("_") and a.id != "name"}  # type: ignore[attr-defined]

    def frames(t: object) -> list[dict[str, Any]]:
        stack = t["_foreach_stack"].data if "_foreach_stack" in t else []  # type: ignore[index,operator]
        return [{"kind": "foreach", "step": f.step, "var": f.var, "index": f.index, "num_splits": f.num_splits}
                for f in stack]

    source = f"Metaflow task {task.pathspec}"
    if graph[step].type == "join":
        join_inputs = [JoinInput(p.pathspec.split("/")[2], p.pathspec, artifacts(p), (frames(p) or [{}])[-1] or None)
                       for p in parents]
        params = {s.var for s in graph.flow.parameters}
        base = {k: v for k, v in join_inputs[0].artifacts.items() if k in params} if join_inputs else {}
        return SpinInputs(source, base, join_inputs, frames(task))
    if not parents:
        raise NotFoundError(f"Metaflow task {task.pathspec} has no parent task to take inputs from.")
    return SpinInputs(source, artifacts(parents[0]), None, frames(task))
