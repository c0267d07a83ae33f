"""Tag commands shared by ``%tag`` and ``flowcell tag``: add, remove, replace, list."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import FlowcellError


def tag_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, add_help=prog.startswith("flowcell"), exit_on_error=False)
    parser.add_argument("action", choices=["add", "remove", "replace", "list"])
    parser.add_argument("words", nargs="*", help="[NOTEBOOK] TAG ... (replace: OLD NEW)")
    parser.add_argument("--run-id", help="ID, or FLOW/ID without a notebook (default: the latest run)")
    parser.add_argument("--all", action="store_true", help="list: runs of every namespace")
    parser.add_argument("--hide-system-tags", action="store_true", help="list: user tags only")
    parser.add_argument("--flat", action="store_true", help="list: one tag per line")
    parser.add_argument("--group-by-tag", action="store_true", help="list: runs under each tag")
    return parser


def _run(flow: str | None, run_id: str | None) -> Any:
    from .client import Flow, Run

    if run_id and "/" in run_id:
        return Run(run_id)
    if flow is None:
        raise FlowcellError("Name the run as --run-id FLOW/ID, or give the notebook.")
    if run_id:
        return Run(f"{flow}/{run_id}")
    latest = Flow(flow).latest_run
    if latest is None:
        raise FlowcellError(f"Flow {flow} has no runs in this namespace to tag.")
    return latest


def tag_command(args: argparse.Namespace, flow: str | None, tags: list[str]) -> list[str]:
    """Carry out one tag command; return the lines to print."""
    from .client import Flow, namespace

    if args.action == "list":
        if args.all:
            namespace(None)
        if args.run_id or flow is None:
            runs = [_run(flow, args.run_id)]
        else:
            runs = Flow(flow).runs()[:20]
        lines: list[str] = []
        if args.group_by_tag:
            groups: dict[str, list[str]] = {}
            for run in runs:
                for tag in sorted(run.user_tags if args.hide_system_tags else run.tags):
                    groups.setdefault(tag, []).append(run.id)
            return [f"{tag}: {', '.join(ids)}" for tag, ids in sorted(groups.items())]
        for run in runs:
            user, system = sorted(run.user_tags), sorted(run.system_tags)
            if args.flat:
                lines += user + ([] if args.hide_system_tags else system)
            else:
                lines.append(f"{run.pathspec}: user tags: {', '.join(user) or '-'}"
                             + ("" if args.hide_system_tags else f"; system tags: {', '.join(system)}"))
        return lines
    run = _run(flow, args.run_id)
    if not tags:
        raise FlowcellError(f"tag {args.action} needs at least one tag.")
    if args.action == "add":
        run.add_tags(tags)
    elif args.action == "remove":
        run.remove_tags(tags)
    else:
        if len(tags) != 2:
            raise FlowcellError("tag replace takes two tags: the one to remove, then the one to add.")
        run.replace_tag(tags[0], tags[1])
    return [f"{run.pathspec}: user tags: {', '.join(sorted(run.user_tags)) or '-'}"]
