"""The flow graph, read statically from step cells with ``ast`` (never executed).

Node types and the traversal that fills ``in_funcs``, ``split_parents`` and
``matching_join`` follow Metaflow's ``graph.py``, so lint and the runtime agree
with Metaflow on every flow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import FlowSyntaxError
from .model import FlowSource, StepCell


@dataclass
class StepNode:
    """One step: its transition as written, and its place in the graph."""

    name: str
    cell: StepCell
    type: str | None = None
    out_funcs: list[str] = field(default_factory=list)
    in_funcs: list[str] = field(default_factory=list)
    foreach_param: Any = None
    condition: str | None = None
    switch_cases: dict[str, str] = field(default_factory=dict)
    num_args: int = 1
    has_tail_next: bool = False
    invalid_tail_next: bool = False
    tail_next_lineno: int = 0
    split_parents: list[str] = field(default_factory=list)
    split_branches: list[str] = field(default_factory=list)
    matching_join: str | None = None
    is_inside_foreach: bool = False
    foreach_is_literal: bool = True
    #: ``self.next(self.x, num_parallel=N)``: the next step is a @parallel step.
    parallel_foreach: bool = False

    @property
    def parallel_step(self) -> bool:
        """A @parallel step: the target of a ``num_parallel`` split (Metaflow's name)."""
        return any(d.name == "parallel" for d in self.cell.decorators)

    @property
    def label(self) -> str:
        return self.cell.label


#: The artifact a ``num_parallel`` split iterates over (Metaflow's name for it).
PARALLEL_FOREACH_VAR = "_parallel_ubf_iter"


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _is_self_attr(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def parse_body(cell: StepCell) -> ast.Module:
    """Parse a step body; a syntax error names the cell and the line in the cell."""
    try:
        return ast.parse(cell.body)
    except SyntaxError as exc:
        line = cell.first_line + (exc.lineno or 1) - 1
        raise FlowSyntaxError(
            f"Step '{cell.name}' ({cell.label}), line {line}: {exc.msg}; fix the step's code."
        ) from None


def _read_transition(node: StepNode, tree: ast.Module) -> None:
    if not tree.body:
        return
    tail = tree.body[-1]
    if not (isinstance(tail, ast.Expr) and isinstance(tail.value, ast.Call)):
        return
    call = tail.value
    if not (_is_self_attr(call.func) and isinstance(call.func, ast.Attribute) and call.func.attr == "next"):
        return
    node.has_tail_next = True
    node.invalid_tail_next = True
    node.tail_next_lineno = node.cell.first_line + tail.lineno - 1
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if len(call.args) == 1 and isinstance(call.args[0], ast.Dict) and "condition" in keywords:
        cases: dict[str, str] = {}
        for key, value in zip(call.args[0].keys, call.args[0].values):
            if key is None or not _is_self_attr(value):
                return
            case = _literal(key)
            if not isinstance(case, (str, int, bool)):
                return
            cases[str(case) if not isinstance(case, str) else case] = value.attr  # type: ignore[attr-defined]
        condition = _literal(keywords["condition"])
        if cases and isinstance(condition, str):
            node.type = "split-switch"
            node.condition = condition
            node.switch_cases = cases
            node.out_funcs = list(cases.values())
            node.invalid_tail_next = False
        return
    if not all(_is_self_attr(a) for a in call.args):
        return
    node.out_funcs = [a.attr for a in call.args]  # type: ignore[attr-defined]
    if len(keywords) == 1 and "num_parallel" in keywords and len(node.out_funcs) == 1:
        # Metaflow's @parallel: N tasks of the next step, run locally as a foreach over range(N)
        node.type = "foreach"
        node.foreach_param = PARALLEL_FOREACH_VAR
        node.parallel_foreach = True
        node.invalid_tail_next = False
    elif len(keywords) == 1 and "foreach" in keywords:
        node.type = "foreach"
        value = _literal(keywords["foreach"])
        node.foreach_is_literal = isinstance(value, str)
        if len(node.out_funcs) == 1:
            node.foreach_param = value
            node.invalid_tail_next = False
    elif not keywords:
        if len(node.out_funcs) > 1:
            node.type = "split"
            node.invalid_tail_next = False
        elif len(node.out_funcs) == 1:
            node.type = "join" if node.num_args > 1 else "linear"
            node.invalid_tail_next = False


class FlowGraph:
    """Steps by name, plus a traversal order like Metaflow's ``sorted_nodes``."""

    def __init__(self, flow: FlowSource) -> None:
        self.name = flow.name
        self.flow = flow
        self.nodes: dict[str, StepNode] = {}
        for name, cell in flow.steps.items():
            node = StepNode(name=name, cell=cell, num_args=2 if cell.is_join else 1)
            _read_transition(node, parse_body(cell))
            if node.type is None and node.num_args > 1 and not node.has_tail_next:
                node.type = "join"
            self.nodes[name] = node
        if "end" in self.nodes:
            self.nodes["end"].type = "end"
        if "start" in self.nodes and self.nodes["start"].type in (None, "linear"):
            self.nodes["start"].type = "start"
        self._sorted: list[str] = []
        self._traverse()

    def _traverse(self) -> None:
        in_funcs: dict[str, set[str]] = {n: set() for n in self.nodes}

        def visit(node: StepNode, seen: list[str], split_parents: list[str], branches: list[str]) -> None:
            if node.name in self._sorted:
                self._sorted.remove(node.name)
            self._sorted.append(node.name)
            opens_split = False
            if node.type in ("split", "foreach"):
                node.split_parents, node.split_branches = split_parents, branches
                split_parents = split_parents + [node.name]
                opens_split = True
            elif node.type == "join":
                if split_parents:
                    self.nodes[split_parents[-1]].matching_join = node.name
                    node.split_parents, node.split_branches = split_parents, branches[:-1]
                    split_parents, branches = split_parents[:-1], branches[:-1]
            else:
                node.split_parents, node.split_branches = split_parents, branches
            for out in node.out_funcs:
                if out not in seen and out in self.nodes:
                    in_funcs[out].add(node.name)
                    visit(self.nodes[out], seen + [out], split_parents, branches + ([out] if opens_split else []))

        if "start" in self.nodes:
            visit(self.nodes["start"], [], [], [])
        for name, node in self.nodes.items():
            node.in_funcs = sorted(in_funcs[name])
        for node in self.nodes.values():
            foreaches = [p for p in node.split_parents if self.nodes[p].type == "foreach"]
            node.is_inside_foreach = any(self.nodes[f].matching_join != node.name for f in foreaches)

    def __getitem__(self, name: str) -> StepNode:
        return self.nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __iter__(self) -> Iterator[StepNode]:
        return iter(self.nodes[n] for n in self.sorted_nodes())

    def sorted_nodes(self) -> list[str]:
        """Reachable steps in traversal order, then any unreachable ones in cell order."""
        return self._sorted + [n for n in self.nodes if n not in self._sorted]

    def closing_split(self, join: str) -> str | None:
        """The split or foreach step whose branches ``join`` gathers."""
        for node in self.nodes.values():
            if node.matching_join == join:
                return node.name
        return None


def build_graph(flow: FlowSource) -> FlowGraph:
    """Parse every step cell of ``flow`` into a :class:`FlowGraph`.

    Raises :class:`FlowSyntaxError` for code that does not parse; structural
    problems are left to :func:`flowcell.lint.lint`.
    """
    return FlowGraph(flow)
