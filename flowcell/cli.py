"""``flowcell`` from a shell: ``flowcell run NOTEBOOK [--PARAM VALUE ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import FlowcellError

def split_params(
    argv: list[str], known_with_value: set[str], known_flags: frozenset[str] = frozenset({"--quiet", "--json"})
) -> tuple[dict[str, str], list[str]]:
    """Separate ``--PARAM VALUE`` pairs (any flag that is not a known option) from the rest."""
    params: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if arg.startswith("--") and name not in known_with_value and name not in known_flags | {"--help"}:
            if eq:
                params[name[2:]] = inline
                i += 1
                continue
            if i + 1 >= len(argv):
                raise FlowcellError(f"Parameter {arg} needs a value, e.g. {arg} 0.5.")
            params[name[2:]] = argv[i + 1]
            i += 2
            continue
        rest.append(arg)
        i += 1
    return params, rest


def load_flow(path: str) -> Any:
    from .model import read_notebook

    p = Path(path)
    if p.suffix == ".py":
        raise FlowcellError(f"{path}: running a Metaflow flow.py directly is not supported yet; import it first.")
    return read_notebook(p)


def cmd_run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="flowcell run", description="Run a notebook's flow as a recorded run.")
    parser.add_argument("notebook")
    parser.add_argument("--tag", action="append", default=[], help="tag the run (repeatable)")
    parser.add_argument("--max-workers", type=int, default=4, help="tasks run at once (default 4)")
    parser.add_argument("--run-id-file", help="write the run id here as soon as it is known")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    params, rest = split_params(argv, {"--tag", "--max-workers", "--run-id-file"})
    args = parser.parse_args(rest)
    if args.max_workers < 1:
        parser.error("--max-workers must be at least 1")
    from .progress import ConsoleProgress
    from .runtime.engine import Runtime
    from .runtime.runs import start_run

    flow = load_flow(args.notebook)
    runtime = Runtime(pool_size=min(args.max_workers, 2))
    try:
        observer = ConsoleProgress(quiet=args.quiet)
        result = start_run(runtime, flow, params, tags=args.tag, max_workers=args.max_workers,
                           run_id_file=args.run_id_file, observer=observer)
    finally:
        runtime.close()
    print(f"{result.pathspec} {result.status}", file=sys.stderr if args.quiet else sys.stdout)
    return 0 if result.status == "completed" else 1


COMMANDS = {"run": cmd_run}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: flowcell {run} ...\n\n  run NOTEBOOK [--PARAM VALUE ...] [--tag T] [--max-workers N] "
              "[--run-id-file F]\n      run a notebook's flow as a recorded run", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except FlowcellError as exc:
        print(f"flowcell: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowcell: interrupted; the run was stopped and marked failed.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
