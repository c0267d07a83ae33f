"""Run the exported flow on Metaflow, stream it like a local run, and read it back.

``%run_flow --on metaflow`` and ``flowcell run NB --on metaflow`` export the
notebook beside itself and start it with Metaflow's own ``Runner`` (so the user's
Metaflow configuration decides where tasks run; ``--with`` is passed through).
Metaflow's runtime log lines (``[RUN/STEP/TASK (pid N)] text``) are turned into the
same observer events a local run emits, so the cell shows the same live progress
and task output.  When the run ends it is *mirrored* into the flowcell store: a run
with the Metaflow run's tags, parameters, tasks, logs and artifacts, marked with the
system tags ``runtime:metaflow`` and ``metaflow_run:FLOW/ID``, so the Client,
``%flow_runs`` and ``%spin`` read it like any other run.

Metaflow is imported only inside these functions: it is optional, and importing it
costs about half a second.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import parameters as params_mod
from .config import check_tags, find_store_root, has_store, system_tags, username
from .errors import MetaflowRunError, NotFoundError, ParameterError
from .graph import FlowGraph
from .lint import prepare
from .model import FlowSource
from .pins import flow_environment, record_run_environment
from .protocol import TaskError
from .store.blobs import BlobStore
from .store.metadata import MetadataStore
from .store.serialize import dump_artifact

Observer = Callable[[str, dict[str, Any]], None]

#: System tag on a mirrored run naming the Metaflow run it mirrors.
METAFLOW_RUN_TAG = "metaflow_run:"
RUNTIME_TAG = "runtime:metaflow"

_TASK_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[(?P<run>[^/\]]+)/(?P<step>[^/\]]+)/(?P<task>[^\s\]]+)"
    r"(?: \(pid \d+\))?\] ?(?P<text>.*)$")
_SYSTEM_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (?P<text>.*)$")
_EXCEPTION = re.compile(r"^(?P<ename>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure|Failed)): ?(?P<evalue>.*)$")


@dataclass
class MetaflowOptions:
    """Top-level options of ``python flow.py ... run``, passed to Metaflow's ``Runner``."""

    decospecs: list[str] = field(default_factory=list)  # --with
    config: list[tuple[str, str]] = field(default_factory=list)  # --config NAME FILE
    config_value: list[tuple[str, str]] = field(default_factory=list)  # --config-value NAME JSON
    branch: str | None = None
    production: bool = False
    environment: str | None = None

    def runner_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (("decospecs", self.decospecs), ("config", self.config),
                           ("config_value", self.config_value), ("branch", self.branch),
                           ("environment", self.environment)):
            if value:
                out[key] = value
        if self.production:
            out["production"] = True
        return out


@dataclass
class MetaflowFailure:
    """A task that failed on Metaflow: its pathspec and error (ename, evalue, traceback)."""

    pathspec: str
    error: TaskError

    @property
    def outcome(self) -> MetaflowFailure:
        """The shape of a local run's failure (``failure.outcome.error``), so callers treat both alike."""
        return self


@dataclass
class MetaflowRunResult:
    """A finished run on Metaflow and its mirror in the flowcell store."""

    flow: str
    run_number: int
    status: str
    root: str
    metaflow_pathspec: str
    flow_file: str
    failures: list[MetaflowFailure] = field(default_factory=list)

    @property
    def pathspec(self) -> str:
        return f"{self.flow}/{self.run_number}"


def split_metaflow_options(argv: list[str]) -> tuple[str | None, MetaflowOptions, list[str]]:
    """Take ``--on``, ``--with``, ``--config NAME FILE``, ``--config-value NAME JSON``, ``--branch``,
    ``--production`` and ``--environment`` out of a run command line; return the rest unchanged.

    ``--config`` takes two values, which the ``--PARAM VALUE`` splitter cannot know,
    so these are taken out first (the same for ``%run_flow`` and ``flowcell run``).
    """
    options = MetaflowOptions()
    on: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        arity = {"--on": 1, "--with": 1, "--branch": 1, "--environment": 1, "--config": 2,
                 "--config-value": 2}.get(name)
        if arg == "--production":
            options.production = True
            i += 1
            continue
        if arity is None:
            rest.append(arg)
            i += 1
            continue
        values = [inline] if eq else []
        values += argv[i + 1: i + 1 + arity - len(values)]
        if len(values) < arity or any(v.startswith("--") for v in values):
            example = {"--config": "--config settings config.json", "--config-value": "--config-value settings '{\"k\": 1}'",
                       "--on": "--on metaflow", "--with": "--with kubernetes"}.get(name, f"{name} VALUE")
            raise MetaflowRunError(f"{name} needs {arity} value{'s' if arity > 1 else ''}, e.g. {example}.")
        i += 1 + arity - (1 if eq else 0)
        if name == "--on":
            on = values[0]
        elif name == "--with":
            options.decospecs.append(values[0])
        elif name == "--branch":
            options.branch = values[0]
        elif name == "--environment":
            options.environment = values[0]
        elif name == "--config":
            options.config.append((values[0], values[1]))
        else:
            options.config_value.append((values[0], values[1]))
    if on not in (None, "metaflow", "local"):
        raise MetaflowRunError(f"--on takes 'metaflow' (or 'local', the default), not {on!r}.")
    metaflow_only = options.runner_kwargs()
    if on != "metaflow" and metaflow_only:
        raise MetaflowRunError(
            f"--{next(iter(metaflow_only)).replace('decospecs', 'with').replace('_', '-')} applies to runs on "
            "Metaflow; add --on metaflow."
        )
    return on, options, rest


def import_metaflow() -> Any:
    try:
        import metaflow
    except ImportError:
        raise MetaflowRunError("Metaflow is not installed in this Python: pip install metaflow") from None
    return metaflow


# -- the flow file ------------------------------------------------------------------


def flow_file_for(flow: FlowSource) -> Path:
    """Where ``--on metaflow`` exports the notebook: ``NOTEBOOK.py`` beside it.

    A flow read from a Metaflow ``.py`` file runs as it is.  An existing file that is
    not an export of this flow is never overwritten.
    """
    if flow.path and flow.path.endswith(".py"):
        return Path(flow.path)
    target = Path(flow.path).with_suffix(".py") if flow.path else Path.cwd() / f"{flow.name.lower()}_flow.py"
    if target.exists() and f"class {flow.name}(FlowSpec)" not in target.read_text(errors="replace"):
        raise MetaflowRunError(
            f"{target} exists and is not an export of flow {flow.name}; move it away, or export elsewhere "
            "with %export_flow and run that file with Metaflow."
        )
    return target


def _runner_params(flow: FlowSource, given: dict[str, str],
                   options: MetaflowOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--PARAM VALUE`` as Runner keyword arguments (``Config`` values become ``--config``),
    and every parameter's value as the run record shows it."""
    # Checked (unknown names, types, missing files) before anything starts; Metaflow's Runner
    # wants typed values for typed parameters, and paths for files and configs.
    values = params_mod.resolve(flow, given, [Path.cwd()] + ([Path(flow.path).parent] if flow.path else []))
    specs = {s.name: s for s in flow.parameters}
    specs.update({s.name.replace("_", "-"): s for s in flow.parameters})
    kwargs: dict[str, Any] = {}
    for key, value in given.items():
        spec = specs.get(key) or specs.get(key.replace("_", "-"))
        if spec is None:  # resolve() has already refused unknown names
            raise ParameterError(f"Unknown parameter --{key} for flow {flow.name}.")
        if spec.kind == "Config":
            options.config.append((spec.name, str(value)))
        elif spec.kind == "Parameter" and isinstance(values.get(spec.var), (bool, int, float)):
            kwargs[spec.name.replace("-", "_")] = values[spec.var]
        else:
            kwargs[spec.name.replace("-", "_")] = value
    return kwargs, params_mod.display_values(values)


# -- streaming --------------------------------------------------------------------


class LogTranslator:
    """Metaflow's runtime output, line by line, as flowcell observer events."""

    def __init__(self, flow: str, run_id: str, emit: Observer) -> None:
        self.flow, self.run_id, self.emit = flow, run_id, emit
        self.run_pathspec = f"{flow}/{run_id}"
        self._last_exception: dict[str, dict[str, str]] = {}
        self._lines: dict[str, list[str]] = {}
        self._pending_failure: dict[str, dict[str, Any]] = {}
        self._attempts: dict[str, int] = {}

    def feed(self, stream: str, line: str) -> None:
        match = _TASK_LINE.match(line)
        if match is None:
            system = _SYSTEM_LINE.match(line)
            text = system.group("text") if system else line
            if text.startswith("Workflow failed"):
                self.flush()
            if text.strip():
                self.emit("stream", {"pathspec": self.run_pathspec, "step": None, "name": stream, "text": text + "\n"})
            return
        step, task, text = match.group("step"), match.group("task"), match.group("text")
        pathspec = f"{self.flow}/{match.group('run')}/{step}/{task}"
        base = {"pathspec": pathspec, "step": step}
        if text.startswith("Task is starting"):
            if "(retry)" in text:
                self._pending_failure.pop(pathspec, None)
                self._attempts[pathspec] = self._attempts.get(pathspec, 0) + 1
                self.emit("retry", {**base, "attempt": self._attempts[pathspec]})
            else:
                self.emit("task_started", base)
            self._lines[pathspec] = []
        elif text.startswith("Task finished successfully"):
            self.emit("task_finished", {**base, "status": "completed"})
        elif text.startswith("Task failed"):
            lines = self._lines.get(pathspec, [])
            error = dict(self._last_exception.get(pathspec) or {"ename": "TaskFailed", "evalue": text})
            error["traceback"] = _user_traceback(lines)
            self._pending_failure[pathspec] = {**base, "status": "failed", "error": error}
        else:
            self._lines.setdefault(pathspec, []).append(text)
            found = _EXCEPTION.match(text.strip())
            if found:
                self._last_exception[pathspec] = {"ename": found.group("ename"), "evalue": found.group("evalue")}
            self.emit("stream", {**base, "name": stream, "text": text + "\n"})

    def flush(self) -> list[dict[str, Any]]:
        """Report failures that were not retried; return them."""
        failed = list(self._pending_failure.values())
        for payload in failed:
            self.emit("task_finished", payload)
        self._pending_failure.clear()
        return failed


def _user_traceback(lines: list[str]) -> list[str]:
    """The traceback from the first frame outside Metaflow's own package onwards."""
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    if start is None:
        return lines[-20:]
    tail = lines[start:]
    frames = [i for i, line in enumerate(tail) if line.strip().startswith("File ") and "/metaflow/" not in line]
    return ([tail[0]] + tail[frames[0]:]) if frames else tail


def _metaflow_message(exc: BaseException) -> str:
    """Metaflow's own complaint from a failed start, on one line (not the command it ran)."""
    text = str(exc)
    if "Stderr:" in text:
        text = text.split("Stderr:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not re.match(r"Metaflow [\d.]+ executing", ln)]
    return " ".join(lines) or type(exc).__name__


def _interrupt(executing: Any) -> None:
    """Ctrl-C for Metaflow's runtime: it terminates its tasks and marks the run failed."""
    if executing.command_obj.process.returncode is None:
        os.kill(executing.command_obj.process.pid, signal.SIGINT)


def _drive(runner: Any, kwargs: dict[str, Any], events: queue.Queue[tuple[str, Any]]) -> None:
    """In a worker thread (the notebook's own loop is busy): start, stream, wait."""

    async def main() -> None:
        executing = await runner.async_run(**kwargs)
        events.put(("started", executing))

        async def pump(name: str) -> None:
            async for _, line in executing.stream_log(name):
                events.put(("line", (name, line)))

        await asyncio.gather(pump("stdout"), pump("stderr"))
        await executing.wait()
        events.put(("done", executing))

    try:
        asyncio.run(main())
    except BaseException as exc:  # handed to the waiting thread, which raises it
        events.put(("error", exc))


def run_on_metaflow(
    flow: FlowSource,
    given_params: dict[str, str] | None = None,
    *,
    tags: list[str] | None = None,
    max_workers: int | None = None,
    run_id_file: str | None = None,
    options: MetaflowOptions | None = None,
    observer: Observer | None = None,
    root: Path | None = None,
    env: dict[str, str] | None = None,
    namespace: str | None = None,
) -> MetaflowRunResult:
    """Export ``flow`` beside its notebook, run it with Metaflow's ``Runner``, mirror the run.

    Blocks until Metaflow finishes; Ctrl-C stops Metaflow's runtime (its tasks are
    terminated and the run marked failed, as with ``python flow.py run``).
    """
    from .export import export_flow

    if namespace:
        raise MetaflowRunError("--namespace sets the Client namespace of local tasks; on Metaflow, steps use "
                               "Metaflow's own namespace (set it in the step with metaflow.namespace(...)).")
    metaflow = import_metaflow()
    graph = prepare(flow)
    options = options or MetaflowOptions()
    user_tags = check_tags(list(tags or []))
    kwargs, shown = _runner_params(flow, dict(given_params or {}), options)
    target = flow_file_for(flow)
    if not (flow.path and flow.path.endswith(".py")):
        export_flow(flow, target)
    if user_tags:
        kwargs["tags"] = user_tags
    if max_workers:
        kwargs["max_workers"] = max_workers
    emit = observer or (lambda kind, payload: None)
    try:
        runner = metaflow.Runner(str(target), show_output=False, cwd=str(target.parent), env=env,
                                 **options.runner_kwargs())
    except Exception as exc:  # Metaflow reads the flow file here: its errors, in one sentence
        raise MetaflowRunError(f"Metaflow could not load {target.name}: {_metaflow_message(exc)}") from None
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    worker = threading.Thread(target=_drive, args=(runner, kwargs, events), name="flowcell-metaflow", daemon=True)
    worker.start()
    executing: Any = None
    translator: LogTranslator | None = None
    root = root or find_store_root(flow.path)
    meta = MetadataStore(root)
    run_number = 0
    interrupted = False
    try:
        while True:
            try:
                kind, value = events.get(timeout=0.2)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                # Metaflow stops its tasks and exits on SIGINT; keep reading until it has. Before it
                # has started, remember the interrupt and stop it as soon as it does.
                interrupted = True
                if executing is not None:
                    _interrupt(executing)
                continue
            if kind == "error":
                if interrupted:
                    raise KeyboardInterrupt
                raise MetaflowRunError(f"Metaflow could not run {target.name}: {_metaflow_message(value)}")
            if kind == "started":
                executing = value
                if interrupted:
                    _interrupt(executing)
                mf_run = executing.run
                run_number = _record_start(meta, flow, mf_run, user_tags, shown, target)
                if run_id_file:
                    Path(run_id_file).write_text(str(mf_run.id))
                translator = LogTranslator(flow.name, mf_run.id, emit)
                emit("run_started", {"pathspec": mf_run.pathspec, "steps": list(graph.sorted_nodes()),
                                     "origin": None, "metaflow": True})
            elif kind == "line" and translator is not None:
                translator.feed(*value)
            elif kind == "done":
                break
        assert translator is not None and executing is not None
        failures = translator.flush()
        status = "completed" if executing.status == "successful" else "failed"
        emit("stream", {"pathspec": translator.run_pathspec, "step": None, "name": "stdout",
                        "text": f"Reading {translator.run_pathspec} back into flowcell...\n"})
        mirror_tasks(meta, BlobStore(root), graph, executing.run, run_number)
        meta.finish_run(flow.name, run_number, status)
        emit("run_finished", {"pathspec": translator.run_pathspec, "status": status})
    except BaseException:
        if executing is not None and executing.command_obj.process.returncode is None:
            executing.command_obj.kill()  # never leave Metaflow running behind an error of ours
        if run_number:
            meta.finish_run(flow.name, run_number, "failed")
        raise
    finally:
        meta.close()
        runner.cleanup()
    return MetaflowRunResult(flow.name, run_number, status, str(root), executing.run.pathspec, str(target),
                             [MetaflowFailure(f["pathspec"], TaskError.from_dict(f["error"])) for f in failures])


# -- mirroring ----------------------------------------------------------------------


def _record_start(meta: MetadataStore, flow: FlowSource, mf_run: Any, tags: list[str], params: dict[str, Any],
                  target: Path) -> int:
    user = username()
    marks = [t for t in system_tags(user) if not t.startswith("runtime:")]
    marks += [RUNTIME_TAG, f"{METAFLOW_RUN_TAG}{mf_run.pathspec}"]
    # @project's marks, so the mirror can be found by project and branch like the Metaflow run.
    marks += sorted(t for t in mf_run.system_tags if t.startswith(("project:", "project_branch:")))
    run_number = meta.new_run(flow.name, user, tags, marks, dict(params), source=str(target))
    # The pins the export carried: on Metaflow's local runtime exactly what the tasks imported.
    record_run_environment(meta, flow.name, run_number, flow_environment(flow))
    return run_number


def _frames(task: Any) -> list[dict[str, Any]]:
    stack = task["_foreach_stack"].data if "_foreach_stack" in task else []
    return [{"kind": "foreach", "step": f.step, "var": f.var, "index": f.index, "num_splits": f.num_splits}
            for f in stack]


def _artifacts(blobs: BlobStore, task: Any, step: str) -> dict[str, dict[str, Any]]:
    return {a.id: dump_artifact(blobs, a.id, a.data, step=step).to_json()
            for a in task if not a.id.startswith("_") and a.id != "name"}


def _exception(task: Any) -> dict[str, Any]:
    lines = task.stderr.splitlines()
    found = next((m for m in map(_EXCEPTION.match, reversed([ln.strip() for ln in lines])) if m), None)
    return {"ename": found.group("ename") if found else "TaskFailed",
            "evalue": found.group("evalue") if found else "the task failed on Metaflow",
            "traceback": _user_traceback(lines), "text": task.stderr[-4000:], "line": None}


def mirror_tasks(meta: MetadataStore, blobs: BlobStore, graph: FlowGraph, mf_run: Any, run_number: int) -> None:
    """Copy the tasks of Metaflow run ``mf_run`` (records, logs, artifacts) into run ``run_number``."""
    flow = graph.flow.name
    ids: dict[str, int] = {}
    params = {s.var for s in graph.flow.parameters}
    steps = {s.id: s for s in mf_run}
    for name in graph.sorted_nodes():
        if name not in steps:
            continue
        for task in sorted(steps[name], key=lambda t: int(t.id) if t.id.isdigit() else t.id):
            if name == "start" and "_parameters" not in ids:
                values = {k: v for k, v in _artifacts(blobs, task, "_parameters").items() if k in params}
                pid = meta.new_task(flow, run_number, "_parameters", [], [])
                meta.finish_task(flow, run_number, pid, "completed", values)
                ids["_parameters"] = pid
            parents = [ids[p] for p in task.parent_task_pathspecs if p in ids]
            if name == "start":
                parents = [ids["_parameters"]]
            task_id = meta.new_task(flow, run_number, name, _frames(task), parents)
            ids[task.pathspec] = task_id
            ok = bool(task.successful)
            transition: dict[str, Any] = {}
            node = graph[name]
            if node.type == "foreach" and ok:
                transition["num_splits"] = task["_foreach_num_splits"].data if "_foreach_num_splits" in task else None
            if node.condition and ok and node.condition in task:
                transition["switch_value"] = task[node.condition].data
            if node.type == "join":
                transition["join"] = True
            meta.finish_task(flow, run_number, task_id, "completed" if ok else "failed",
                             _artifacts(blobs, task, name) if ok else {}, task.stdout, task.stderr,
                             None if ok else _exception(task),
                             transition={k: v for k, v in transition.items() if v is not None} or None)


# -- finding Metaflow runs ------------------------------------------------------------


def mirrored_pathspec(tags: frozenset[str] | set[str] | list[str]) -> str | None:
    """The Metaflow pathspec a flowcell run mirrors (from its system tags), or None."""
    return next((t[len(METAFLOW_RUN_TAG):] for t in tags if t.startswith(METAFLOW_RUN_TAG)), None)


def latest_metaflow_run(flow_name: str, near: str | None = None) -> str:
    """The default of ``%spin STEP --from-metaflow``: the flow's latest run on Metaflow.

    The newest run started with ``--on metaflow`` (mirrored in this store) if there is
    one, else the newest run Metaflow's own metadata knows in any namespace.
    """
    root = find_store_root(near)
    if has_store(root):
        meta = MetadataStore(root)
        try:
            for record in meta.runs(flow_name, (RUNTIME_TAG,), limit=1):
                found = mirrored_pathspec(record.system_tags)
                if found:
                    return found
        finally:
            meta.close()
    metaflow = import_metaflow()
    try:
        metaflow.namespace(None)
        latest = metaflow.Flow(flow_name).latest_run
    except Exception as exc:  # Metaflow's own errors: no such flow, no metadata reachable
        raise NotFoundError(
            f"No run of {flow_name} on Metaflow to spin from ({type(exc).__name__}: {exc}); run it with "
            "%run_flow --on metaflow, or name one with --from-metaflow FLOW/RUN."
        ) from None
    if latest is None:
        raise NotFoundError(f"Metaflow has no run of {flow_name}; run it with %run_flow --on metaflow first.")
    return str(latest.pathspec)
