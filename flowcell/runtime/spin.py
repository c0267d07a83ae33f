"""Spin: run one step against the inputs of a past task (or of an earlier spin).

A spin records no run in the main store.  Its outputs go to a spin store: the
persistent ``.flowcell_spin`` beside the notebook with ``persist=True``, otherwise a
scratch store that lives as long as the process (so a notebook can chain spins of
consecutive steps without a full run).  Finding the inputs is
:mod:`flowcell.runtime.spin_inputs`' job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config
from ..client import Task
from ..errors import FlowcellError, NotFoundError
from ..graph import build_graph
from ..lint import prepare
from ..model import FlowSource
from ..store.blobs import BlobStore
from ..store.metadata import MetadataStore
from ..store.serialize import dump_artifact
from .engine import Observer, Runtime
from .launch import SPIN_PREFIX, OwnedDir
from .scheduler import node_spec
from .spin_inputs import InputFinder, SpinInputs, SpunStep, inputs_from_metaflow
from .task import TaskOutcome, TaskRequest, execute_task


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
    #: The scratch store the outputs live in (held so it outlives the spinner while this result is used).
    scratch: OwnedDir | None = field(default=None, repr=False, compare=False)

    @property
    def successful(self) -> bool:
        return self.status == "completed"

    @property
    def task(self) -> Task:
        """The spun task, readable with the Client (``spin.task["model"].data``)."""
        if self.pathspec is None:
            raise NotFoundError(f"The spin of {self.step} recorded no task.")
        return Task(self.pathspec, _root=Path(self.root))

    @property
    def exception(self) -> str | None:
        err = self.outcome.error if self.outcome else None
        return None if err is None else str(err)

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
        err = o.error if o else None
        return {
            "status": self.status, "step": self.step, "pathspec": self.pathspec, "inputs_from": self.inputs_from,
            "created": o.created if o else [], "changed": o.changed if o else [],
            "deleted": o.deleted if o else [],
            "error": None if err is None else {"type": err.ename, "message": err.evalue, "line": err.line},
            "duration": round(o.duration, 4) if o else None,
        }


def spin_root(flow: FlowSource, persist: bool, scratch: dict[str, OwnedDir]) -> Path:
    """``.flowcell_spin`` beside the notebook when persisting, else the spinner's scratch store.

    The scratch store is removed once neither the spinner nor any of its results
    holds it (``flowcell spin``: when the command ends; a notebook or ``Runner``:
    when it is dropped or the process exits).
    """
    if persist:
        return (Path.cwd() / config.SPIN_DIR).resolve()
    if "root" not in scratch:
        scratch["root"] = OwnedDir(SPIN_PREFIX)
    return scratch["root"].path


class Spinner:
    """Runs spins for one flow; keeps the session's spins so a child step can chain on them."""

    def __init__(self, runtime: Runtime, root: Path | None = None) -> None:
        self.runtime = runtime
        self.root = root
        self.session: dict[str, SpunStep] = {}
        self.finder = InputFinder(root, self.session)
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
                found = self.finder.find(flow, graph, step, pathspec)
            except NotFoundError:
                if step != "start" or pathspec:
                    raise
                found = self.finder.default_parameters(flow, blobs)
        meta = MetadataStore(root)
        try:
            inputs, join_inputs = dict(found.inputs), found.join_inputs
            for key, value in (artifacts or {}).items():
                if join_inputs is not None and "/" in key:
                    match = [j for j in join_inputs if j.pathspec.endswith(key.strip("/"))]
                    if not match or not isinstance(value, dict):
                        raise FlowcellError(f"Override key {key!r} names no input of join '{step}' (or its value is not a dict).")
                    for name, v in value.items():
                        match[0].artifacts[name] = dump_artifact(blobs, name, v, step=step).to_json()
                else:
                    inputs[key] = dump_artifact(blobs, key, value, step=step).to_json()
            user = config.username()
            run_number = meta.new_run(flow.name, user, ["spin"], config.system_tags(user), {}, source=flow.path)
            task_id = meta.new_task(flow.name, run_number, step, found.foreach_stack, [])
            pathspec_out = f"{flow.name}/{run_number}/{step}/{task_id}"
            request = TaskRequest(
                flow=flow, node=node_spec(graph, step), step=step, pathspec=pathspec_out, root=str(root),
                inputs=inputs, join_inputs=join_inputs, foreach_stack=found.foreach_stack, run_id=run_number,
                task_id=task_id, namespace=config.default_namespace(), username=user,
                parameter_names=[s.var for s in flow.parameters], cwd=os.getcwd(), skip_decorators=skip_decorators,
                client_root=str(self.finder.store_root(flow)),
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
            exception = outcome.error.record() if outcome.error else None
            meta.finish_task(flow.name, run_number, task_id, status, outcome.artifacts if outcome.ok else {},
                             outcome.stdout, outcome.stderr, exception, transition=transition or None)
            meta.finish_run(flow.name, run_number, status)
        finally:
            meta.close()
        result = SpinResult(step=step, status=status, inputs_from=found.source, root=str(root),
                            pathspec=pathspec_out, outcome=outcome, foreach_stack=found.foreach_stack,
                            scratch=None if persist else self._scratch.get("root"))
        if result.successful:
            self.session[step] = SpunStep(step, str(root), pathspec_out, found.foreach_stack, result.finished_at)
        return result
