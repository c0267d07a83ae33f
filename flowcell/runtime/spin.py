"""Spin: run one step against the inputs of a past task (or of an earlier spin).

A spin records no run in the main store.  Its outputs go to a spin store: the
persistent ``.flowcell_spin`` beside the notebook with ``persist=True``, otherwise a
scratch store that lives as long as the process (so a notebook can chain spins of
consecutive steps without a full run).  Input artifacts are never copied: their
references carry the root of the store that holds their bytes, and the step reads
an artifact only when it touches it.
"""

from __future__ import annotations

import ast
import os
import runpy
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowcellError, NamespaceMismatch, NotFoundError
from ..graph import FlowGraph, build_graph
from ..model import FlowSource
from ..store.blobs import BlobStore
from ..store.metadata import MetadataStore, RunRecord, TaskRecord
from ..store.serialize import dump_artifact
from .engine import Observer, Runtime
from .runs import default_namespace, prepare, store_root, system_tags, username
from .scheduler import node_spec
from .task import TaskOutcome, TaskRequest, execute_task

SPIN_DIR = ".flowcell_spin"


@dataclass
class SpinInputs:
    """Where a spin's inputs come from, ready for a :class:`TaskRequest`."""

    source: str
    inputs: dict[str, dict[str, Any]]
    join_inputs: list[dict[str, Any]] | None = None
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float = 0.0


@dataclass
class SpinResult:
    """What a spin did: status, the task it recorded, and where its inputs came from."""

    step: str
    status: str
    inputs_from: str
    root: str
    pathspec: str | None = None
    outcome: TaskOutcome | None = None
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float = field(default_factory=time.time)

    @property
    def successful(self) -> bool:
        return self.status == "completed"

    @property
    def task(self) -> Any:
        """The spun task, readable with the Client (``spin.task["model"].data``)."""
        from ..client import Task

        if self.pathspec is None:
            raise NotFoundError(f"The spin of {self.step} recorded no task.")
        return Task(self.pathspec, _root=Path(self.root))

    @property
    def exception(self) -> str | None:
        err = self.outcome.error if self.outcome else None
        return None if not err else f"{err.get('ename')}: {err.get('evalue')}"

    @property
    def stdout(self) -> str:
        return self.outcome.stdout if self.outcome else ""

    @property
    def stderr(self) -> str:
        return self.outcome.stderr if self.outcome else ""

    def __repr__(self) -> str:
        return f"<Spin of {self.step}: {self.status}, inputs from {self.inputs_from}, task {self.pathspec}>"

    def summary(self) -> dict[str, Any]:
        o = self.outcome
        err = (o.error if o else None) or {}
        return {
            "status": self.status, "step": self.step, "pathspec": self.pathspec, "inputs_from": self.inputs_from,
            "created": o.created if o else [], "changed": o.changed if o else [],
            "deleted": o.deleted if o else [],
            "error": None if not err else {"type": err.get("ename"), "message": err.get("evalue"),
                                           "line": err.get("line")},
            "duration": round(o.duration, 4) if o else None,
        }


def spin_root(flow: FlowSource, persist: bool, scratch: dict[str, Path]) -> Path:
    """``.flowcell_spin`` beside the notebook when persisting, else a per-process scratch store."""
    if persist:
        return (Path.cwd() / SPIN_DIR).resolve()
    if "root" not in scratch:
        scratch["root"] = Path(tempfile.mkdtemp(prefix="flowcell-spin-"))
    return scratch["root"]


def _with_root(refs: dict[str, dict[str, Any]], root: Path) -> dict[str, dict[str, Any]]:
    return {k: ({**v, "root": v.get("root") or str(root)}) for k, v in refs.items()}


def parse_pathspec(flow: str, text: str) -> tuple[str | None, str | None, str | None]:
    """Metaflow's spin forms: STEP, RUN/STEP, RUN/STEP/TASK, FLOW/RUN/STEP, FLOW/RUN/STEP/TASK."""
    parts = text.strip().split("/")
    if not all(parts):
        raise NotFoundError(f"{text!r} is not a pathspec; use STEP, RUN/STEP, RUN/STEP/TASK or FLOW/RUN/STEP[/TASK].")
    run: str | None = None
    task: str | None = None
    flow_part = flow
    if len(parts) == 1:
        step = parts[0]
    elif len(parts) == 2:
        run, step = parts
    elif len(parts) == 3 and parts[0].isdigit():
        run, step, task = parts
    elif len(parts) == 3:
        flow_part, run, step = parts
    elif len(parts) == 4:
        flow_part, run, step, task = parts
    else:
        raise NotFoundError(f"{text!r} has too many parts for a pathspec.")
    if flow_part != flow:
        raise NotFoundError(f"{text!r} belongs to flow {flow_part}, not to this notebook's flow {flow}.")
    return run or None, step, task or None


class Spinner:
    """Finds inputs and runs spins for one flow; keeps the session's spins for chaining."""

    def __init__(self, runtime: Runtime, root: Path | None = None) -> None:
        self.runtime = runtime
        self.root = root
        self.session: dict[str, SpinResult] = {}
        self._scratch: dict[str, Path] = {}

    # -- inputs --------------------------------------------------------------------

    def _meta(self) -> MetadataStore | None:
        root = self.root or store_root()
        return MetadataStore(root) if (root / "metadata.sqlite").exists() else None

    def _run(self, meta: MetadataStore, flow: str, run: str | None) -> RunRecord | None:
        ns = default_namespace()
        if run is None:
            found = meta.runs(flow, (ns,), limit=1)
            return found[0] if found else None
        if not run.isdigit():
            raise NotFoundError(f"Run ids are integers, not {run!r}.")
        record = meta.get_run(flow, int(run))
        if record is None:
            raise NotFoundError(f"Run {flow}/{run} does not exist.")
        if ns not in record.tags and ns not in record.system_tags:
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
            join_inputs: list[dict[str, Any]] = []
            for p in parents:
                arts = _with_root(meta.artifacts(p.flow, p.run_number, p.task_id), root)
                pframes = [f for f in p.foreach_stack if f.get("kind") == "foreach"]
                join_inputs.append({"step": p.step, "pathspec": p.pathspec, "artifacts": arts,
                                    "frame": pframes[-1] if pframes else None})
            base = {k: v for k, v in join_inputs[0]["artifacts"].items() if k in params} if join_inputs else {}
            return SpinInputs(source, base, join_inputs, frames)
        parent = parents[0]
        arts = _with_root(meta.artifacts(parent.flow, parent.run_number, parent.task_id), root)
        return SpinInputs(source, arts, None, frames)

    def find_inputs(self, flow: FlowSource, graph: FlowGraph, step: str, pathspec: str | None) -> SpinInputs:
        """Inputs for spinning ``step``: a named past task, else the freshest available."""
        if step not in graph:
            raise NotFoundError(f"Flow {flow.name} has no step {step!r}; its steps are {', '.join(graph.sorted_nodes())}.")
        root = self.root or store_root()
        meta = self._meta()
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
            if run is None:
                raise NotFoundError(self._no_inputs_message(graph, step))
            tasks = meta.tasks(flow.name, run.run_number, step) if meta else []
            if task_id is not None:
                tasks = [t for t in tasks if str(t.task_id) == task_id]
                if not tasks:
                    raise NotFoundError(f"Task {flow.name}/{run.run_number}/{step}/{task_id} does not exist.")
            assert meta is not None  # a run was found, so the store exists
            if tasks:
                return self.inputs_from_task(meta, graph, tasks[0], root)
            return self._from_run_parents(meta, graph, step, run, root)
        finally:
            if meta is not None:
                meta.close()

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
            num = (parents[0].transition or {}).get("num_splits", 1)
            stack = stack + [{"kind": "foreach", "step": parents[0].step, "index": 0, "num_splits": num,
                              "var": graph[parents[0].step].foreach_param}]
        source = f"outputs of {', '.join(p.pathspec for p in parents[:3])}{'...' if len(parents) > 3 else ''}"
        return self._inputs_from_parents(meta, graph, step, parents, stack, root, source)

    def _from_session(self, graph: FlowGraph, step: str, run: RunRecord | None) -> SpinInputs | None:
        """A parent's spin in this session, if newer than the latest run."""
        node = graph[step]
        newest_run = run.created_at if run else 0.0
        spins = [self.session[p] for p in node.in_funcs if p in self.session and self.session[p].successful]
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
            parent_node = graph[parents[0].step]
            if node.type != "join" and parent_node.type == "foreach":
                num = (parents[0].transition or {}).get("num_splits", 1)
                stack.append({"kind": "foreach", "step": parent_node.name, "index": 0, "num_splits": num,
                              "var": parent_node.foreach_param})
            source = "spin of " + ", ".join(s.pathspec or s.step for s in spins[: len(parents)])
            return self._inputs_from_parents(meta, graph, step, parents, stack, Path(spins[0].root), source)
        finally:
            meta.close()

    def _default_parameters(self, flow: FlowSource, blobs: BlobStore) -> SpinInputs:
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

    # -- running -------------------------------------------------------------------

    def spin(
        self,
        flow: FlowSource,
        step: str,
        pathspec: str | None = None,
        artifacts: dict[str, Any] | None = None,
        persist: bool = False,
        skip_decorators: bool = False,
        observer: Observer | None = None,
        check: bool = True,
        from_metaflow: str | None = None,
    ) -> SpinResult:
        """Run ``step`` once; ``check=False`` skips whole-flow lint (a flow still being written).

        ``from_metaflow`` (``FLOW/RUN`` or ``FLOW/RUN/STEP/TASK``) takes the inputs from a
        run of the exported flow on Metaflow, read with Metaflow's own client.
        """
        graph = prepare(flow) if check else build_graph(flow)
        root = spin_root(flow, persist, self._scratch)
        blobs = BlobStore(root)
        if from_metaflow:
            found = inputs_from_metaflow(from_metaflow, graph, step, blobs)
        else:
            try:
                found = self.find_inputs(flow, graph, step, pathspec)
            except NotFoundError:
                if step != "start" or pathspec:
                    raise
                found = self._default_parameters(flow, blobs)
        meta = MetadataStore(root)
        try:
            inputs, join_inputs = dict(found.inputs), found.join_inputs
            for key, value in (artifacts or {}).items():
                if join_inputs is not None and "/" in key:
                    match = [j for j in join_inputs if j["pathspec"].endswith(key.strip("/"))]
                    if not match or not isinstance(value, dict):
                        raise FlowcellError(f"Override key {key!r} names no input of join '{step}' (or its value is not a dict).")
                    for name, v in value.items():
                        match[0]["artifacts"][name] = dump_artifact(blobs, name, v, step=step).to_json()
                else:
                    inputs[key] = dump_artifact(blobs, key, value, step=step).to_json()
            user = username()
            run_number = meta.new_run(flow.name, user, ["spin"], system_tags(user), {}, source=flow.path)
            task_id = meta.new_task(flow.name, run_number, step, found.foreach_stack, [])
            pathspec_out = f"{flow.name}/{run_number}/{step}/{task_id}"
            request = TaskRequest(
                flow=flow, node=node_spec(graph, step), step=step, pathspec=pathspec_out, root=str(root),
                inputs=inputs, join_inputs=join_inputs, foreach_stack=found.foreach_stack, run_id=run_number,
                task_id=task_id, namespace=default_namespace(), username=user,
                parameter_names=[s.var for s in flow.parameters], cwd=os.getcwd(), skip_decorators=skip_decorators,
                client_root=str(self.root or store_root()),
            )

            async def go(emit: Observer) -> TaskOutcome:
                emit("spin_started", {"step": step, "inputs_from": found.source, "pathspec": pathspec_out})
                return await execute_task(self.runtime.pool, request,
                                          lambda kind, p: emit(kind, {**p, "pathspec": pathspec_out, "step": step}))

            outcome = self.runtime.run(go, observer)
            status = "completed" if outcome.ok else "failed"
            transition = {k: v for k, v in (("num_splits", outcome.num_splits),
                                            ("switch_value", outcome.switch_value),
                                        ("cards", outcome.cards)) if v is not None and v != []}
            if graph[step].type == "join":
                transition["join"] = True
            exception = None
            if outcome.error:
                exception = {k: outcome.error.get(k) for k in ("ename", "evalue", "traceback", "text", "line")}
            meta.finish_task(flow.name, run_number, task_id, status, outcome.artifacts if outcome.ok else {},
                             outcome.stdout, outcome.stderr, exception, transition=transition or None)
            meta.finish_run(flow.name, run_number, status)
        finally:
            meta.close()
        result = SpinResult(step=step, status=status, inputs_from=found.source, root=str(root),
                            pathspec=pathspec_out, outcome=outcome, foreach_stack=found.foreach_stack)
        if result.successful:
            self.session[step] = result
        return result


def inputs_from_metaflow(pathspec: str, graph: FlowGraph, step: str, blobs: BlobStore) -> SpinInputs:
    """Inputs of ``step`` from a Metaflow run, through Metaflow's client (any datastore it can reach).

    Artifacts are read from Metaflow and written into the spin store, since
    Metaflow's datastore is not content-addressed the same way.
    """
    try:
        import metaflow
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
        join_inputs = [{"step": p.pathspec.split("/")[2], "pathspec": p.pathspec, "artifacts": artifacts(p),
                        "frame": (frames(p) or [{}])[-1] or None} for p in parents]
        params = {s.var for s in graph.flow.parameters}
        base = {k: v for k, v in join_inputs[0]["artifacts"].items() if k in params} if join_inputs else {}
        return SpinInputs(source, base, join_inputs, frames(task))
    if not parents:
        raise NotFoundError(f"Metaflow task {task.pathspec} has no parent task to take inputs from.")
    return SpinInputs(source, artifacts(parents[0]), None, frames(task))


def _split_task(pathspec: str | None) -> tuple[str, int, int]:
    flow, run, _, task = (pathspec or "").split("/")
    return flow, int(run), int(task)


def load_artifacts_module(path: str) -> dict[str, Any]:
    """``ARTIFACTS`` from a Python file, with a clear error for each way it can be wrong."""
    p = Path(path)
    if not p.is_file():
        raise FlowcellError(f"Artifacts module {path!r} does not exist.")
    try:
        namespace = runpy.run_path(str(p))
    except Exception as exc:
        raise FlowcellError(f"Artifacts module {path!r} failed to import: {type(exc).__name__}: {exc}") from exc
    value = namespace.get("ARTIFACTS")
    if not isinstance(value, dict):
        raise FlowcellError(
            f"Artifacts module {path!r} must define a dict named ARTIFACTS, e.g. ARTIFACTS = {{'k': 15}}."
        )
    return value


def parse_artifacts_expr(text: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--artifacts "{'k': 15}"``: a dict expression (evaluated in ``namespace`` if given)."""
    try:
        value = eval(text, dict(namespace or {})) if namespace is not None else ast.literal_eval(text)
    except Exception as exc:
        raise FlowcellError(f"--artifacts {text!r} could not be evaluated: {type(exc).__name__}: {exc}") from None
    if not isinstance(value, dict):
        raise FlowcellError(f"--artifacts must be a dict expression such as \"{{'k': 15}}\", not {type(value).__name__}.")
    return value
