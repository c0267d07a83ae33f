"""Spin: run one step against the inputs of a past task (or of an earlier spin).

A spin records no run in the main store.  Its outputs go to a spin store: the
persistent ``.flowcell_spin`` beside the notebook with ``persist=True``, otherwise a
scratch store that lives as long as the process (so a notebook can chain spins of
consecutive steps without a full run).  Finding the inputs is
:mod:`flowcell.runtime.spin_inputs`' job.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from ..client import Task
from ..client.context import add_spin_store
from ..errors import FlowcellError, NotFoundError
from ..graph import FlowGraph, build_graph
from ..lint import lint, prepare
from ..model import FlowSource
from ..store.blobs import BlobStore
from ..store.metadata import MetadataStore
from ..store.serialize import dump_artifact
from .engine import Observer, Runtime
from .launch import SPIN_PREFIX, OwnedDir
from .scheduler import node_spec
from .recording import record_outcome
from .spin_inputs import InputFinder, SpinInputs, SpinPlan, SpunStep, inputs_from_metaflow, spin_run_id
from .task import TaskOutcome, TaskRequest, execute_task

#: Splits of a foreach a spin runs at once (as a run's default --max-workers).
MAX_PARALLEL_SPLITS = 4


@dataclass
class SpunTask:
    """One task of a spin (a spin inside a foreach runs one per split)."""

    pathspec: str
    outcome: TaskOutcome
    split: int | None = None
    inputs: int = 1


@dataclass
class SpinResult:
    """What a spin did: status, the tasks it recorded, and where their inputs came from."""

    step: str
    status: str
    inputs_from: str
    root: str
    run_id: str = ""
    tasks: list[SpunTask] = field(default_factory=list)
    note: str = ""
    finished_at: float = field(default_factory=time.time)
    #: The scratch store the outputs live in (held so it outlives the spinner while this result is used).
    scratch: OwnedDir | None = field(default=None, repr=False, compare=False)

    @property
    def _main(self) -> SpunTask | None:
        """The task a single-task view shows: the first failed one, else the first."""
        failed = [t for t in self.tasks if not t.outcome.ok]
        shown = failed or self.tasks
        return shown[0] if shown else None

    @property
    def pathspec(self) -> str | None:
        main = self._main
        return main.pathspec if main else None

    @property
    def outcome(self) -> TaskOutcome | None:
        main = self._main
        return main.outcome if main else None

    @property
    def successful(self) -> bool:
        return self.status == "completed"

    @property
    def task(self) -> Task:
        """The spun task (the first split's, for a spin of several), readable with the Client."""
        if self.pathspec is None:
            raise NotFoundError(f"The spin of {self.step} recorded no task.")
        return Task._open(self.pathspec, self.root)

    @property
    def exception(self) -> str | None:
        err = self.outcome.error if self.outcome else None
        return None if err is None else str(err)

    @property
    def stdout(self) -> str:
        return "".join(t.outcome.stdout for t in self.tasks)

    @property
    def stderr(self) -> str:
        return "".join(t.outcome.stderr for t in self.tasks)

    def describe(self) -> str:
        """Where the inputs came from, with their number: ``3 inputs from spin spin-12 of train``."""
        first = self.tasks[0] if self.tasks else None
        if first is not None and first.inputs > 1:
            text = f"{first.inputs} inputs from {self.inputs_from}"
        elif len(self.tasks) > 1:
            text = f"{len(self.tasks)} splits, inputs from {self.inputs_from}"
        else:
            text = f"inputs from {self.inputs_from}"
        return f"{text} ({self.note})" if self.note else text

    def headline(self) -> str:
        """The one line every surface prints for a spin (magic, CLI):
        ``Spun 'train' in 25 ms with inputs from run 12: created model, score``."""
        o = self.outcome
        took = max((t.outcome.duration for t in self.tasks), default=0.0)
        took_text = f"{took * 1000:.0f} ms" if took < 1 else f"{took:.2f} s"
        if not self.successful:
            return f"Spin of {self.step!r} {self.status} after {took_text} (with {self.describe()})"
        lists = (("created", o.created), ("changed", o.changed), ("deleted", o.deleted)) if o else ()
        parts = [f"{label} {', '.join(names)}" for label, names in lists if names]
        return f"Spun {self.step!r} in {took_text} with {self.describe()}" + (
            f": {'; '.join(parts)}" if parts else "")

    def __repr__(self) -> str:
        return f"<Spin of {self.step}: {self.status}, {self.describe()}, task {self.pathspec}>"

    def summary(self) -> dict[str, Any]:
        o = self.outcome
        err = o.error if o else None
        return {
            "status": self.status, "step": self.step, "pathspec": self.pathspec, "inputs_from": self.inputs_from,
            "inputs": self.tasks[0].inputs if self.tasks else 0, "note": self.note or None,
            "tasks": [t.pathspec for t in self.tasks],
            "created": o.created if o else [], "changed": o.changed if o else [],
            "deleted": o.deleted if o else [],
            "error": None if err is None else {"type": err.ename, "message": err.evalue, "line": err.line},
            "duration": round(max(t.outcome.duration for t in self.tasks), 4) if self.tasks else None,
        }


def spin_root(flow: FlowSource, persist: bool, scratch: dict[str, OwnedDir]) -> Path:
    """``.flowcell_spin`` beside the notebook when persisting, else the spinner's scratch store.

    The scratch store is removed once neither the spinner nor any of its results
    holds it (``flowcell spin``: when the command ends; a notebook or ``Runner``:
    when it is dropped or the process exits).
    """
    if persist:
        # Beside the notebook, not the shell's directory: `inspect_spin(".")` run there finds it.
        return config.spin_dir(near=flow.path)
    if "root" not in scratch:
        scratch["root"] = OwnedDir(SPIN_PREFIX)
    return scratch["root"].path


class Spinner:
    """Runs spins for one flow; keeps the session's spins so a child step can chain on them."""

    def __init__(self, runtime: Runtime, root: Path | None = None) -> None:
        self.runtime = runtime
        self.root = root
        self.session: dict[str, SpunStep] = {}
        #: Every spin of this session by its run id (``spin-12``), failed ones too.
        self.history: dict[str, SpunStep] = {}
        self.finder = InputFinder(root, self.session, self.history)
        self._scratch: dict[str, OwnedDir] = {}

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
        split: int | None = None,
        graph: FlowGraph | None = None,
    ) -> SpinResult:
        """Run ``step`` (every split of its foreach, unless ``pathspec`` or ``split`` names one).

        ``check=False`` skips whole-flow lint (a flow still being written); ``graph`` is the
        flow's graph when the caller has it already.
        ``from_metaflow`` (``FLOW/RUN`` or ``FLOW/RUN/STEP/TASK``) takes the inputs from a
        run of the exported flow on Metaflow, read with Metaflow's own client.
        """
        if graph is None:
            graph = prepare(flow) if check else build_graph(flow)
        elif check:
            lint(graph)
        root = spin_root(flow, persist, self._scratch)
        blobs = BlobStore(root)
        add_spin_store(root)
        if from_metaflow:
            plan = inputs_from_metaflow(from_metaflow, graph, step, blobs)
        else:
            try:
                plan = self.finder.plan(flow, graph, step, pathspec, split)
            except NotFoundError:
                if step != "start" or pathspec:
                    raise
                defaults = self.finder.default_parameters(flow, blobs)
                plan = SpinPlan(defaults.source, [defaults])
        for found in plan.tasks:
            _apply_overrides(found, artifacts or {}, blobs, step)
        is_join = graph[step].type == "join"
        meta = MetadataStore(root)
        try:
            user = config.username()
            run_number = meta.new_run(flow.name, user, [], config.system_tags(user) + [config.SPIN_TAG], {},
                                      source=flow.path)
            run_id = spin_run_id(run_number)
            requests = []
            for found in plan.tasks:
                task_id = meta.new_task(flow.name, run_number, step, found.foreach_stack, [])
                requests.append((task_id, found, TaskRequest(
                    flow=flow, node=node_spec(graph, step), step=step,
                    pathspec=f"{flow.name}/{run_id}/{step}/{task_id}", root=str(root),
                    inputs=dict(found.inputs), join_inputs=found.join_inputs, foreach_stack=found.foreach_stack,
                    run_id=run_id, task_id=task_id, namespace=config.default_namespace(), username=user,
                    parameter_names=[s.var for s in flow.parameters], cwd=os.getcwd(),
                    skip_decorators=skip_decorators, client_root=str(self.finder.store_root(flow)))))
            width = min(len(requests), MAX_PARALLEL_SPLITS)
            self.runtime.resize(width)

            async def go(emit: Observer) -> list[TaskOutcome]:
                gate = asyncio.Semaphore(width)
                emit("spin_started", {"step": step, "inputs_from": plan.source, "pathspec": requests[0][2].pathspec,
                                      "tasks": len(requests)})

                async def one(req: TaskRequest) -> TaskOutcome:
                    async with gate:
                        return await execute_task(self.runtime.pool, req,
                                                  lambda kind, p: emit(kind, {**p, "pathspec": req.pathspec,
                                                                              "step": step}))

                return list(await asyncio.gather(*(one(r) for _, _, r in requests)))

            outcomes = self.runtime.run(go, observer)
            spun: list[SpunTask] = []
            for (task_id, found, req), outcome in zip(requests, outcomes):
                record_outcome(meta, flow.name, run_number, task_id, outcome, is_join)
                spun.append(SpunTask(req.pathspec, outcome, found.split, len(found.join_inputs or []) or 1))
            status = "completed" if all(o.ok for o in outcomes) else "failed"
            meta.finish_run(flow.name, run_number, status)
        finally:
            meta.close()
        result = SpinResult(step=step, status=status, inputs_from=plan.source, root=str(root), run_id=run_id,
                            tasks=spun, note=plan.note, scratch=None if persist else self._scratch.get("root"))
        record = SpunStep(step, str(root), run_id, [t.pathspec for t in spun], result.finished_at,
                          {t.pathspec: inputs for t, inputs in zip(spun, plan.tasks)})
        self.history[run_id] = record
        if result.successful:
            self.session[step] = record
        return result


def _apply_overrides(found: SpinInputs, artifacts: dict[str, Any], blobs: BlobStore, step: str) -> None:
    """``artifacts=``: a name wins over the input's artifact; for a join, ``RUN/STEP/TASK`` keys pick a parent."""
    for key, value in artifacts.items():
        if found.join_inputs is not None and "/" in key:
            match = [j for j in found.join_inputs if j.pathspec.endswith(key.strip("/"))]
            if not match or not isinstance(value, dict):
                raise FlowcellError(f"Override key {key!r} names no input of join '{step}' (or its value is not a dict).")
            for name, v in value.items():
                match[0].artifacts[name] = dump_artifact(blobs, name, v, step=step).to_json()
        else:
            found.inputs[key] = dump_artifact(blobs, key, value, step=step).to_json()
