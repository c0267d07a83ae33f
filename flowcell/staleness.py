"""Why is this step stale? Each step of the flow as it is now, against a recorded run.

For every step the answer is "up to date" (a run now would take the same path:
the same code, parameters and packages as the run's tasks saw) or "stale" with
the reasons, most specific first:

* the step is not in the run, or its task failed (``not in run 12``, ``failed in run 12``);
* its own code: ``cell changed (+2 −1 lines)``, ``module code changed (`def clean`)``,
  ``decorators changed (...)``, ``Python 3.11.7 → 3.12.1``;
* what it read: ``parameter alpha: 0.3 in run 12, default now 0.5`` (only parameters
  the step read, from the fingerprints the run recorded), ``numpy 1.26.4 → 2.1.0``;
* its inputs: ``upstream step `load` is stale``.

Status reads records only — the run's tasks and their fingerprints (one query
each), the step cells' text and the installed distributions' versions (cached) —
never an artifact's bytes and never a kernel, so it costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NotFoundError
from .fingerprint import CodeComponents, code_components, short_repr
from .graph import FlowGraph, build_graph
from .model import FlowSource, ParameterSpec, StepCell
from .pins import installed_version
from .sourcediff import describe_lines, describe_list_change, describe_module_change, line_changes
from .store.fingerprints import for_run
from .store.fingerprints import source_text as fingerprint_source
from .store.metadata import MetadataStore, RunRecord, TaskRecord

UP_TO_DATE = "up to date"
STALE = "stale"
#: Kinds of reason, most specific first: the order reasons are listed in.
KINDS = ("missing", "failed", "unrecorded", "cell", "module", "decorators", "python", "parameter", "distribution", "upstream")


@dataclass(frozen=True)
class Reason:
    """One reason a step is stale: its kind (see :data:`KINDS`), the sentence, and data for ``--json``."""

    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, **self.detail}


@dataclass
class StepStatus:
    """One step against the run: its tasks there, and why it is stale (no reasons: up to date)."""

    step: str
    reasons: list[Reason] = field(default_factory=list)
    tasks: int = 0
    #: Tasks of the step the run took from another run (resume clones, ``--reuse``).
    reused: int = 0

    @property
    def stale(self) -> bool:
        return bool(self.reasons)

    @property
    def state(self) -> str:
        return STALE if self.reasons else UP_TO_DATE

    def summary(self) -> str:
        """The state and its reasons on one line: ``stale: cell changed (+1 −1 lines); ...``."""
        return self.state if not self.reasons else f"{STALE}: " + "; ".join(r.message for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "state": self.state, "reasons": [r.to_json() for r in self.reasons],
                "tasks": self.tasks, "reused": self.reused}


@dataclass
class StatusReport:
    """Every step of a flow against one run, in graph order."""

    flow: str
    run: RunRecord
    steps: list[StepStatus]
    #: Steps the run has that the flow no longer defines.
    removed: list[str] = field(default_factory=list)
    #: Shown under a table with stale steps: how to see a cell's diff where the table is read.
    hint: str | None = None

    @property
    def run_id(self) -> str:
        return str(self.run.run_number)

    @property
    def pathspec(self) -> str:
        return self.run.pathspec

    def __getitem__(self, step: str) -> StepStatus:
        for status in self.steps:
            if status.step == step:
                return status
        raise NotFoundError(f"Flow {self.flow} has no step {step!r}; its steps are {', '.join(self.names())}.")

    def names(self) -> list[str]:
        return [s.step for s in self.steps]

    @property
    def stale(self) -> list[str]:
        return [s.step for s in self.steps if s.stale]

    def reasons(self) -> dict[str, list[str]]:
        """``{step: [sentence, ...]}`` of the stale steps (what the JupyterLab badges show)."""
        return {s.step: [r.message for r in s.reasons] for s in self.steps if s.stale}

    def headline(self) -> str:
        stale = self.stale
        if not stale:
            return f"{self.flow}: every step is up to date with run {self.run_id} ({self.run.status})."
        return (f"{self.flow} against run {self.run_id} ({self.run.status}): {len(stale)} of {len(self.steps)} "
                f"step{'' if len(self.steps) == 1 else 's'} stale.")

    def __str__(self) -> str:
        from .status_view import text_table

        return text_table(self, self.hint)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        from .status_view import html_table

        return html_table(self, self.hint)

    def to_json(self) -> dict[str, Any]:
        return {"flow": self.flow, "run": self.pathspec, "run_id": self.run_id, "run_status": self.run.status,
                "stale": self.stale, "steps": [s.to_json() for s in self.steps], "removed": self.removed}


# -- finding the run --------------------------------------------------------------


def _no_run(flow: FlowSource) -> NotFoundError:
    return NotFoundError(f"Flow {flow.name} has no run in the current namespace yet; run it first, "
                         "then status compares the notebook with that run.")


def find_run(flow: FlowSource, run: str | int | None, root: Path) -> RunRecord:
    """The run to compare with: ``run`` (``12`` or ``Flow/12``), else the latest of the namespace."""
    from .client import Flow, Run  # the Client's namespace rules pick the run

    if run is None:
        try:
            latest = Flow(flow.name, _root=root).latest_run
        except NotFoundError:  # no run of this flow at all
            latest = None
        if latest is None:
            raise _no_run(flow)
        return latest._record
    text = str(run).strip()
    name, slash, number = text.rpartition("/")
    if slash and name != flow.name:
        raise NotFoundError(f"Run {text!r} belongs to flow {name}, not to this notebook's flow {flow.name}.")
    if not number.isdigit():
        raise NotFoundError(f"{text!r} is not a run id; give a run number such as 12 (or {flow.name}/12).")
    try:
        return Run(f"{flow.name}/{number}", _root=root)._record
    except NotFoundError:
        raise NotFoundError(f"Run {flow.name}/{number} does not exist; without a run id, status compares "
                            "with the latest run.") from None


# -- comparing --------------------------------------------------------------------


def _address(value: Any) -> str:
    """The content address a value gets as an artifact (``serialize.dump_artifact`` pickles it so)."""
    import cloudpickle  # loaded already wherever a run was started or a task read

    from .store.blobs import digest

    return digest(cloudpickle.dumps(value, protocol=5))


def _included(spec: ParameterSpec, flow: FlowSource) -> str | bytes | None:
    """An ``IncludeFile``'s default file content now, found as a run finds it (None: not there)."""
    path = Path(str(spec.default)).expanduser()
    folders = [Path.cwd()] + ([Path(flow.path).parent] if flow.path else [])
    for candidate in [path] if path.is_absolute() else [d / path for d in folders]:
        if candidate.is_file():
            if spec.kwargs.get("is_text", True):
                return candidate.read_text(encoding=spec.kwargs.get("encoding") or "utf-8")
            return candidate.read_bytes()
    return None


def _given_values(flow: FlowSource, given: Mapping[str, Any]) -> dict[str, Any]:
    """``--NAME VALUE`` pairs as the values a run given them would see, by attribute name."""
    from .errors import ParameterError
    from .parameters import convert, display_values

    specs = {s.name: s for s in flow.parameters} | {s.name.replace("_", "-"): s for s in flow.parameters}
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = specs.get(name) or specs.get(name.replace("_", "-"))
        if spec is None:
            known = ", ".join(f"--{s.name}" for s in flow.parameters) or "none"
            raise ParameterError(f"Unknown parameter --{name} for flow {flow.name}; its parameters are: {known}.")
        if spec.kind != "Parameter":
            raise ParameterError(f"--{name}: status compares the values of plain parameters only; "
                                 f"{spec.kind} {spec.name!r} is compared by its default file.")
        out[spec.var] = display_values({"v": convert(spec, value)})["v"]  # as the run recorded its value
    return out


def _short(value: Any) -> str:
    return short_repr(value, 40)


class _Compare:
    """The state shared while one flow is compared with one run."""

    def __init__(self, flow: FlowSource, run: RunRecord, meta: MetadataStore,
                 given: Mapping[str, Any] | None = None) -> None:
        self.flow, self.run, self.meta = flow, run, meta
        self.label = f"run {run.run_number}"
        self.specs = {p.var: p for p in flow.parameters} | {p.name: p for p in flow.parameters}
        self.given = _given_values(flow, given or {})

    def own_reasons(self, step: str, cell: StepCell, tasks: list[TaskRecord],
                    records: Sequence[Mapping[str, Any]]) -> list[Reason]:
        reasons: list[Reason] = []
        if not tasks:
            return [Reason("missing", f"not in {self.label}")]
        bad = sorted({t.status for t in tasks if t.status != "completed"})
        for status in bad:
            reasons.append(Reason("failed", f"{status} in {self.label}", {"status": status}))
        if not records:
            if not bad:
                reasons.append(Reason("unrecorded", f"{self.label} recorded no fingerprint of it (an older flowcell); "
                                                    "run the flow again to compare with"))
            return reasons
        reasons += self.code_reasons(cell, records[0], code_components(self.flow, step))
        reasons += self.parameter_reasons(records)
        reasons += self.distribution_reasons(records)
        return reasons

    def code_reasons(self, cell: StepCell, then: Mapping[str, Any], now: CodeComponents) -> list[Reason]:
        out: list[Reason] = []
        if then.get("step_norm") != now.step_norm:
            old = self.source_text(then.get("step_source"))
            if old is None:
                out.append(Reason("cell", "cell changed"))
            else:
                added, removed = line_changes(old, cell.body)
                out.append(Reason("cell", f"cell changed ({describe_lines(added, removed)})",
                                  {"added": added, "removed": removed}))
        module = describe_module_change(then.get("module") or {}, now.module)
        if module:
            out.append(Reason("module", module))
        decorators = describe_list_change("decorators", then.get("decorators") or [], now.decorators)
        if decorators:
            out.append(Reason("decorators", decorators))
        if then.get("join", now.join) != now.join:
            out.append(Reason("decorators", f"step line changed (join argument {then.get('join')} \u2192 {now.join})"))
        if then.get("python") and then.get("python") != now.python:
            out.append(Reason("python", f"Python {then['python']} \u2192 {now.python}"))
        return out

    def source_text(self, address: str | None) -> str | None:
        """The raw text a run recorded; None when it is not there."""
        if not address:
            return None
        from .errors import StoreError

        text = fingerprint_source(self.meta, address)  # where reuse keeps it (no fsync per code change)
        if text is not None:
            return text
        try:  # stores that kept the text as a blob
            return self.meta.blobs.get(address).decode("utf-8", errors="replace")
        except StoreError:
            return None

    def parameter_reasons(self, records: Sequence[Mapping[str, Any]]) -> list[Reason]:
        """Parameters the step's tasks read whose value a run now (with defaults) would differ in.

        A task that listed or merged its inputs (``read_all``) read every parameter.
        """
        read: dict[str, str | None] = {}
        for record in records:
            reads = record.get("reads") or {}
            names = list(record.get("params") or {}) + (list(self.run.params) if record.get("read_all") else [])
            for name in names:
                read.setdefault(name, reads.get(name))
        out = []
        for var in sorted(read):
            spec = self.specs.get(var)
            then = self.run.params.get(var)
            if spec is None:
                out.append(Reason("parameter", f"parameter {var}: {_short(then)} in {self.label}, no longer declared",
                                  {"parameter": var}))
                continue
            message = self.parameter_change(spec, then, read[var])
            if message:
                out.append(Reason("parameter", message, {"parameter": spec.name, "then": then,
                                                         "now": spec.default}))
        return out

    def parameter_change(self, spec: ParameterSpec, then: Any, address: str | None) -> str | None:
        """How a run with the defaults would see ``spec`` differently (None: the same, or unknowable).

        Values are compared as recorded; a value recorded only by its size (a long string,
        a list) and an ``IncludeFile``'s content are compared by content address with
        what the task read.  A computed default is known only by running the module code.
        """
        if spec.var in self.given:
            now = self.given[spec.var]
            if then == now and isinstance(then, bool) == isinstance(now, bool):
                return None
            return f"parameter {spec.name}: {_short(then)} in {self.label}, {_short(now)} given now"
        if not spec.has_literal_default or spec.kind == "Config":
            return None
        if spec.kind == "IncludeFile":
            content = _included(spec, self.flow)
            if content is None:
                return f"parameter {spec.name}: file {spec.default!r} not found now"
            if address and _address(content) != address:
                return f"parameter {spec.name}: file {spec.default!r} changed since {self.label}"
            return None
        summarised = isinstance(then, str) and then.startswith("<") and then.endswith(" items>")
        if summarised:
            same = address is None or _address(spec.default) == address
        else:
            same = then == spec.default and isinstance(then, bool) == isinstance(spec.default, bool)
        if same:
            return None
        return f"parameter {spec.name}: {_short(then)} in {self.label}, default now {_short(spec.default)}"

    def distribution_reasons(self, records: Sequence[Mapping[str, Any]]) -> list[Reason]:
        used: dict[str, str] = {}
        for record in records:
            used.update(record.get("distributions") or {})
        out = []
        for name, then in sorted(used.items()):
            now = installed_version(name)
            if now != then:
                out.append(Reason("distribution", f"{name} {then} \u2192 {now or 'not installed'}",
                                  {"distribution": name, "then": then, "now": now}))
        return out


def compare(flow: FlowSource, run: RunRecord, meta: MetadataStore, graph: FlowGraph | None = None,
            params: Mapping[str, Any] | None = None) -> StatusReport:
    """Every step of ``flow`` against ``run`` (read from ``meta``), in the graph's order.

    ``params`` (``--NAME VALUE``) are the values a run would be given: parameters
    among them are compared with those, the others with their defaults.
    """
    graph = graph or build_graph(flow)
    tasks: dict[str, list[TaskRecord]] = {}
    for task in meta.tasks(run.flow, run.run_number):
        if not task.step.startswith("_"):
            tasks.setdefault(task.step, []).append(task)
    records = {task_id: fp.record for task_id, fp in for_run(meta, run.flow, run.run_number).items()}
    work = _Compare(flow, run, meta, params)
    by_step: dict[str, StepStatus] = {}
    order = [n for n in graph.sorted_nodes() if n in flow.steps]
    for name in order:
        mine = tasks.get(name, [])
        found = [records[t.task_id] for t in mine if t.task_id in records]
        status = StepStatus(name, work.own_reasons(name, flow.steps[name], mine, found), len(mine),
                            sum(1 for t in mine if t.origin))
        stale_parents = [p for p in graph[name].in_funcs if p in by_step and by_step[p].stale]
        for parent in stale_parents:
            status.reasons.append(Reason("upstream", f"upstream step `{parent}` is stale", {"step": parent}))
        status.reasons.sort(key=lambda r: KINDS.index(r.kind))
        by_step[name] = status
    removed = [s for s in tasks if s not in flow.steps]
    return StatusReport(flow.name, run, [by_step[n] for n in order], removed)


def flow_status(flow: FlowSource, run: str | int | None = None, root: str | Path | None = None,
                graph: FlowGraph | None = None, params: Mapping[str, Any] | None = None) -> StatusReport:
    """Each step of ``flow`` against ``run`` (default: the latest run of the namespace) in its store;
    ``params`` as a run would be given them (default: every parameter's default)."""
    from . import config
    from .client.context import stores_for

    where = Path(root) if root else config.find_store_root(flow.path)
    if not config.has_store(where):
        raise _no_run(flow)
    record = find_run(flow, run, where)
    meta, _ = stores_for(where)
    return compare(flow, record, meta, graph, params)


def latest_reasons(flow: FlowSource, graph_of: Any = build_graph) -> tuple[str | None, dict[str, list[str]]]:
    """``(run id, {stale step: [reason, ...]})`` against the latest run, for badges and graph marks.

    ``(None, {})`` when there is nothing to compare with (no step, no run yet, a step
    cell that does not parse yet): a mark is a hint and never an error.
    """
    from .errors import FlowcellError

    if not flow.steps:
        return None, {}
    try:
        report = flow_status(flow, graph=graph_of(flow))
    except FlowcellError:
        return None, {}
    return report.run_id, report.reasons()


def _header(cell: StepCell, decorators: list[str]) -> str:
    join = f"({cell.join_arg})" if cell.join_arg else ""
    return " ".join([f"%%step {cell.name}{join}", *decorators]).rstrip()


def step_diff(flow: FlowSource, step: str, run: str | int | None = None, root: str | Path | None = None) -> str:
    """The unified diff of ``step``'s cell from ``run``'s version (default: the latest run) to the notebook's,
    followed by the diff of the ``%%flow`` module code when that changed too (every step runs it).

    Whitespace and comments are part of the diff (it shows the text); whether the
    step is stale ignores them.  Nothing changed gives an empty string.
    """
    from . import config
    from .client.context import stores_for
    from .sourcediff import unified_diff

    if step not in flow.steps:
        raise NotFoundError(f"Flow {flow.name} has no step {step!r}; its steps are {', '.join(flow.steps)}.")
    where = Path(root) if root else config.find_store_root(flow.path)
    if not config.has_store(where):
        raise _no_run(flow)
    record = find_run(flow, run, where)
    meta, _ = stores_for(where)
    tasks = meta.tasks(record.flow, record.run_number, step)
    label = f"run {record.run_number}"
    if not tasks:
        raise NotFoundError(f"Step {step!r} is not in {label} of {flow.name}, so there is no version to compare with.")
    records = for_run(meta, record.flow, record.run_number)
    then = next((records[t.task_id].record for t in tasks if t.task_id in records), None)
    work = _Compare(flow, record, meta)
    old = work.source_text(then.get("step_source")) if then else None
    if then is None or old is None:
        raise NotFoundError(f"{label.capitalize()} kept no copy of step {step!r}'s cell (recorded by an older "
                            "flowcell), so it cannot be compared.")
    cell = flow.steps[step]
    new_decorators = [d.source for d in cell.decorators]
    # Records list the step's decorators, then the flow's: the %%step line shows the step's.
    old_decorators = list(then.get("decorators") or [])
    tail = list(flow.flow_decorators)
    if tail and old_decorators[-len(tail):] == tail:
        old_decorators = old_decorators[:-len(tail)]
    before = _header(cell, old_decorators) + "\n" + old
    after = _header(cell, new_decorators) + "\n" + cell.body
    parts = [unified_diff(before, after, f"{record.pathspec}/{step} ({label})", f"{step} ({cell.label or 'notebook'})")]
    old_module = work.source_text(then.get("module_source"))
    if old_module is not None:
        parts.append(unified_diff(old_module, code_components(flow, step).module_source,
                                  f"{record.pathspec} %%flow module code ({label})", "%%flow module code (notebook)"))
    return "\n".join(p for p in parts if p)
