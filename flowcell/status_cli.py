"""``flowcell status NOTEBOOK [--run ID] [--json] [--diff STEP]``: which steps are stale, and why.

Reads the notebook (or flow file) and the store's records only: no kernel starts,
so it answers in the time it takes Python to import flowcell.  Exit code 0, or 2
for a bad notebook, run or step; with ``--check``, 1 when some step is stale (as
``export --check`` does for drift), for scripts and CI.

``%flow_status`` (the magic) parses its line here too, so the two surfaces say the
same things in the same words.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

from .errors import FlowcellError

if TYPE_CHECKING:
    from .model import FlowSource
    from .staleness import StatusReport

DESCRIPTION = ("Say for each step of a notebook's flow whether it is up to date with a run (default: the latest) "
               "or stale, and why: its cell, the module code, its decorators, a parameter it read, a package "
               "version, or an upstream step.")


def parser(prog: str = "flowcell status") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                epilog="Flow parameters as --NAME VALUE: compare with a run given those values "
                                       "(default: each parameter's default).")
    p.add_argument("notebook", help="the notebook (.ipynb) or Metaflow flow file (.py)")
    p.add_argument("--run", metavar="ID", help="compare with this run (12 or FLOW/12; default: the latest)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--diff", metavar="STEP", help="print the diff of STEP's cell against the run's version")
    p.add_argument("--namespace", help="find the latest run in this namespace (default: yours; '' for all)")
    p.add_argument("--check", action="store_true", help="exit with code 1 when some step is stale")
    return p


#: Options of status that take a value; every other ``--NAME VALUE`` is a flow parameter.
_OPTIONS = frozenset({"--run", "--diff", "--namespace"})
_FLAGS = frozenset({"--json", "--check", "--help", "-h"})


def cmd_status(argv: list[str]) -> int:
    from .options import split_params

    params, rest = split_params(argv, _OPTIONS, _FLAGS)
    args = parser().parse_args(rest)
    from .client import namespace
    from .runner import load_flow
    from .staleness import flow_status, step_diff

    if args.namespace is not None:
        namespace(args.namespace or None)
    flow = load_flow(args.notebook)
    if args.diff:
        text = step_diff(flow, args.diff, args.run)
        if args.json:
            sys.stdout.write(json.dumps({"flow": flow.name, "step": args.diff, "diff": text}) + "\n")
        else:
            print(text or f"The cell of step {args.diff!r} reads the same as in the run.")
        return 0
    report = flow_status(flow, args.run, params=params)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), default=str) + "\n")
    else:
        report.hint = f"See what changed in a cell: flowcell status {shlex.quote(args.notebook)} --diff STEP"
        print(report)
    return 1 if args.check and report.stale else 0


class CellDiff:
    """A cell's diff in a notebook: a highlighted ``diff`` block, plain text elsewhere."""

    def __init__(self, step: str, text: str) -> None:
        self.step, self.text = step, text

    def __str__(self) -> str:
        return self.text or f"The cell of step {self.step!r} reads the same as in the run."

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_markdown_(self) -> str:
        return f"```diff\n{self.text}\n```" if self.text else str(self)


def magic_status(flow: FlowSource, line: str, graph: Any) -> StatusReport | CellDiff:
    """``%flow_status [RUN] [--diff STEP] [--NAME VALUE ...]`` for the notebook's flow as it is registered."""
    from .options import split_params

    p = argparse.ArgumentParser(prog="%flow_status", add_help=False, exit_on_error=False)
    p.add_argument("run", nargs="?")
    p.add_argument("--run", dest="run_option")
    p.add_argument("--diff")
    try:
        params, rest = split_params(shlex.split(line), _OPTIONS, _FLAGS)
        args = p.parse_args(rest)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise FlowcellError(f"%flow_status: {exc}. Usage: %flow_status [RUN] [--diff STEP]") from None
    from .staleness import flow_status, step_diff

    run = args.run or args.run_option
    if args.diff:
        return CellDiff(args.diff, step_diff(flow, args.diff, run))
    if not flow.steps:
        raise FlowcellError("No %%step cells have been run yet: run the %%flow and %%step cells first.")
    report = flow_status(flow, run, graph=graph, params=params)
    report.hint = "See what changed in a cell: %flow_status --diff STEP"
    return report
