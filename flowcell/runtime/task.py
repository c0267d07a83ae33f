"""Run one task in a child kernel: spec, retries, timeout, output capture."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .._exception_value import FAILURE_HANDLED_BY_CATCH
from ..errors import KernelDiedError
from ..model import Expression, FlowSource, StepCell
from ..protocol import (CARD_MIME, RESULT_MIME, CardSpec, CaughtException, CellCode, JoinInput, NodeSpec, ReadSet,
                        TaskError, TaskResult, TaskSpec)
from ..store.blobs import BlobStore
from ..store.serialize import dump_artifact
from .kernels import ChildKernel, KernelLost, KernelPool

#: Metaflow's defaults for @retry and @timeout.
DEFAULT_RETRY_TIMES = 3
DEFAULT_MINUTES_BETWEEN_RETRIES = 2

EventSink = Callable[[str, dict[str, Any]], None]


def cell_filename(label: str, step: str | None = None) -> str:
    return f"<{label}{', step ' + step if step else ''}>"


def code_cells_spec(flow: FlowSource) -> list[CellCode]:
    header = f"%%flow {flow.name}"
    return [CellCode(source=c.source, filename=c.filename or cell_filename(c.label), first_line=c.first_line,
                     header=header, real_file=c.filename is not None)
            for c in flow.code_cells]


def step_cell_spec(cell: StepCell) -> CellCode:
    decorators = " ".join(d.source for d in cell.decorators)
    head = f"%%step {cell.name}{'(' + cell.join_arg + ')' if cell.join_arg else ''} {decorators}".rstrip()
    return CellCode(source=cell.body, filename=cell.filename or cell_filename(cell.label, cell.name),
                    first_line=cell.first_line, header=head, real_file=cell.filename is not None,
                    join_arg=cell.join_arg)


@dataclass
class TaskRequest:
    """Everything needed to run one task (of a run, or a spin)."""

    flow: FlowSource
    node: NodeSpec
    step: str
    pathspec: str
    root: str
    inputs: dict[str, dict[str, Any]] | None = None
    join_inputs: list[JoinInput] | None = None
    foreach_stack: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | str | None = None
    task_id: int | None = None
    origin_run_id: int | str | None = None
    namespace: str | None = None
    username: str | None = None
    tags: list[str] = field(default_factory=list)
    parameter_names: list[str] = field(default_factory=list)
    cwd: str | None = None
    skip_decorators: bool = False
    client_root: str | None = None

    def spec(self, retry_count: int, catch_var: str | None) -> TaskSpec:
        cell = self.flow.steps[self.step]
        env: dict[str, str] = {}
        env_expr = None
        deco = cell.decorator("environment")
        if deco is not None and not self.skip_decorators:
            given = deco.kwargs.get("vars") or {}
            unpacked = deco.kwargs.get("**") or []
            if isinstance(given, Expression) or unpacked:
                # evaluated by the task after its module code: vars=EXPR, and **MAPPING's own vars
                env_expr = "{" + ", ".join([f"**({given if isinstance(given, Expression) else repr(given)})",
                                            *(f"**(dict(**({u})).get('vars') or {{}})" for u in unpacked)]) + "}"
            else:
                env = {str(k): str(v) for k, v in given.items()}
        secrets = None if self.skip_decorators else cell.decorator("secrets")
        if secrets is not None and isinstance(secrets.kwargs.get("sources"), list):
            # Metaflow's "inline" secrets source (its local, test-only provider): values as environment
            for source in secrets.kwargs["sources"]:
                if isinstance(source, dict) and source.get("type") == "inline":
                    env.update({str(k): str(v) for k, v in source.get("options", {}).get("env_vars", {}).items()})
        return TaskSpec(
            root=self.root, flow=self.flow.name, step=self.step, pathspec=self.pathspec,
            steps=list(dict.fromkeys([*self.flow.steps, *self.node.out_funcs])),
            run_id=self.run_id, task_id=self.task_id, origin_run_id=self.origin_run_id,
            file=self.flow.path, cwd=self.cwd,
            code_cells=code_cells_spec(self.flow), step_cell=step_cell_spec(cell),
            node=self.node, inputs=dict(self.inputs or {}), join_inputs=self.join_inputs,
            foreach_stack=self.foreach_stack, retry_count=retry_count, catch_var=catch_var,
            namespace=self.namespace, username=self.username, tags=self.tags,
            parameter_names=self.parameter_names, environment=env,
            client_root=self.client_root or self.root,
            cards=[] if self.skip_decorators else [card_spec(d.kwargs) for d in cell.decorators if d.name == "card"],
            flow_decorators=list(self.flow.flow_decorators), environment_expr=env_expr,
            timeout=None if self.skip_decorators else _timeout_seconds(cell),
        )


@dataclass
class TaskOutcome(TaskResult):
    """What the parent knows after a task: the child's :class:`TaskResult`, the attempt it
    came from and what the task printed (``duration`` is measured by the parent)."""

    attempt: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def card_spec(kwargs: dict[str, Any]) -> CardSpec:
    """What the task needs of one ``@card(...)`` (an expression for ``options`` is evaluated there)."""
    options = kwargs.get("options")
    timeout = kwargs.get("timeout")
    return CardSpec(type=str(kwargs.get("type", "default")), id=kwargs.get("id"),
                    options=options if isinstance(options, dict) else None,
                    options_expr=str(options) if isinstance(options, Expression) else None,
                    timeout=float(timeout) if isinstance(timeout, (int, float)) else None,
                    save_errors=kwargs.get("save_errors", True) is not False,
                    customize=str(kwargs.get("customize")) == "True")


def _timeout_seconds(cell: StepCell) -> float | None:
    deco = cell.decorator("timeout")
    if deco is None:
        return None
    k = deco.kwargs
    total = float(k.get("seconds", 0)) + 60 * float(k.get("minutes", 0)) + 3600 * float(k.get("hours", 0))
    return total or None


def retry_policy(cell: StepCell, skip: bool = False) -> tuple[int, float]:
    deco = None if skip else cell.decorator("retry")
    if deco is None:
        return 0, 0.0
    times = int(deco.kwargs.get("times", DEFAULT_RETRY_TIMES))
    # Metaflow's local runtime retries at once; only orchestrators (Argo, Step Functions,
    # Airflow) wait minutes_between_retries, which the export keeps for them.
    return times, 0.0


async def run_in_kernel(
    kernel: ChildKernel,
    spec: TaskSpec,
    emit: EventSink,
    timeout: float | None,
    ack_timeout: float | None = None,
) -> TaskOutcome:
    """One attempt; raises KernelLost / KernelDiedError / asyncio.TimeoutError."""
    stdout: list[str] = []
    stderr: list[str] = []
    results: list[TaskResult] = []
    shown_error: list[TaskError] = []

    def on_message(msg: dict[str, Any]) -> None:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "stream":
            (stdout if content["name"] == "stdout" else stderr).append(content["text"])
            emit("stream", {"name": content["name"], "text": content["text"]})
        elif kind in ("display_data", "update_display_data", "execute_result"):
            data = content.get("data", {})
            if RESULT_MIME in data:
                results.append(TaskResult.from_dict(data[RESULT_MIME]))
                return
            if CARD_MIME in data:
                emit("card", {"cards": data[CARD_MIME]["cards"]})
                return
            emit("display", {"data": data, "metadata": content.get("metadata", {}), "msg_type": kind,
                             "transient": content.get("transient", {})})
        elif kind == "error" and not shown_error:
            shown_error.append(TaskError(content["ename"], content["evalue"], content["traceback"],
                                         "\n".join(content["traceback"])))

    code = f"import flowcell._child as _fc; _fc.run_task({spec.to_json()!r}); del _fc"
    started = time.time()
    await kernel.execute(code, on_message, timeout=timeout, ack_timeout=ack_timeout)
    if results:
        outcome = TaskOutcome(**{f.name: getattr(results[0], f.name) for f in fields(TaskResult)},
                              attempt=spec.retry_count)
    else:
        outcome = TaskOutcome(status="failed", attempt=spec.retry_count, error=shown_error[0] if shown_error else
                              TaskError("FlowcellError", "the task driver returned no result"))
    outcome.stdout, outcome.stderr = "".join(stdout), "".join(stderr)
    outcome.duration = time.time() - started
    return outcome


async def execute_task(
    pool: KernelPool,
    request: TaskRequest,
    emit: EventSink,
    on_retry: Callable[[int], None] | None = None,
) -> TaskOutcome:
    """Run a task with its ``@retry``, ``@catch`` and ``@timeout`` behaviour."""
    cell = request.flow.steps[request.step]
    times, pause = retry_policy(cell, request.skip_decorators)
    timeout = None if request.skip_decorators else _timeout_seconds(cell)
    if timeout is not None:
        # The step is stopped inside its kernel at `timeout` (TimeoutException, which @catch
        # catches); this deadline only ends a task stuck where that signal cannot reach.
        timeout += TIMEOUT_GRACE
    catch = None if request.skip_decorators else cell.decorator("catch")
    catch_var = (catch.kwargs.get("var") if catch else None)
    attempt = 0
    while True:
        last = attempt >= times
        spec = request.spec(attempt, catch_var if last else None)
        outcome = await _attempt(pool, request, spec, emit, timeout)
        outcome.attempt = attempt
        if outcome.ok or (outcome.error is not None and outcome.error.interrupted):
            return outcome
        if last:
            if catch_var and outcome.error and outcome.caught is None:
                # The kernel died or timed out: the child could not apply @catch itself.
                outcome = await _caught_in_parent(pool, request, outcome, catch_var, emit)
                if on_retry and not _parallel_worker(request.foreach_stack):
                    # record @catch's own attempt, as Metaflow does (not for a @parallel worker: its
                    # control task stands for the step)
                    on_retry(outcome.attempt)
            return outcome
        attempt += 1
        if on_retry:
            on_retry(attempt)
        emit("retry", {"attempt": attempt, "error": outcome.error.to_dict() if outcome.error else None})
        if pause:
            await asyncio.sleep(pause)


def _parallel_worker(stack: list[dict[str, Any]]) -> bool:
    """A @parallel task other than its control task (node 0)."""
    return bool(stack) and stack[-1].get("var") == "_parallel_ubf_iter" and stack[-1].get("index") != 0


#: Seconds past its @timeout after which a task that did not stop by itself has its kernel interrupted.
TIMEOUT_GRACE = 10.0

#: How many times one attempt moves to another kernel because its kernel was lost before starting it.
MAX_KERNEL_REPLACEMENTS = 2


def warn(emit: EventSink, text: str) -> None:
    """A notice about a task's kernel, shown with the task's output (stderr)."""
    emit("stream", {"name": "stderr", "text": f"flowcell: warning: {text}\n"})


async def _attempt(pool: KernelPool, request: TaskRequest, spec: TaskSpec, emit: EventSink,
                   timeout: float | None) -> TaskOutcome:
    """One attempt of a task, on a kernel that starts it.

    A kernel that dies or does not acknowledge the request before starting it is
    replaced and the attempt moves to another kernel: the task did nothing, so it is
    not counted as an attempt.  A kernel the task damaged is retired with a warning
    that names the task.
    """
    attempt = spec.retry_count
    replaced = 0
    notes: list[str] = []
    while True:
        kernel = await pool.acquire()
        healthy = True
        ack = pool.ack_timeout if replaced < MAX_KERNEL_REPLACEMENTS else None
        try:
            outcome = await run_in_kernel(kernel, spec, emit, timeout, ack)
        except KernelLost as exc:
            await pool.release(kernel, healthy=False)
            replaced += 1
            blame = f" (it last ran {kernel.last_task})" if kernel.last_task else ""
            notes.append(f"the kernel chosen for {request.pathspec} {exc}{blame}; it was replaced and "
                         f"{request.pathspec} started again on another kernel.")
            warn(emit, notes[-1])
            continue
        except KernelDiedError as exc:
            healthy = False
            tail = kernel.log_tail()
            outcome = TaskOutcome(status="failed", attempt=attempt, error=TaskError(
                "KernelDiedError", f"{exc} while running {request.pathspec}",
                [f"The child kernel running {request.pathspec} died: {exc}."]
                + ([f"Kernel log:\n{tail}"] if tail.strip() else []),
                str(exc), kernel_died=True))
        except asyncio.TimeoutError:
            healthy = False
            await kernel.interrupt()
            outcome = TaskOutcome(status="failed", attempt=attempt, error=TaskError(
                "StepTimeoutError",
                f"{request.pathspec} ran longer than its @timeout of {(timeout or TIMEOUT_GRACE) - TIMEOUT_GRACE:g} s "
                "and did not stop; its kernel was interrupted",
                [], "timeout"))
        except asyncio.CancelledError:
            await kernel.interrupt()
            await pool.release(kernel, healthy=False)
            raise
        finally:
            kernel.last_task = request.pathspec
            if kernel in pool._busy and not healthy:
                await pool.release(kernel, healthy=False)
        break
    shown = len(notes)
    if outcome.ended_processes:
        notes.append(f"{request.pathspec} left {len(outcome.ended_processes)} process(es) running; they were "
                     f"ended with the task: {'; '.join(outcome.ended_processes)}.")
    if outcome.damage:
        notes.append(f"{request.pathspec} damaged its kernel ({'; '.join(outcome.damage)}); the kernel was "
                     "retired and later tasks run in a fresh one.")
    for i, note in enumerate(notes):
        if i >= shown:
            warn(emit, note)
        outcome.stderr += f"flowcell: warning: {note}\n"
    if kernel in pool._busy:
        await pool.release(kernel, healthy=not outcome.damage)
    return outcome


async def _caught_in_parent(
    pool: KernelPool, request: TaskRequest, failed: TaskOutcome, catch_var: str, emit: EventSink
) -> TaskOutcome:
    """@catch for a task whose kernel died: record the error, pass inputs through."""
    error = failed.error or TaskError("Error", "")
    store = BlobStore(request.root)
    # As Metaflow: a task that died without raising is caught as FailureHandledByCatch.
    value = CaughtException(error.ename, error.evalue, error.text, FAILURE_HANDLED_BY_CATCH)
    artifacts = dict(request.inputs or {})
    artifacts[catch_var] = dump_artifact(store, catch_var, value, step=request.step).to_json()
    # Metaflow runs one more attempt for @catch to record the failure: attempts 0..N+1.
    return TaskOutcome(status="ok", attempt=failed.attempt + 1, artifacts=artifacts, created=[catch_var],
                       caught=error, stdout=failed.stdout, stderr=failed.stderr)
