"""INTERIM lint (replaced by the full port): the checks the runtime relies on."""

from __future__ import annotations

from .errors import LintError
from .graph import FlowGraph


def lint(graph: FlowGraph) -> None:
    for required in ("start", "end"):
        if required not in graph:
            raise LintError(f"The flow has no '{required}' step: add a '%%step {required}' cell.", step=required)
    for node in graph.nodes.values():
        if node.type != "end" and not node.has_tail_next:
            raise LintError(
                f"Step '{node.name}' ({node.label}) is missing a self.next() transition: add one as its last line.",
                step=node.name, cell=node.label)
        unknown = [n for n in node.out_funcs if n not in graph]
        if unknown:
            raise LintError(
                f"Step '{node.name}' ({node.label}) transitions to an unknown step '{unknown[0]}': "
                f"add a '%%step {unknown[0]}' cell or fix self.next().", step=node.name, cell=node.label)
    for node in graph.nodes.values():
        if node.num_args == 2 and node.type != "join":
            raise LintError(f"Step '{node.name}' ({node.label}) is both a join and a split: add a separate step.",
                            step=node.name, cell=node.label)
