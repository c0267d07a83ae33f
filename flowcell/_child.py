"""The task driver that runs inside a child kernel.

The parent sends one ``run_task(spec)`` call per task.  Each task gets a fresh
module namespace (its ``%%flow`` code, then the step as a function), so nothing a
previous task defined is visible.  Outputs are written to the blob store here; the
result (artifact references, transition, error) goes back to the parent as one
display message of a private MIME type, which the parent consumes and never shows.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
import time
import traceback
from types import TracebackType
from typing import Any

from . import _readset
from . import client
from ._alarm import time_limit
from ._card_render import RenderedTask, render_cards
from ._exception_value import TimeoutException
from ._flowspec import ArtifactView, FlowInstance, Inputs, add_class_constants
from ._hygiene import KernelCheck, end_descendants
from ._metaflow_shim import install as install_metaflow_shim
from ._metaflow_shim import parallel_info, task_namespace
from .card_collector import CardCollector
from .current import current
from .errors import FlowcellError
from .parameters import Config
from .project import project_fields
from .protocol import CARD_MIME, RESULT_MIME, CardSpec, CaughtException, CellCode, TaskError, TaskResult, TaskSpec
from .store.blobs import BlobStore
from .store.serialize import ArtifactRef, check_artifacts, dump_artifact, load_artifact
from .user_config import bind as bind_configs
from .user_config import resolve as resolve_config

# CaughtException is re-exported: artifacts pickled before it moved name flowcell._child.
__all__ = ["CaughtException", "run_task"]
_stores: dict[str, BlobStore] = {}


def _store(root: str) -> BlobStore:
    store = _stores.get(root)
    if store is None:
        store = _stores[root] = BlobStore(root)
    return store


def _register_source(filename: str, text: str) -> None:
    """Let tracebacks show the cell's lines under the cell's own numbering."""
    lines = [line + "\n" for line in text.splitlines()]
    linecache.cache[filename] = (len(text), None, lines, filename)


def _compile_cell(cell: CellCode) -> Any:
    if not cell.real_file:  # a real file's lines are read from disk by the traceback
        _register_source(cell.filename, cell.header + "\n" + cell.source if cell.first_line > 1 else cell.source)
    tree = ast.parse(cell.source, cell.filename)
    ast.increment_lineno(tree, cell.first_line - 1)
    return tree


def _step_function(spec: TaskSpec, namespace: dict[str, Any]) -> Any:
    cell = spec.step_cell
    filename = cell.filename
    tree = _compile_cell(cell)
    args = [ast.arg(arg="self")]
    if cell.join_arg:
        args.append(ast.arg(arg=cell.join_arg))
    extra: dict[str, Any] = {"type_params": []} if sys.version_info >= (3, 12) else {}
    fn = ast.FunctionDef(
        name=spec.step,
        args=ast.arguments(posonlyargs=[], args=args, kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=tree.body or [ast.Pass()],
        decorator_list=[],
        returns=None,
        **extra,
    )
    body = fn.body
    fn.lineno, fn.col_offset = max(1, cell.first_line - 1), 0
    fn.end_lineno = getattr(body[-1], "end_lineno", None) or cell.first_line
    fn.end_col_offset = 0
    module = ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))
    local: dict[str, Any] = {}
    exec(compile(module, filename, "exec"), namespace, local)
    return local[spec.step]


def _user_frames(tb: TracebackType | None, cell_files: set[str]) -> TracebackType | None:
    """The traceback cut down to the frames of the user's cells."""
    frames = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in cell_files:
            frames.append(tb)
        tb = tb.tb_next
    kept: TracebackType | None = None
    for frame in reversed(frames):
        kept = TracebackType(kept, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    return kept


def _format_error(exc: BaseException, cell_files: set[str]) -> TaskError:
    """Traceback from the first frame in user code, coloured like IPython's.

    flowcell's own errors say everything in their sentence: their traceback keeps
    only the user's lines that led to them (none when flowcell raised it on its
    own), without the exceptions they were raised from.
    """
    tb: TracebackType | None = exc.__traceback__
    if isinstance(exc, FlowcellError):
        tb = _user_frames(tb, cell_files)
        exc.__cause__, exc.__suppress_context__ = None, True
    else:
        while tb is not None and tb.tb_frame.f_code.co_filename not in cell_files:
            tb = tb.tb_next
        if tb is None:
            tb = exc.__traceback__
    lines: list[str]
    if tb is None:
        lines = [f"{type(exc).__name__}: {exc}"]
    else:
        try:
            ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821
            lines = ip.InteractiveTB.structured_traceback(type(exc), exc, tb)
        except Exception:
            lines = traceback.format_exception(type(exc), exc, tb)
    line = None
    walk = tb
    while walk is not None:
        if walk.tb_frame.f_code.co_filename in cell_files:
            line = walk.tb_lineno
        walk = walk.tb_next
    plain = "".join(traceback.format_exception(type(exc), exc, tb))
    cls = type(exc)
    return TaskError(cls.__name__, str(exc), list(lines), plain, line,
                     qualname=f"{cls.__module__}.{cls.__qualname__}")  # Metaflow's .type: builtins.KeyError


def _str_or_none(value: Any) -> str | None:
    """Metaflow gives ids in ``current`` as strings."""
    return None if value is None else str(value)


def _load(store: BlobStore) -> Any:
    def loader(ref: dict[str, Any]) -> Any:
        # A reference may live in another store (a spin reads a run's artifacts).
        source = _store(ref["root"]) if ref.get("root") else store
        return load_artifact(source, ArtifactRef.from_json(ref))

    return loader


def _run(spec: TaskSpec) -> TaskResult:
    store = _store(spec.root)
    loader = _load(store)
    install_metaflow_shim()  # `import metaflow` anywhere in the task is flowcell (issue 13)
    namespace = task_namespace(spec.file)
    cell_files = {c.filename for c in spec.code_cells} | {spec.step_cell.filename}
    env_before = dict(os.environ)
    os.environ.update(spec.environment)
    if spec.cwd:
        os.chdir(spec.cwd)
    join_inputs = spec.join_inputs
    instance = FlowInstance(spec.flow, set(spec.steps), spec.inputs, loader, spec.foreach_stack,
                            step=spec.step, script_name=os.path.basename(spec.file or "") or None)
    cards = _card_collector(spec, instance, namespace)
    current._set(
        flow_name=spec.flow, run_id=_str_or_none(spec.run_id), origin_run_id=_str_or_none(spec.origin_run_id),
        step_name=spec.step, task_id=_str_or_none(spec.task_id), retry_count=spec.retry_count,
        namespace=spec.namespace, username=spec.username,
        parameter_names=spec.parameter_names, tags=set(spec.tags),  # a set, as Metaflow gives it
        is_running_flow=spec.run_id is not None, card=cards, parallel=parallel_info(spec.foreach_stack),
    )
    # Client calls inside the step read the run's store, in the run's namespace.
    client.use_store(spec.client_root, spec.namespace)
    started = time.time()
    error: TaskError | None = None
    modules_before = _readset.modules_snapshot()
    views: list[ArtifactView] | None = None
    try:
        for cell in spec.code_cells:
            exec(compile(_compile_cell(cell), cell.filename, "exec"), namespace)
        _bind_configs(namespace, instance)
        # @project's names depend on what the module code set (METAFLOW_BRANCH, ...)
        current._values.update(project_fields(spec.flow_decorators, spec.flow, spec.username,
                                              lambda expr: resolve_config(eval(expr, namespace))))
        instance.__dict__["_fc_class"] = namespace.get(spec.flow)  # class constants and helper methods
        instance.__dict__["_fc_params"] = set(spec.parameter_names)  # read-only on self, as in Metaflow
        instance.__dict__["_fc_file"] = spec.file  # self._graph reads it
        if spec.environment_expr:
            env = resolve_config(eval(spec.environment_expr, namespace))
            os.environ.update({str(k): str(v) for k, v in env.items()})
        fn = _step_function(spec, namespace)
        with time_limit(spec.timeout, lambda: _timed_out(spec)):
            if join_inputs is not None:
                views = [ArtifactView(i.step, i.pathspec, i.artifacts, loader, i.frame) for i in join_inputs]
                fn(instance, Inputs(views))
            else:
                fn(instance)
        add_class_constants(instance)
    except BaseException as exc:  # the step's own failure, reported to the parent
        error = _format_error(exc, cell_files)
        error.interrupted = isinstance(exc, KeyboardInterrupt)
    finally:
        current._clear()
        os.environ.clear()
        os.environ.update(env_before)
    result = TaskResult(status="ok", duration=time.time() - started)
    if error is not None:
        if not spec.catch_var:
            result.status, result.error = "failed", error
            return result
        instance.__dict__["_fc_values"][spec.catch_var] = CaughtException(error.ename, error.evalue, error.text,
                                                                          error.qualname)
        result.caught = error
    try:
        with store.batch():  # one sync for all of the task's blobs
            _outputs(spec, instance, store, result, caught=error is not None)
            result.cards = _render_cards(spec, instance, cards, store, result.artifacts, namespace)
        # Never let the parent commit a task whose outputs do not read back.
        check_artifacts(store, result.artifacts, _store)
        result.read_set = _readset.report(instance, views, spec.inputs, result.artifacts, modules_before)
    except Exception as exc:
        result.status, result.error = "failed", _format_error(exc, cell_files)
    return result


def _timed_out(spec: TaskSpec) -> TimeoutException:
    seconds = int(spec.timeout or 0)
    return TimeoutException(f"Step {spec.step} timed out after {seconds // 3600} hours, "
                            f"{seconds // 60 % 60} minutes, {seconds % 60} seconds")


def _bind_configs(namespace: dict[str, Any], instance: FlowInstance) -> None:
    """The module code's ``Config`` objects stand for the run's values from here on (decorator
    arguments, ``config_expr``), as in Metaflow once the flow class is built."""
    configs = {var: c for var, c in namespace.items() if isinstance(c, Config)}
    for var, config in configs.items():
        if var in instance.__dict__["_fc_refs"] or var in instance.__dict__["_fc_values"]:
            config._bind(getattr(instance, var))
    bind_configs({c.name: c.__dict__.get("_fc_config_value") for c in configs.values()})


def _card_collector(spec: TaskSpec, instance: FlowInstance, namespace: dict[str, Any]) -> CardCollector:
    from IPython.display import publish_display_data  # IPython is loaded in a kernel; kept lazy for tests

    def publish(collector: CardCollector) -> None:
        html = _render_all(spec, instance, collector, None, namespace)
        publish_display_data({CARD_MIME: {"cards": html}})

    return CardCollector([{"type": c.type, "id": c.id, "customize": c.customize} for c in spec.cards], publish)


def _render_all(spec: TaskSpec, instance: FlowInstance, collector: CardCollector,
                refs: dict[str, dict[str, Any]] | None, namespace: dict[str, Any]) -> list[dict[str, Any]]:
    """The step's cards as HTML (``refs`` is None for a live refresh while the step runs)."""
    task = RenderedTask(spec.pathspec or spec.step, refs, instance.__dict__["_fc_values"], _load(_store(spec.root)))

    def options(card: CardSpec) -> dict[str, Any] | None:
        # an expression (options=dict(...), a module constant) is evaluated after the module code ran
        return resolve_config(eval(card.options_expr, namespace)) if card.options_expr else card.options

    return render_cards(spec.cards, collector, task, options)


def _render_cards(spec: TaskSpec, instance: FlowInstance, collector: CardCollector, store: BlobStore,
                  refs: dict[str, dict[str, Any]], namespace: dict[str, Any]) -> list[dict[str, Any]]:
    """Render each @card of the step to HTML and store it; return the references."""
    return [{"type": c["type"], "id": c["id"], "address": store.put(c["html"].encode())}
            for c in _render_all(spec, instance, collector, refs, namespace)]


def _outputs(spec: TaskSpec, instance: FlowInstance, store: BlobStore, out: TaskResult, caught: bool) -> None:
    """Persist what the step set or touched; pass the rest on by reference (fills ``out``)."""
    d = instance.__dict__
    refs: dict[str, dict[str, Any]] = d["_fc_refs"]
    values: dict[str, Any] = d["_fc_values"]
    values.pop("input", None)
    outputs: dict[str, dict[str, Any]] = {}
    created, changed = [], []
    for name, ref in refs.items():
        if name not in d["_fc_deleted"] and name not in values:
            outputs[name] = ref
    for name, value in values.items():
        ref = dump_artifact(store, name, value, step=spec.step, task=spec.pathspec).to_json()
        outputs[name] = ref
        old = refs.get(name)
        if old is None:
            created.append(name)
        elif old.get("address") != ref.get("address"):
            changed.append(name)
    node = spec.node
    transition = d["_fc_next"]
    num_splits, switch_value = _check_transition(spec, instance, transition, caught)
    out.artifacts, out.created, out.changed = outputs, created, changed
    out.deleted = sorted(d["_fc_deleted"] & set(refs))
    if node.type != "end":
        out.num_splits, out.switch_value = num_splits, switch_value
    if node.type == "foreach" and num_splits:
        out.split_items = _readset.item_digests(getattr(instance, node.foreach_param or ""))


def _check_transition(spec: TaskSpec, instance: FlowInstance, transition: dict[str, Any] | None,
                      caught: bool) -> tuple[int | None, Any]:
    """The step's ``self.next`` against its cell; the foreach's split count or the switch's value."""
    node = spec.node
    if node.type == "end":
        return None, None
    if transition is None:
        worker = parallel_info(spec.foreach_stack)
        # A @parallel worker (node > 0) may end without self.next(): Metaflow follows the control task's.
        if not caught and not (worker is not None and worker.node_index != 0):
            raise RuntimeError(
                f"Step {spec.step} finished without calling self.next(); end it with self.next(self.<step>)."
            )
        transition = {"steps": node.out_funcs, "foreach": node.foreach_param,
                      "condition": node.condition, "cases": node.switch_cases}
    if transition["steps"] != node.out_funcs and not transition["cases"]:
        raise RuntimeError(
            f"Step {spec.step} called self.next({', '.join('self.' + s for s in transition['steps'])}) "
            f"but its cell says {', '.join('self.' + s for s in node.out_funcs)}; the transition must be the "
            "same every time the step runs."
        )
    if node.type == "foreach":
        param = node.foreach_param or ""
        items = getattr(instance, param)
        try:
            count = len(items)
        except TypeError:
            raise TypeError(
                f"foreach={param!r} in step {spec.step} must be a list or other sized "
                f"collection, not {type(items).__name__}."
            ) from None
        if count == 0:
            raise ValueError(
                f"Foreach over {param!r} in step {spec.step} produced zero splits; "
                "the list must have at least one item."
            )
        return count, None
    if node.type == "split-switch":
        value = getattr(instance, node.condition or "")
        if value not in node.switch_cases:
            raise ValueError(
                f"Condition {node.condition!r} of step {spec.step} is {value!r}, which matches no case; "
                f"expected one of {sorted(node.switch_cases)}."
            )
        return None, value
    return None, None


def run_task(spec_json: str) -> None:
    """Entry point called by the parent; publishes the result as display data."""
    from IPython.display import publish_display_data  # IPython is loaded in a kernel; kept lazy for tests

    check = KernelCheck()
    try:
        result = _run(TaskSpec.from_json(spec_json))
    except BaseException as exc:  # a failure of the driver itself
        result = TaskResult(status="failed", error=_format_error(exc, set()))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (ValueError, OSError):  # closed by the step: reported by the check below
            pass
    # The task ends with its processes; then whatever it damaged retires this kernel.
    result.ended_processes = end_descendants()
    try:
        result.damage = check.damage()
    except Exception as exc:  # a kernel too broken to inspect is as good as damaged
        result.damage = [f"left the kernel in a state that could not be checked ({type(exc).__name__}: {exc})"]
    publish_display_data({RESULT_MIME: result.to_dict()})
