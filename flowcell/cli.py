"""``flowcell`` from a shell: ``flowcell run NOTEBOOK [--PARAM VALUE ...]``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from .errors import FlowcellError, NothingToResume, StepFailed
from .cli_output import internal_error, os_error, plain_output
from .options import output_file, split_params
from .runtime.signals import Terminated, signals_as_interrupt

def _emit_json(payload: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(payload, default=str) + "\n")


def _runtime(count: int) -> tuple[Any, bool]:
    """The kernel server's warm runtime (not ours to close), or a new one started at once."""
    from .warm import served_runtime

    served = served_runtime()
    if served is not None:
        served.resize(count)
        return served, False
    from .runtime.launch import prelaunch

    # Start the kernels first: they boot while flowcell loads and the notebook is read.
    early = prelaunch(count)
    from .runtime.engine import Runtime

    return Runtime(pool_size=count, prelaunched=early), True


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", action="append", default=[], help="tag the run (repeatable)")
    parser.add_argument("--max-workers", type=int, default=4, help="tasks run at once (default 4)")
    parser.add_argument("--run-id-file", help="write the run id here as soon as it is known")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--json", action="store_true", help="print one JSON result on stdout and nothing else")
    parser.add_argument("--namespace", help="run: the Client namespace of code inside the steps; resume: also "
                        "where the latest run to resume is found ('' for all)")


def _flow_help(argv: list[str]) -> str | None:
    """For ``flowcell run NOTEBOOK --help``: the flow's parameters (as ``python flow.py run --help`` lists them)."""
    if not {"-h", "--help"} & set(argv):
        return None
    notebook = next((a for a in argv if not a.startswith("-")), None)
    if notebook is None:
        return "Give a NOTEBOOK before --help to see its flow's parameters."
    from .describe import parameters_help
    from .runner import load_flow

    try:
        return parameters_help(load_flow(notebook))
    except FlowcellError as exc:
        return f"(The flow's parameters could not be read: {exc})"


RUN_DESCRIPTIONS = {
    "run": "Run a notebook's flow (or a Metaflow flow.py) as a recorded run. Task output goes to stdout, "
           "progress and flowcell's messages to stderr. Flow parameters are given as --NAME VALUE.",
    "resume": "Re-run a flow from STEP (default: the first failed step) in a new run, cloning the successful "
              "tasks before it from the origin run.",
}


def _run_like(prog: str, argv: list[str], with_step: bool) -> int:
    parser = argparse.ArgumentParser(prog=f"flowcell {prog}", description=RUN_DESCRIPTIONS[prog],
                                     epilog=_flow_help(argv), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook")
    if with_step:
        parser.add_argument("step", nargs="?", help="step to resume from (default: the first failed step)")
        parser.add_argument("--origin-run-id", help="run to resume (default: the latest)")
    else:
        parser.add_argument("--reuse", action="store_true",
                            help="take tasks whose fingerprint is unchanged from earlier runs instead of running "
                                 "them (see docs/reuse.md)")
    _common(parser)
    on = None
    if not with_step:
        from .metaflow_runs import split_metaflow_options

        on, mf_options, argv = split_metaflow_options(argv)
    params, rest = split_params(argv)
    args = parser.parse_args(rest)
    if args.max_workers < 1:
        parser.error("--max-workers must be at least 1")
    if on == "metaflow":
        if getattr(args, "reuse", False):
            parser.error("--reuse takes tasks from earlier flowcell runs; it does not apply to --on metaflow")
        return _run_on_metaflow(args, params, mf_options)
    runtime, owned = _runtime(min(args.max_workers, 2))
    try:
        from .progress import ConsoleProgress
        from .runner import load_flow
        from .runtime.runs import start_resume, start_run

        flow = load_flow(args.notebook)
        observer = ConsoleProgress(quiet=args.quiet or args.json)
        if with_step:
            try:
                result = start_resume(runtime, flow, args.step, args.origin_run_id, params, tags=args.tag,
                                      max_workers=args.max_workers, run_id_file=args.run_id_file,
                                      observer=observer, namespace=args.namespace)
            except NothingToResume as exc:
                raise FlowcellError(exc.advice(f"flowcell resume {shlex.quote(args.notebook)} {exc.step}")) from None
        else:
            result = start_run(runtime, flow, params, tags=args.tag, max_workers=args.max_workers,
                               run_id_file=args.run_id_file, observer=observer, namespace=args.namespace,
                               reuse=args.reuse)
    finally:
        if owned:
            runtime.close()
    if args.json:
        from .results import run_summary

        _emit_json(run_summary(result))
    else:
        reused = result.reuse_summary()
        print(f"{result.pathspec} {result.status}{'; ' + reused if reused else ''}", file=sys.stderr)
    return 0 if result.status == "completed" else 1


def _run_on_metaflow(args: argparse.Namespace, params: dict[str, str], options: Any) -> int:
    """``flowcell run NB --on metaflow``: Metaflow's Runner with a console progress display."""
    from .metaflow_runs import run_on_metaflow
    from .progress import ConsoleProgress
    from .runner import load_flow

    result = run_on_metaflow(load_flow(args.notebook), params, tags=args.tag, max_workers=args.max_workers,
                             run_id_file=args.run_id_file, options=options, namespace=args.namespace,
                             observer=ConsoleProgress(quiet=args.quiet or args.json))
    if args.json:
        from .results import run_summary

        _emit_json({**run_summary(result), "metaflow_pathspec": result.metaflow_pathspec})
    else:
        print(f"{result.metaflow_pathspec} on Metaflow {result.status}; read it as {result.pathspec}",
              file=sys.stderr)
    return 0 if result.status == "completed" else 1


def cmd_run(argv: list[str]) -> int:
    return _run_like("run", argv, with_step=False)


def cmd_resume(argv: list[str]) -> int:
    return _run_like("resume", argv, with_step=True)


def cmd_spin(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell spin", description="Run one step against past inputs.")
    parser.add_argument("notebook")
    parser.add_argument("target", nargs="+", help="STEP, RUN/STEP, RUN/STEP/TASK, FLOW/RUN/STEP[/TASK]")
    parser.add_argument("--artifacts-module")
    parser.add_argument("--artifacts", help="a dict literal of artifact overrides")
    parser.add_argument("--persist", action="store_true", help="keep the outputs in .flowcell_spin beside the notebook")
    parser.add_argument("--skip-decorators", action="store_true")
    parser.add_argument("--from-metaflow", nargs="?", const="",
                        help="take the inputs from a Metaflow run: FLOW/RUN[/STEP/TASK] (default: the latest)")
    parser.add_argument("--split", type=int, help="inside a foreach, spin only split N (default: every split)")
    parser.add_argument("--json", action="store_true", help="print one JSON result on stdout and nothing else")
    parser.add_argument("--namespace", help="find past runs in this namespace (default: yours; '' for all)")
    parser.add_argument("--as-test", metavar="FILE", help="write a pytest file that re-spins the step on these inputs, frozen")
    parser.add_argument("--expect", action="append", metavar="NAME", help="with --as-test: an output to check "
                        "(repeatable; default: every artifact the spin created or changed)")
    args = parser.parse_args(argv)
    if args.expect and not args.as_test:
        parser.error("--expect goes with --as-test FILE")
    runtime, owned = _runtime(1)
    try:
        from .progress import ConsoleProgress
        from .runner import load_flow
        from .options import spin_overrides, spin_target
        from .runtime.spin import Spinner

        flow = load_flow(args.notebook)
        step, pathspec = spin_target(flow.name, args.target)
        overrides = spin_overrides(args.artifacts_module, args.artifacts)
        if args.from_metaflow == "":  # bare --from-metaflow: the flow's latest run on Metaflow
            from .metaflow_runs import latest_metaflow_run

            args.from_metaflow = latest_metaflow_run(flow.name, flow.path)
        printer = ConsoleProgress(quiet=True)

        def observer(kind: str, payload: dict[str, Any]) -> None:
            if kind == "stream" and not args.json:
                (sys.stdout if payload["name"] == "stdout" else sys.stderr).write(payload["text"])
            printer(kind, payload)

        spinner = Spinner(runtime)
        spinner.finder.namespace = args.namespace
        result = spinner.spin(flow, step, pathspec, overrides, persist=args.persist,
                              skip_decorators=args.skip_decorators, observer=observer,
                              from_metaflow=args.from_metaflow, split=args.split)
        if args.as_test and result.successful:
            from .freeze import write_spin_test

            written = write_spin_test(spinner, flow, result, pathspec, overrides, args.as_test, args.expect,
                                      "flowcell spin " + " ".join(argv))
            print(f"wrote {written}", file=sys.stderr)
    finally:
        if owned:
            runtime.close()
    if args.json:
        _emit_json(result.summary())
    else:
        print(f"{result.headline()} [{result.pathspec}].", file=sys.stderr)
        if not result.successful and result.outcome and result.outcome.error:
            from .progress import strip_ansi

            for line in StepFailed.of(result.pathspec or step, result.outcome.error).traceback:
                print(line if sys.stderr.isatty() else strip_ansi(line), file=sys.stderr)
    return 0 if result.successful else 1


def cmd_tag(argv: list[str]) -> int:
    from .tags import tag_command, tag_parser

    parser = tag_parser("flowcell tag")
    try:
        args = parser.parse_intermixed_args(argv)
    except argparse.ArgumentError as exc:
        raise FlowcellError(f"flowcell tag: {exc}") from None
    words = list(args.words)
    flow = None
    if words and words[0].endswith((".ipynb", ".py")):
        from .runner import load_flow

        flow = load_flow(words.pop(0)).name
    for line in tag_command(args, flow, words):
        print(line)
    return 0


def cmd_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell export", description="Write the notebook's flow as a Metaflow flow.py.")
    parser.add_argument("notebook")
    parser.add_argument("-o", "--output", help="where to write (default: NOTEBOOK with .py, or stdout with -)")
    parser.add_argument("--env", choices=["requirements", "pypi", "conda", "none"], default="requirements",
                        help="record the steps' imports: FLOW.requirements.txt (default), @pypi_base, @conda_base, or nothing")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; report which pins of the existing export this Python has drifted from")
    args = parser.parse_args(argv)
    from .export import export_flow, export_source
    from .runner import load_flow

    if args.output and args.output != "-":
        output_file(args.output, "-o")
    flow = load_flow(args.notebook)
    if args.check:
        from .pins import check_export

        lines, report = check_export(flow, args.output or str(Path(args.notebook).with_suffix(".py")))
        print(report)
        return 1 if lines else 0
    if args.output == "-":
        sys.stdout.write(export_source(flow, env="none" if args.env == "requirements" else args.env))
        return 0
    exported = export_flow(flow, args.output or str(Path(args.notebook).with_suffix(".py")), env=args.env)
    print(exported.summary(), file=sys.stderr)
    return 0


def cmd_import(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell import", description="Turn a Metaflow flow.py into a notebook.")
    parser.add_argument("flow_file")
    parser.add_argument("-o", "--output", help="notebook to write (default: FLOW_FILE with .ipynb)")
    args = parser.parse_args(argv)
    import nbformat

    from .importer import notebook_from_flow, read_flow_file

    nb = notebook_from_flow(read_flow_file(args.flow_file))
    target = Path(args.output or Path(args.flow_file).with_suffix(".ipynb"))
    if target.exists() and target.resolve() == Path(args.flow_file).resolve():
        raise FlowcellError("The notebook would overwrite the flow file; choose another -o.")
    nbformat.write(nb, str(target))
    print(f"wrote {target}", file=sys.stderr)
    return 0


def cmd_card(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell card", description="Show the cards of a task.")
    parser.add_argument("action", choices=["view"])
    parser.add_argument("pathspec", help="FLOW/RUN/STEP/TASK (or FLOW/RUN/STEP for its first task)")
    parser.add_argument("--out", help="write the card's HTML here (default: a file in the temp folder)")
    parser.add_argument("--id", help="the card's id, when the step has several")
    parser.add_argument("--namespace", help="only a run in this namespace (default: any, as the pathspec is explicit)")
    args = parser.parse_args(argv)
    import tempfile

    from .cards import get_cards
    from .client import Step, Task, namespace

    namespace(args.namespace or None)
    parts = args.pathspec.strip("/").split("/")
    task = Step(args.pathspec).task if len(parts) == 3 else Task(args.pathspec)
    cards = get_cards(task, id=args.id)
    if cards:
        html_text = cards[0].html
    elif args.id is None:
        # No @card on the step: make its default card (the task's artifacts) now, as Metaflow's would show.
        html_text = _default_card(task)
        print(f"Task {task.pathspec} has no @card; this is its default card, made now.", file=sys.stderr)
    else:
        raise FlowcellError(f"Task {task.pathspec} has no card with id {args.id!r}.")
    target = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="flowcell-card-")) / "card.html"
    target.write_text(html_text)
    print(target)
    return 0


#: Artifacts larger than this are listed but not loaded for a card made on the spot.
_CARD_PREVIEW_BYTES = 1_000_000


def _default_card(task: Any) -> str:
    from .cards import MISSING, render_card

    artifacts = [(a.id, a.type, a.size, a.data if a.size <= _CARD_PREVIEW_BYTES else MISSING)
                 for a in sorted(task.artifacts, key=lambda a: a.id)]
    return render_card("default", None, task.pathspec, [], artifacts)


def cmd_info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell info", description="Show the store in use and who you are.")
    parser.add_argument("notebook", nargs="?", help="find the store for this notebook or flow file")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    from . import config
    from ._version import __version__

    root = config.find_store_root(args.notebook)
    info: dict[str, Any] = {
        "store": str(root), "found_by": config.root_reason(args.notebook), "exists": config.has_store(root),
        "user": config.username(), "namespace": config.default_namespace(), "version": __version__,
    }
    if info["exists"]:
        from .store.metadata import MetadataStore

        meta = MetadataStore(root)
        try:
            info["flows"] = meta.flows()
        finally:
            meta.close()
    if args.json:
        _emit_json(info)
        return 0
    state = "" if info["exists"] else " (nothing recorded yet)"
    print(f"store:     {root}{state}\n           chosen as {info['found_by']}")
    if info.get("flows"):
        print(f"flows:     {', '.join(info['flows'])}")
    print(f"user:      {info['user']}\nnamespace: {info['namespace']}\nflowcell:  {__version__}")
    return 0


def cmd_server(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell server", description="The store's warm kernel server, which "
                                     "later run, spin and resume commands hand their work to.")
    parser.add_argument("action", choices=["status", "stop"])
    parser.add_argument("notebook", nargs="?", help="the server of this notebook's store (default: this folder's)")
    parser.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    args = parser.parse_args(argv)
    from .warm import server_command

    payload, line = server_command(args.action, args.notebook)
    if args.json:
        _emit_json(payload)
    else:
        print(line)
    return 0


def cmd_status(argv: list[str]) -> int:
    from .status_cli import cmd_status as status  # its own module: cli.py stays one sitting long

    return status(argv)


def cmd_mcp(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell mcp", description="Serve flowcell to an agent as MCP tools over stdio.")
    parser.add_argument("target", nargs="?", help="a notebook, or a folder of notebooks (default: here)")
    args = parser.parse_args(argv)
    from .mcp_server import serve

    serve(args.target)
    return 0


USAGE = """usage: flowcell [--root DIR] COMMAND ...   (flowcell COMMAND --help for its options; flowcell --version)

  run NOTEBOOK [--PARAM VALUE ...] [--tag T] [--max-workers N] [--run-id-file F] [--json]
      run a notebook's flow (or a Metaflow flow.py) as a recorded run
      [--on metaflow [--with DECO] [--config NAME FILE] [--branch B] [--production]]
      export it beside the notebook and run it with Metaflow's Runner instead
  spin NOTEBOOK PATHSPEC [--artifacts-module F] [--artifacts DICT] [--persist] [--skip-decorators] [--json]
      run one step against the inputs of a past task
  resume NOTEBOOK [STEP] [--origin-run-id ID] [--PARAM VALUE ...] [--tag T] [--json]
      re-run from STEP (default: the first failed step), cloning the tasks before it
  tag add|remove|replace|list [NOTEBOOK] [--run-id ID | --run-id FLOW/ID] TAG ...
      change or list a run's tags (system tags cannot be removed)
  export NOTEBOOK [-o flow.py] [--env requirements|pypi|conda|none] [--check]
      write the flow as an ordinary Metaflow flow.py with its pins (or report drift from them)
  import FLOW.py [-o flow.ipynb]
      turn a Metaflow flow.py into a notebook of %%flow and %%step cells
  status NOTEBOOK [--run ID] [--PARAM VALUE ...] [--json] [--diff STEP] [--check]
      which steps are stale against a run (default: the latest), and why; --diff shows a cell's change
  card view PATHSPEC [--out FILE]
      write a task's card (self-contained HTML) to FILE
  info [NOTEBOOK] [--json]
      show the store in use (and why), the user and the default namespace
  server status|stop [NOTEBOOK] [--json]
      the store's warm kernel server (started by the first run/spin/resume; FLOWCELL_SERVER=off disables)
  mcp [NOTEBOOK_OR_DIR]
      serve the flows as Model Context Protocol tools over stdio (pip install 'flowcell[mcp]')

  --root DIR (anywhere on the line) uses the store at DIR, like FLOWCELL_ROOT=DIR. Without
  it the store is found the way git finds .git: the nearest .flowcell/ in the notebook's
  folder or a parent, else a new one at the top of the git work tree."""


COMMANDS = {"run": cmd_run, "spin": cmd_spin, "resume": cmd_resume, "tag": cmd_tag, "export": cmd_export, "card": cmd_card,
            "import": cmd_import, "status": cmd_status, "info": cmd_info, "server": cmd_server, "mcp": cmd_mcp}


def _take_root(argv: list[str]) -> list[str]:
    """``--root DIR`` anywhere on the line: the store every command reads and writes."""
    import os

    rest: list[str] = []
    i = 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name == "--root":
            if not eq:
                if i + 1 >= len(argv):
                    raise FlowcellError("--root needs a directory, e.g. --root ./.flowcell.")
                value = argv[i + 1]
                i += 1
            os.environ["FLOWCELL_ROOT"] = str(Path(value).expanduser().resolve())
        else:
            rest.append(argv[i])
        i += 1
    return rest


def main(argv: list[str] | None = None) -> int:
    with plain_output():
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    try:
        argv = _take_root(argv)
    except FlowcellError as exc:
        print(f"flowcell: {exc}", file=sys.stderr)
        return 2
    if argv[:1] in (["--version"], ["-V"]):
        from ._version import __version__

        print(f"flowcell {__version__}")
        return 0
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(USAGE)  # asked for: on stdout, exit 0
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        if argv:
            print(f"\nflowcell: unknown command {argv[0]!r}; the commands are {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if argv[0] in ("run", "spin", "resume") and not {"-h", "--help"} & set(argv):
        from .warm import try_server

        served = try_server(argv)
        if served is not None:
            return served
    try:
        with signals_as_interrupt():
            return COMMANDS[argv[0]](argv[1:])
    except Terminated as exc:
        print(f"flowcell: stopped by {exc}; the run was stopped and marked failed.", file=sys.stderr)
        return exc.exit_code
    except FlowcellError as exc:
        if "--json" in argv:
            _emit_json({"status": "error", "error": {"type": type(exc).__name__, "message": str(exc)}})
        print(f"flowcell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowcell: interrupted; the run was stopped and marked failed.", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder of the user's that cannot be used
        return os_error(argv, exc)
    except Exception as exc:
        return internal_error(argv, exc)


if __name__ == "__main__":
    sys.exit(main())
