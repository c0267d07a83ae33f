"""The notebook side: ``%%flow``, ``%%step``, ``%run_flow`` and ``%flowcell``.

Per-notebook state (registered cells, the kernel pool) lives on the
:class:`FlowcellMagics` instance; configuration is traitlets
(``c.FlowcellMagics.autospin = False``).
"""

from __future__ import annotations

import os
import shlex
import threading
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from traitlets import Bool, Int

from .cells import CellRegistry
from .errors import FlowcellError, NothingToResume, RunFailed, RunInterrupted, StepFailed
from .model import CodeCell, FlowSource, StepCell, parse_flow_line, parse_step_line, step_flags

@magics_class
class FlowcellMagics(Magics):
    """Magics that turn notebook cells into a flow and run it."""

    autospin = Bool(True, help="Spin a %%step cell when it is executed and inputs exist.").tag(config=True)
    reuse = Bool(False, help="%run_flow takes unchanged tasks from earlier runs (as --reuse).").tag(config=True)
    max_workers = Int(4, help="Tasks of a run that execute at once.").tag(config=True)
    pool_size = Int(2, help="Child kernels kept warm.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.cells = CellRegistry()
        self._graph_cache: tuple[Any, Any] | None = None
        self._cell_id: str | None = None
        self._runtime: Any = None
        self._notified_decorators: set[str] = set()
        self._spinner: Any = None
        self._graph_handle: Any = None
        self._force_spin = False
        from .labcomm import LabBridge

        self.bridge = LabBridge(self)

    # -- state ---------------------------------------------------------------------

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from .runtime.engine import Runtime

            self._runtime = Runtime(pool_size=self.pool_size)
        return self._runtime

    def pre_run_cell(self, info: Any) -> None:
        self._cell_id = getattr(info, "cell_id", None)

    def _observer(self, **kwargs: Any) -> Any:
        """Live HTML progress in a Jupyter front end; plain console lines in terminal IPython."""
        from .progress import ConsoleProgress, NotebookProgress

        if getattr(self.shell, "kernel", None) is None:
            import sys

            return ConsoleProgress(stream=sys.stdout, quiet=not kwargs.get("live_table", True))
        return NotebookProgress(**kwargs)

    def _label(self) -> str:
        count = getattr(self.shell, "execution_count", None)
        return f"In [{count}]" if count is not None else "notebook cell"

    def _notebook_path(self) -> str | None:
        ns = self.shell.user_ns if self.shell is not None else {}
        for candidate in (ns.get("__session__"), os.environ.get("JPY_SESSION_NAME"), ns.get("__vsc_ipynb_file__")):
            if candidate and str(candidate).endswith((".ipynb", ".py")):
                return str(Path(str(candidate)).resolve())
        return None

    def current_flow(self) -> FlowSource:
        """The flow as the notebook holds it now, in the order the cells were run."""
        path = self._notebook_path()
        self.cells.sync_with_file(path)
        return self.cells.flow(path)

    def graph(self, flow: FlowSource | None = None) -> Any:
        """The flow's graph, built once per change of the registered cells (the hot path of a cell)."""
        from .graph import build_graph

        flow = flow or self.current_flow()
        key = (self.cells.version, self.cells.flow_name, flow.path)
        if self._graph_cache is None or self._graph_cache[0] != key:
            self._graph_cache = (key, build_graph(flow))
        return self._graph_cache[1]

    def retain_cells(self, ids: list[str]) -> bool:
        """The front end's list of the notebook's cell ids: cells not in it were deleted and leave
        the flow.  True when that changed the flow (the caller pushes the new state)."""
        return bool(self.cells.keep_only(ids))

    # -- cell magics ---------------------------------------------------------------

    @line_cell_magic
    def flow(self, line: str, cell: str | None = None) -> None:
        """%%flow [NAME] — module-level code and parameters; ``%flow NAME`` only names the flow."""
        cell = cell or ""
        label = self._label()
        try:
            name, flow_decorators = parse_flow_line(line, label)
            self.cells.flow_decorators += [d for d in flow_decorators if d not in self.cells.flow_decorators]
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        if name and self.cells.flow_name and name != self.cells.flow_name:
            raise UsageError(
                f"This notebook's flow is already named {self.cells.flow_name!r}; a %%flow cell may repeat that "
                "name or give none. Restart the kernel to start a different flow."
            )
        self.cells.flow_name = self.cells.flow_name or name
        code = CodeCell(source=cell, label=label)
        from .model import find_parameters

        try:
            params = find_parameters(code)
            compile(cell, label, "exec")
        except (FlowcellError, SyntaxError) as exc:
            raise UsageError(str(exc)) from None
        self.cells.register("flow", f"flow:{hash(cell)}", code, self._cell_id)
        # Module code and defaults are part of every step: stale marks may have changed.
        self._redraw_graph()
        self.bridge.push()
        if params:
            print(f"Flow {self.current_flow().name}: parameters {', '.join(p.name for p in params)}")

    @cell_magic
    def step(self, line: str, cell: str) -> None:
        """%%step NAME[(inputs)] [@decorator ...] — one step of the flow."""
        label = self._label()
        try:
            name, join_arg, decorators = parse_step_line(line, label)
            no_reuse = "--no-reuse" in step_flags(line, label)[1]
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        step = StepCell(name=name, body=cell, join_arg=join_arg, decorators=decorators, label=label,
                        no_reuse=no_reuse)
        from .graph import build_graph

        probe = FlowSource(name="Probe", steps={name: step})
        try:
            build_graph(probe)
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        self.cells.register("step", f"step:{name}", step, self._cell_id)
        passthrough = [d.name for d in decorators if not d.is_local and d.name not in self._notified_decorators]
        if passthrough:
            self._notified_decorators.update(passthrough)
            print(f"Note: @{', @'.join(passthrough)} {'has' if len(passthrough) == 1 else 'have'} no local effect; "
                  "kept for the exported flow.")
        self._redraw_graph()
        force, self._force_spin = self._force_spin, False
        if not self.autospin and not force:
            print(f"Registered step {name!r} of flow {self.current_flow().name}.")
            self.bridge.push()
            return
        self._spin_and_show(name, None, {}, persist=False, skip_decorators=False, auto=True)

    # -- spin ----------------------------------------------------------------------

    @property
    def spinner(self) -> Any:
        if self._spinner is None:
            from .runtime.spin import Spinner

            self._spinner = Spinner(self.runtime)
        return self._spinner

    def _spin_and_show(self, step: str, pathspec: str | None, artifacts: dict[str, Any], persist: bool,
                       skip_decorators: bool, auto: bool = False, from_metaflow: str | None = None,
                       split: int | None = None) -> Any:
        from .errors import NotFoundError

        flow = self.current_flow()
        self.bridge.set_status(step, "running")
        try:
            result = self.spinner.spin(flow, step, pathspec, artifacts, persist=persist, graph=self.graph(flow),
                                       skip_decorators=skip_decorators,
                                       observer=self._observer(prefix_output=False, live_table=False),
                                       check=False, from_metaflow=from_metaflow, split=split)
        except NotFoundError as exc:
            self.bridge.statuses.pop(step, None)
            self.bridge.push()
            if auto:
                print(f"Registered step {step!r}. {exc}")
                return None
            raise UsageError(str(exc)) from None
        except FlowcellError as exc:
            self.bridge.set_status(step, "failed")
            if auto:
                print(f"Registered step {step!r}; not spun: {exc}")
                return None
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            self.bridge.set_status(step, "failed")
            raise RunInterrupted(f"Spin of {step!r} interrupted: its tasks were stopped.") from None
        outcome = result.outcome
        self.bridge.set_status(step, result.status)
        if not result.successful or outcome is None:
            raise StepFailed.of(result.pathspec or step, outcome.error if outcome else None,
                                f"({result.describe()})")
        print(result.headline() + ".")
        self._show_task(result.task, outcome.created, outcome.changed)
        self._redraw_graph()
        return result

    def _show_task(self, task: Any, created: list[str], changed: list[str]) -> None:
        """The task's artifacts widget and its cards, in the cell."""
        from IPython.display import display

        from .widgets import ArtifactInspector, CardView

        if getattr(self.shell, "kernel", None) is None:
            return  # terminal IPython: the printed summary is the view
        display(ArtifactInspector(task, created, changed))
        for card in task.cards:
            display(CardView(card))

    def _redraw_graph(self) -> None:
        if self._graph_handle is not None:
            self._graph_handle.refresh()

    def _graph_source(self) -> tuple[str, Any, dict[str, str | None]]:
        """The flow's name, graph and each step's last status, for the graph widget."""
        from .widgets import step_statuses

        flow = self.current_flow()
        graph = self.graph(flow)
        statuses = {**step_statuses(flow.name)}
        for name in (self._spinner.session if self._spinner else {}):
            statuses.setdefault(name, "completed")  # the session keeps successful spins only
        return flow.name, graph, statuses

    def _stale_steps(self) -> dict[str, list[str]]:
        from .staleness import latest_reasons

        return latest_reasons(self.current_flow(), self.graph)[1]

    @line_magic
    def flow_graph(self, line: str) -> None:
        """%flow_graph — the flow's DAG with each step's last status, redrawn as steps are registered."""
        from .widgets import FlowGraph

        if not self.current_flow().steps:
            raise UsageError("No %%step cells have been run yet.")
        try:
            self._graph_handle = FlowGraph(self._graph_source, stale=self._stale_steps)
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        self._graph_handle.show()

    @line_magic
    def flow_runs(self, line: str) -> Any:
        """%flow_runs [FLOW] [--tag T ...] [--all] — browse runs, steps, tasks, artifacts, logs and cards.

        ``--metaflow [--namespace NS]`` lists the flow's runs in Metaflow's metadata instead."""
        import argparse

        from .widgets import RunBrowser

        parser = argparse.ArgumentParser(prog="%flow_runs", add_help=False, exit_on_error=False)
        parser.add_argument("flow", nargs="?")
        parser.add_argument("--tag", action="append", default=[])
        parser.add_argument("--all", action="store_true")
        parser.add_argument("--metaflow", action="store_true")
        parser.add_argument("--namespace")
        try:
            args = parser.parse_args(shlex.split(line))
            if args.metaflow:  # runs in Metaflow's own metadata (local or service), not the flowcell store
                from .metaflow_client import metaflow_runs_view

                flow = self.current_flow()
                return metaflow_runs_view(args.flow or flow.name, tuple(args.tag),
                                          None if args.all else (args.namespace or ...), near=flow.path)
            return RunBrowser(args.flow or self.current_flow().name, None if args.all else ..., tuple(args.tag))
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"%flow_runs: {exc}") from None
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def flow_status(self, line: str) -> Any:
        """%flow_status [RUN] [--diff STEP] [--PARAM VALUE ...] — each step up to date or stale against RUN
        (default: the latest), and why; parameters compared with their defaults or the values given."""
        from .status_cli import magic_status

        try:
            flow = self.current_flow()
            return magic_status(flow, line, self.graph(flow) if flow.steps else None)
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def spin(self, line: str) -> None:
        """%spin [STEP] PATHSPEC [--split N] [--artifacts-module FILE] [--artifacts DICT] [--persist] [--skip-decorators]

        Inside a foreach every split runs, unless a task pathspec or ``--split N`` names one.
        The cell shows the spun task once (its artifacts and cards); the Client reads it
        by the pathspec printed, e.g. ``Task("Flow/spin-3/train/1")``.
        """
        import argparse

        from .options import spin_overrides, spin_target

        parser = argparse.ArgumentParser(prog="%spin", add_help=False, exit_on_error=False)
        parser.add_argument("target", nargs="+")
        parser.add_argument("--artifacts-module")
        parser.add_argument("--artifacts")
        parser.add_argument("--persist", action="store_true")
        parser.add_argument("--skip-decorators", action="store_true")
        parser.add_argument("--from-metaflow", nargs="?", const="")
        parser.add_argument("--as-test")
        parser.add_argument("--expect", action="append")
        parser.add_argument("--split", type=int)
        try:
            args = parser.parse_args(shlex.split(line))
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"%spin: {exc}. Usage: %spin STEP or %spin RUN/STEP[/TASK] [--split N] [--persist] ...") from None
        flow = self.current_flow()
        try:
            step, pathspec = spin_target(flow.name, args.target)
            overrides = spin_overrides(args.artifacts_module, args.artifacts, self.shell.user_ns if self.shell else {})
            if args.from_metaflow == "":  # bare --from-metaflow: the flow's latest run on Metaflow
                from .metaflow_runs import latest_metaflow_run

                args.from_metaflow = latest_metaflow_run(flow.name, flow.path)
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        result = self._spin_and_show(step, pathspec, overrides, args.persist, args.skip_decorators,
                                     from_metaflow=args.from_metaflow, split=args.split)
        if args.as_test:
            from .freeze import write_spin_test

            try:
                written = write_spin_test(self.spinner, flow, result, pathspec, overrides, args.as_test,
                                          args.expect, f"%spin {line.strip()}")
            except FlowcellError as exc:
                raise UsageError(str(exc)) from None
            print(f"Wrote {written}: it re-spins {result.step!r} on these inputs, frozen in {written.stem}_inputs/.")

    def _parse_run_line(self, prog: str, line: str, with_step: bool) -> tuple[dict[str, str], Any]:
        """``--PARAM VALUE`` pairs and the known options of %run_flow / %resume."""
        import argparse

        from .options import split_params

        try:
            params, rest = split_params(shlex.split(line))
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        parser = argparse.ArgumentParser(prog=prog, add_help=False, exit_on_error=False)
        if with_step:
            parser.add_argument("step", nargs="?")
            parser.add_argument("--origin-run-id")
        parser.add_argument("--tag", action="append", default=[])
        parser.add_argument("--max-workers", type=int, default=self.max_workers)
        parser.add_argument("--run-id-file")
        parser.add_argument("--namespace")
        if not with_step:
            parser.add_argument("--reuse", action="store_true", default=self.reuse)
        try:
            return params, parser.parse_args(rest)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"{prog}: {exc}") from None

    @line_magic
    def resume(self, line: str) -> Any:
        """%resume [STEP] [--origin-run-id ID] [--PARAM VALUE ...] [--tag T ...]"""
        from .runtime.runs import start_resume

        params, args = self._parse_run_line("%resume", line, with_step=True)

        def start(observer: Any) -> Any:
            try:
                return start_resume(self.runtime, self.current_flow(), args.step, args.origin_run_id, params,
                                    tags=args.tag, max_workers=args.max_workers, run_id_file=args.run_id_file,
                                    observer=observer)
            except NothingToResume as exc:
                raise FlowcellError(exc.advice(f"%resume {exc.step}")) from None

        return self._finish_run(start)

    # -- line magics ---------------------------------------------------------------

    @line_magic
    def run_flow(self, line: str) -> Any:
        """%run_flow [--PARAM VALUE ...] [--tag T ...] [--max-workers N] [--run-id-file F] [--namespace NS] [--reuse]
        [--on metaflow [--with DECO ...] [--config NAME FILE] [--branch B] [--production]]"""
        from .runtime.runs import start_run

        from .metaflow_runs import split_metaflow_options

        try:
            on, mf_options, argv = split_metaflow_options(shlex.split(line))
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        params, args = self._parse_run_line("%run_flow", shlex.join(argv), with_step=False)
        flow = self.current_flow()
        if not flow.steps:
            raise UsageError("No %%step cells have been run yet: run the %%flow and %%step cells first.")
        if on == "metaflow":
            from .metaflow_runs import run_on_metaflow

            if "--reuse" in argv:
                raise UsageError("--reuse takes tasks from earlier flowcell runs; it does not apply to --on metaflow.")

            return self._finish_run(lambda observer: run_on_metaflow(
                flow, params, tags=args.tag, max_workers=args.max_workers, run_id_file=args.run_id_file,
                options=mf_options, observer=observer, namespace=args.namespace))
        return self._finish_run(lambda observer: start_run(
            self.runtime, flow, params, tags=args.tag, max_workers=args.max_workers,
            run_id_file=args.run_id_file, observer=observer, namespace=args.namespace, reuse=args.reuse))

    def _finish_run(self, start: Any) -> Any:
        """Run with live progress; return the Run, or raise with the failed task's traceback."""
        from .client import Run
        from .progress import NotebookProgress

        try:
            result = start(self._observer())
        except FlowcellError as exc:
            self.bridge.push()
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            raise RunInterrupted("Run interrupted: its tasks were stopped and the run was marked failed.") from None
        run = Run._open(result.pathspec, result.root)
        self.bridge.statuses.clear()  # the run is now every step's latest status
        self.bridge.push()
        if result.status != "completed":
            first = result.failures[0] if result.failures else None
            failure = StepFailed.of(first.pathspec, first.outcome.error if first.outcome else None) if first else None
            self._redraw_graph()
            raise RunFailed(f"Run {result.pathspec} failed; `%resume` re-runs it from the failed step.",
                            run=run, failure=failure)
        self._redraw_graph()
        reused = getattr(result, "reuse_summary", None)
        if reused is not None and reused():
            print(f"{result.pathspec}: {reused()}")
        self._show_cards(run)
        return run

    def _show_cards(self, run: Any) -> None:
        from IPython.display import display

        from .widgets import CardView

        shown = 0
        for step in reversed(run.steps()):
            for task in step.tasks():
                for card in task.cards:
                    if shown < 10:
                        display(CardView(card))
                    shown += 1
        if shown > 10:
            print(f"{shown - 10} more cards: see %flow_runs or flowcell card view.")

    @line_magic
    def export_flow(self, line: str) -> None:
        """%export_flow [PATH] [--env requirements|pypi|conda|none] [--check] — write the flow as a Metaflow flow.py."""
        import argparse

        from .export import export_flow

        parser = argparse.ArgumentParser(prog="%export_flow", add_help=False, exit_on_error=False)
        parser.add_argument("path", nargs="?")
        parser.add_argument("--env", choices=["requirements", "pypi", "conda", "none"], default="requirements")
        parser.add_argument("--check", action="store_true")
        try:
            args = parser.parse_args(shlex.split(line))
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"%export_flow: {exc}. Usage: %export_flow [PATH] [--env pypi] [--check]") from None
        flow = self.current_flow()
        default = Path(flow.path).with_suffix(".py") if flow.path else Path("flow.py")
        try:
            if args.check:
                from .pins import check_export

                print(check_export(flow, args.path or default)[1])
                return
            exported = export_flow(flow, args.path or default, env=args.env)
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None
        print(exported.summary())

    @line_magic
    def tag(self, line: str) -> None:
        """%tag add|remove|replace|list [--run-id ID] TAG ... (default run: the flow's latest)"""
        import argparse

        from .tags import tag_command, tag_parser

        try:
            args = tag_parser("%tag").parse_intermixed_args(shlex.split(line))
            for out in tag_command(args, self.current_flow().name, list(args.words)):
                print(out)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"%tag: {exc}. Usage: %tag add|remove|replace|list [--run-id ID] TAG ...") from None
        except FlowcellError as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def flowcell(self, line: str) -> None:
        """%flowcell autospin on|off | %flowcell reuse on|off | %flowcell status"""
        parts = line.split()
        if parts[:1] in (["autospin"], ["reuse"]) and len(parts) == 2 and parts[1] in ("on", "off"):
            setattr(self, parts[0], parts[1] == "on")
            print(f"{parts[0]} {parts[1]}")
            return
        if parts[:1] == ["status"]:
            from . import config

            flow = self.current_flow()
            print(f"flow {flow.name}: {len(flow.code_cells)} %%flow cell(s), steps: {', '.join(flow.steps) or 'none'}")
            for line in self.cells.describe():
                print(f"  {line}")
            print(f"store: {config.find_store_root(flow.path)} ({config.root_reason(flow.path)})")
            return
        raise UsageError("Usage: %flowcell autospin on|off, %flowcell reuse on|off, or %flowcell status")


_instances: dict[int, FlowcellMagics] = {}


def load(ipython: Any) -> None:
    magics = FlowcellMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    _instances[id(ipython)] = magics
    # Warm the pool in the background now, so the first run or spin finds kernels ready.
    magics.runtime  # noqa: B018
    magics.bridge.open()
    # The first widget of a kernel would otherwise pay for importing anywidget and ipywidgets
    # (0.1-0.5 s): import them now, off the main thread, while the user reads or types.
    from .widgets import warm

    threading.Thread(target=warm, name="flowcell-warm-widgets", daemon=True).start()


def unload(ipython: Any) -> None:
    magics = _instances.pop(id(ipython), None)
    if magics is not None:
        magics.bridge.close()
        try:
            ipython.events.unregister("pre_run_cell", magics.pre_run_cell)
        except ValueError:
            pass
        if magics._runtime is not None:
            magics._runtime.close()
