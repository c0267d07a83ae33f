"""Where a spin's inputs come from: a past task, a run's parents, an earlier spin, or Metaflow.

Input artifacts are never copied: their references carry the root of the store
that holds their bytes, and the step reads an artifact only when it touches it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from .. import parameters as params_mod
from ..errors import FlowcellError, NamespaceMismatch, NotFoundError
from ..graph import FlowGraph
from ..model import FlowSource
from ..options import parse_pathspec
from ..protocol import Frame, JoinInput
from ..store.blobs import BlobStore
from ..store.metadata import CRASHED, MetadataStore, RunRecord, TaskRecord
from ..store.serialize import dump_artifact


@dataclass
class SpinInputs:
    """The inputs of one task of a spin, ready for a :class:`TaskRequest`."""

    source: str
    inputs: dict[str, dict[str, Any]]
    join_inputs: list[JoinInput] | None = None
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)

    @property
    def split(self) -> int | None:
        """The task's index in its innermost foreach (``None`` outside a foreach)."""
        return self.foreach_stack[-1]["index"] if self.foreach_stack else None


@dataclass
class SpinPlan:
    """The tasks one spin runs (one per foreach split, or one) and where their inputs come from."""

    source: str
    tasks: list[SpinInputs]
    note: str = ""


@dataclass
class SpunStep:
    """A successful spin of this session: all its tasks, which a later spin of a child step can use."""

    step: str
    root: str
    run_id: str
    tasks: list[str]
    finished_at: float = field(default_factory=time.time)
    #: The inputs each task ran with, by its pathspec (what re-spinning ``spin-N/STEP`` uses).
    inputs: dict[str, SpinInputs] = field(default_factory=dict)


def spin_run_id(run_number: int) -> str:
    """A spin's run id: ``spin-12``, never mistaken for a run's integer id."""
    return f"{config.SPIN_RUN_PREFIX}{run_number}"


def spin_pathspec(record: TaskRecord) -> str:
    """A spin task's pathspec, ``Flow/spin-12/step/1``."""
    return f"{record.flow}/{spin_run_id(record.run_number)}/{record.step}/{record.task_id}"


def _with_root(refs: dict[str, dict[str, Any]], root: Path) -> dict[str, dict[str, Any]]:
    return {k: ({**v, "root": v.get("root") or str(root)}) for k, v in refs.items()}


def _foreach(stack: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in stack if f.get("kind") == "foreach"]


def _key(frames: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((f["step"], f["index"]) for f in frames)


def _closes_foreach(graph: FlowGraph, step: str) -> bool:
    node = graph[step]
    return node.type == "join" and bool(node.split_parents) and graph[node.split_parents[-1]].type == "foreach"


class InputFinder:
    """Finds the inputs of a spin in the store at ``root`` and among the session's spins."""

    def __init__(self, root: Path | None, session: dict[str, SpunStep], history: dict[str, SpunStep]) -> None:
        self.root = root
        self.session = session
        #: Where to look for past runs (``--namespace``): None for the user's default, "" for every run.
        self.namespace: str | None = None
        self.history = history

    def store_root(self, flow: FlowSource) -> Path:
        return self.root or config.find_store_root(flow.path)

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

    # -- one task's inputs ---------------------------------------------------------

    def _run_parameters(self, meta: MetadataStore, graph: FlowGraph, run: RunRecord, root: Path) -> dict[str, Any]:
        """The parameter values ``run`` gave the tasks it executed (its ``_parameters`` task).

        A resume with new values records them there, while the tasks it cloned still
        carry the origin's: a task the run executed saw these instead (the scheduler
        lays them over its parents' outputs), so its spin must too.
        """
        names = {s.var for s in graph.flow.parameters}
        found = meta.tasks(run.flow, run.run_number, "_parameters") if names else []
        if not found:
            return {}
        arts = meta.artifacts(run.flow, run.run_number, found[0].task_id)
        return _with_root({k: v for k, v in arts.items() if k in names}, root)

    def _inputs(self, meta: MetadataStore, graph: FlowGraph, step: str, parents: list[TaskRecord],
                frames: list[dict[str, Any]], root: Path, source: str, label: Any = None,
                run_params: dict[str, Any] | None = None) -> SpinInputs:
        """One task's inputs from its parents; ``run_params`` (the run's parameter values) win over theirs."""
        params = set(s.var for s in graph.flow.parameters)
        run_params = run_params or {}
        name = label or (lambda t: t.pathspec)
        if graph[step].type == "join":
            join_inputs: list[JoinInput] = []
            for p in parents:
                arts = _with_root(meta.artifacts(p.flow, p.run_number, p.task_id), root)
                pframes = _foreach(p.foreach_stack)
                join_inputs.append(JoinInput(p.step, name(p), arts, pframes[-1] if pframes else None))
            base = {k: v for k, v in join_inputs[0].artifacts.items() if k in params} if join_inputs else {}
            return SpinInputs(source, {**base, **run_params}, join_inputs, frames)
        parent = parents[0]
        arts = _with_root(meta.artifacts(parent.flow, parent.run_number, parent.task_id), root)
        return SpinInputs(source, {**arts, **run_params}, None, frames)

    def inputs_from_task(self, meta: MetadataStore, graph: FlowGraph, task: TaskRecord, root: Path,
                         run_params: dict[str, Any] | None = None) -> SpinInputs:
        """The inputs ``task`` ran with: its parents' outputs, and ``run_params`` (the parameter
        values of its run) unless it was cloned, since a cloned task ran with its origin's."""
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
        return self._inputs(meta, graph, task.step, parents, _foreach(task.foreach_stack), root, task.pathspec,
                            run_params=None if task.origin else run_params)

    # -- every task of a step from a set of parent tasks -----------------------------

    def _children(self, meta: MetadataStore, graph: FlowGraph, step: str, parents: list[TaskRecord], root: Path,
                  source: str, label: Any = None, run_params: dict[str, Any] | None = None) -> list[SpinInputs]:
        """One input set per task ``step`` would run given these parent tasks (all splits)."""
        out: list[SpinInputs] = []
        if graph[step].type != "join":
            for p in parents:
                frames = _foreach(p.foreach_stack)
                if graph[p.step].type == "foreach":
                    num = int((p.transition or {}).get("num_splits", 1))
                    var = graph[p.step].foreach_param
                    out += [self._inputs(meta, graph, step, [p],
                                         frames + [Frame("foreach", p.step, i, num, var).to_json()],
                                         root, source, label, run_params) for i in range(num)]
                else:
                    out.append(self._inputs(meta, graph, step, [p], frames, root, source, label, run_params))
            return out
        # A join: group the parents by the splits that enclose the one it closes; each
        # group must be complete, or the join would silently see a subset.
        closes_foreach = _closes_foreach(graph, step)
        groups: dict[tuple[Any, ...], list[TaskRecord]] = {}
        for p in parents:
            frames = _foreach(p.foreach_stack)
            groups.setdefault(_key(frames[:-1] if closes_foreach else frames), []).append(p)
        order = {name: i for i, name in enumerate(graph[step].in_funcs)}
        for members in groups.values():
            if closes_foreach:
                expected = int(_foreach(members[0].foreach_stack)[-1]["num_splits"])
                members.sort(key=lambda t: _foreach(t.foreach_stack)[-1]["index"])
                if len({_foreach(t.foreach_stack)[-1]["index"] for t in members}) != expected:
                    raise _Incomplete(f"has {len(members)} of {expected} inputs")
                frames = _foreach(members[0].foreach_stack)[:-1]
            else:
                members.sort(key=lambda t: order.get(t.step, 0))
                if {t.step for t in members} != set(graph[step].in_funcs):
                    raise _Incomplete(f"has inputs from {', '.join(sorted({t.step for t in members}))} only")
                frames = _foreach(members[0].foreach_stack)
            out.append(self._inputs(meta, graph, step, members, frames, root, source, label, run_params))
        return out

    # -- choosing the source -------------------------------------------------------

    def plan(self, flow: FlowSource, graph: FlowGraph, step: str, pathspec: str | None,
             split: int | None = None) -> SpinPlan:
        """Every task a spin of ``step`` runs: all splits of a foreach unless ``pathspec``/``split`` names one."""
        if step not in graph:
            raise NotFoundError(f"Flow {flow.name} has no step {step!r}; its steps are {', '.join(graph.sorted_nodes())}.")
        run_id = task_id = None
        if pathspec:
            run_id, pstep, task_id = parse_pathspec(flow.name, pathspec)
            if pstep != step:
                raise NotFoundError(f"Pathspec {pathspec!r} names step {pstep!r}, not {step!r}.")
        if run_id is not None and run_id.startswith(config.SPIN_RUN_PREFIX):
            plan = self._from_spin_task(flow, graph, step, run_id, task_id)
        else:
            plan = self._from_store(flow, graph, step, run_id, task_id, pathspec)
        if split is not None:
            chosen = [t for t in plan.tasks if t.split == split]
            if not chosen:
                splits = sorted(t.split for t in plan.tasks if t.split is not None)
                raise NotFoundError(f"Step '{step}' has no split {split} here; its splits are "
                                    f"{', '.join(map(str, splits)) or 'none (it is not inside a foreach)'}.")
            plan.tasks = chosen
        return plan

    def _from_store(self, flow: FlowSource, graph: FlowGraph, step: str, run_id: str | None, task_id: str | None,
                    pathspec: str | None) -> SpinPlan:
        root = self.store_root(flow)
        meta = MetadataStore(root) if config.has_store(root) else None
        try:
            if pathspec and meta is None:
                raise NotFoundError(f"No runs recorded yet in {root}, so {pathspec!r} does not exist.")
            run = self._run(meta, flow.name, run_id) if meta is not None else None
            note = ""
            if not pathspec:
                fresh, note = self._from_session(graph, step, run)
                if fresh is not None:
                    return fresh
            if run is None or meta is None:
                raise NotFoundError(self._no_inputs_message(graph, step))
            if not pathspec:
                run, settled = self._settled_run(meta, run, step)
                note = "; ".join(n for n in (note, settled) if n)
            tasks = meta.tasks(flow.name, run.run_number, step)
            if task_id is not None:
                tasks = [t for t in tasks if str(t.task_id) == task_id]
                if not tasks:
                    raise NotFoundError(f"Task {flow.name}/{run.run_number}/{step}/{task_id} does not exist.")
            run_params = self._run_parameters(meta, graph, run, root)
            if tasks:
                found = [self.inputs_from_task(meta, graph, t, root, run_params) for t in tasks]
                return SpinPlan(found[0].source if len(found) == 1 else f"run {run.pathspec}", found, note)
            return self._from_run_parents(meta, graph, step, run, root, note, run_params)
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
                          root: Path, note: str, run_params: dict[str, Any] | None = None) -> SpinPlan:
        """The step never ran in ``run`` (new, or the run failed before it): use its parents' outputs."""
        node = graph[step]
        if step == "start":
            parents = meta.tasks(run.flow, run.run_number, "_parameters")
        elif node.type == "join":
            parents = [t for p in node.in_funcs for t in meta.tasks(run.flow, run.run_number, p)
                       if t.status == "completed"]
        else:
            parents = next(([t for t in meta.tasks(run.flow, run.run_number, p) if t.status == "completed"]
                            for p in node.in_funcs
                            if any(t.status == "completed" for t in meta.tasks(run.flow, run.run_number, p))), [])
        if not parents:
            raise NotFoundError(self._no_inputs_message(graph, step, run))
        many = len(parents) > 1 or graph[parents[0].step].type == "foreach"
        source = f"run {run.pathspec}" if many else f"outputs of {parents[0].pathspec}"
        try:
            tasks = self._children(meta, graph, step, parents, root, source, run_params=run_params)
        except _Incomplete as gap:
            raise NotFoundError(f"Run {run.pathspec} has no complete set of inputs for join '{step}' "
                                f"(it {gap}); run the flow again, or spin {' and '.join(node.in_funcs)}.") from None
        return SpinPlan(source, tasks, note)

    def _from_spin_task(self, flow: FlowSource, graph: FlowGraph, step: str, run_id: str,
                        task_id: str | None) -> SpinPlan:
        """``spin-12/STEP[/TASK]``: again with the inputs a task of an earlier spin ran with."""
        spun = self.history.get(run_id)
        if spun is None or spun.step != step:
            raise NotFoundError(f"Spin {flow.name}/{run_id} of step {step!r} is not known in this session; "
                                "spin the step by name, or give a run's pathspec.")
        chosen = [(p, i) for p, i in spun.inputs.items() if task_id is None or p.rsplit("/", 1)[-1] == task_id]
        if not chosen:
            raise NotFoundError(f"Spin {flow.name}/{run_id} has no task {task_id} of step {step!r}.")
        # A copy: overrides of this spin must not change what the earlier one recorded.
        tasks = [SpinInputs(p, dict(i.inputs), copy.deepcopy(i.join_inputs), list(i.foreach_stack))
                 for p, i in chosen]
        return SpinPlan(tasks[0].source if len(tasks) == 1 else f"spin {run_id} of {step}", tasks)

    def _from_session(self, graph: FlowGraph, step: str, run: RunRecord | None) -> tuple[SpinPlan | None, str]:
        """All tasks of the parents' spins in this session, if newer than the latest run and complete."""
        node = graph[step]
        newest_run = run.created_at if run else 0.0
        spins = [self.session[p] for p in node.in_funcs if p in self.session]
        spins = [s for s in spins if s.finished_at > newest_run]
        if not spins:
            return None, ""
        if node.type != "join":
            spins = [max(spins, key=lambda s: s.finished_at)]
        named = ", ".join(f"{s.run_id} of {s.step}" for s in spins)
        source = f"spin {named}" if len(spins) == 1 else f"spins {named}"
        parents: list[TaskRecord] = []
        root = Path(spins[0].root)
        meta = MetadataStore(root)
        try:
            for s in spins:
                number = int(s.run_id[len(config.SPIN_RUN_PREFIX):])
                parents += [t for t in meta.tasks(graph.flow.name, number, s.step) if t.status == "completed"]
            if not parents:
                return None, ""
            try:
                tasks = self._children(meta, graph, step, parents, root, source, label=spin_pathspec)
            except _Incomplete as gap:
                if run is None:
                    raise NotFoundError(f"For join '{step}' the {source} {gap}, and no run of the flow "
                                        f"is recorded to take a complete set from; spin "
                                        f"{' and '.join(node.in_funcs)} without --split, or run the flow.") from None
                return None, f"the {source} {gap}; using run {run.pathspec}"
            if len(parents) == 1 and len(tasks) == 1:
                tasks[0].source = f"spin of {spin_pathspec(parents[0])}"
                return SpinPlan(tasks[0].source, tasks), ""
            return SpinPlan(source, tasks), ""
        finally:
            meta.close()

    def default_parameters(self, flow: FlowSource, blobs: BlobStore) -> SpinInputs:
        """``start`` before any run: its inputs are the parameters' default values."""
        base_dirs = [Path.cwd()] + ([Path(flow.path).parent] if flow.path else [])
        values = params_mod.resolve(flow, {}, base_dirs)
        refs = {k: dump_artifact(blobs, k, v, step="_parameters").to_json() for k, v in values.items()}
        return SpinInputs("parameter defaults", refs)

    def find(self, flow: FlowSource, graph: FlowGraph, step: str, pathspec: str | None) -> SpinInputs:
        """The inputs of the first task a spin of ``step`` runs (for callers that take one task)."""
        return self.plan(flow, graph, step, pathspec).tasks[0]

    def _no_inputs_message(self, graph: FlowGraph, step: str, run: RunRecord | None = None) -> str:
        parents = graph[step].in_funcs
        where = f"run {run.pathspec} has no output of {' or '.join(parents) or 'its parameters'}" if run else \
            "no run of this flow is recorded yet"
        hint = f"spin {' and '.join(repr(p) for p in parents)} first, or " if parents else ""
        return f"No inputs for step '{step}': {where}; {hint}run the flow (%run_flow / flowcell run)."


class _Incomplete(Exception):
    """A join's parents from one source do not make a complete set (internal signal)."""


def inputs_from_metaflow(pathspec: str, graph: FlowGraph, step: str, blobs: BlobStore) -> SpinPlan:
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
        return SpinPlan(source, [SpinInputs(source, base, join_inputs, frames(task))])
    if not parents:
        raise NotFoundError(f"Metaflow task {task.pathspec} has no parent task to take inputs from.")
    return SpinPlan(source, [SpinInputs(source, artifacts(parents[0]), None, frames(task))])
