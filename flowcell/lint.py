"""Structural checks of a flow graph, the same as Metaflow's lint.

Each failure raises :class:`LintError` with one sentence that names the step and
its cell and says how to fix it.  Checks run in Metaflow's order, so the first
problem reported is the one Metaflow would report.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import LintError
from .graph import FlowGraph, StepNode, build_graph
from .model import FlowSource

RESERVED_STEP_NAMES = frozenset({"name", "next", "input", "index", "cmd", "foreach_stack", "merge_artifacts"})


def _fail(node: StepNode | None, message: str) -> LintError:
    if node is None:
        return LintError(message)
    return LintError(f"Step '{node.name}' ({node.label}) {message}", step=node.name, cell=node.label)


def check_reserved_words(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.name in RESERVED_STEP_NAMES:
            raise _fail(node, f"uses the reserved name '{node.name}': rename the step in its %%step line.")


def check_basic_steps(graph: FlowGraph) -> None:
    for required in ("start", "end"):
        if required not in graph:
            raise LintError(
                f"The flow has no '{required}' step: add a cell that begins with '%%step {required}'.",
                step=required,
            )


def check_step_names(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if re.search("[^a-z0-9_]", node.name) or node.name.startswith("_"):
            raise _fail(node, "has an invalid name: use lowercase letters, digits and underscores, "
                              "not starting with an underscore.")


def check_start_end_degree(graph: FlowGraph) -> None:
    start = graph["start"]
    if start.in_funcs:
        raise _fail(start, f"is the entry step but {', '.join(start.in_funcs)} transition(s) to it: "
                           "point those self.next() calls elsewhere.")
    if start.num_args > 1:
        raise _fail(start, "is the entry step and cannot be a join: remove '(inputs)' from its %%step line.")


def check_that_end_is_end(graph: FlowGraph) -> None:
    end = graph["end"]
    if end.has_tail_next or end.invalid_tail_next:
        raise _fail(end, "is the terminal step and must not call self.next(): remove that line.")
    if end.num_args > 1:
        raise _fail(end, "is the terminal step and cannot be a join: add a join step before it and "
                         "remove '(inputs)' from 'end'.")


def check_num_args(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.num_args == 2 and node.type not in ("join", "end", None):
            raise _fail(node, "is declared as a join (it takes inputs) but also splits: add a separate "
                              "step after the join for the split.")


def check_static_transitions(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.type != "end" and not node.has_tail_next:
            raise _fail(node, "does not end with a transition: add self.next(self.<next_step>) as its last line.")


def check_valid_transitions(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.type != "end" and node.has_tail_next and node.invalid_tail_next:
            raise _fail(node, f"has an invalid self.next() (cell line {node.tail_next_lineno}): use "
                              "self.next(self.a), self.next(self.a, self.b), self.next(self.a, foreach='items') "
                              "or self.next({'x': self.a, 'y': self.b}, condition='var') with literal keys.")


def check_foreach_literal(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.type == "foreach" and not node.foreach_is_literal:
            raise _fail(node, "passes foreach= an expression: give the artifact's name as a string literal, "
                              "e.g. foreach='items'.")


def check_unknown_transitions(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        unknown = [n for n in node.out_funcs if n not in graph]
        if unknown:
            raise _fail(node, f"transitions to an unknown step '{unknown[0]}': add a '%%step {unknown[0]}' "
                              "cell or fix the name in self.next().")


def check_for_acyclicity(graph: FlowGraph) -> None:
    def walk(node: StepNode, seen: list[str]) -> None:
        for out in node.out_funcs:
            if node.type == "split-switch" and out == node.name:
                continue  # a switch may loop back to itself (Metaflow's recursive switch); no other loop
            if out in seen:
                loop = " -> ".join(seen + [out])
                raise _fail(node, f"closes a loop ({loop}): flows are acyclic, so change that self.next().")
            walk(graph[out], seen + [out])

    for node in graph.nodes.values():
        walk(node, [node.name])


def check_for_orphans(graph: FlowGraph) -> None:
    seen = {"start"}
    stack = ["start"]
    while stack:
        for out in graph[stack.pop()].out_funcs:
            if out not in seen:
                seen.add(out)
                stack.append(out)
    for node in graph.nodes.values():
        if node.name not in seen:
            raise _fail(node, "is unreachable from 'start': add self.next(self."
                              f"{node.name}) to a step before it, or delete its cell.")


def check_split_join_balance(graph: FlowGraph) -> None:
    def parents(name: str) -> tuple[str, ...]:
        node = graph[name]
        return tuple(node.split_parents[:-1] if node.type == "join" else node.split_parents)

    def walk(node: StepNode, stack: list[tuple[str, list[str]]]) -> None:
        new_stack = stack
        if node.type in ("split", "foreach"):
            new_stack = stack + [(node.name, list(node.out_funcs))]
        elif node.type == "split-switch":
            for out in node.out_funcs:
                if out != node.name:  # a recursive switch's loop back to itself
                    walk(graph[out], stack)
            return
        elif node.type in ("linear", "start") and len(node.in_funcs) > 1 and stack:
            branches = {graph[n].split_branches[-1] for n in node.in_funcs if graph[n].split_branches}
            if len(branches) > 1:
                raise _fail(node, f"receives the branches {', '.join(sorted(branches))} but is not a join: "
                                  f"declare it as '%%step {node.name}(inputs)'.")
        elif node.type == "end":
            if stack:
                split, _ = stack[-1]
                raise _fail(node, f"is reached before the branches started at step '{split}' are joined: "
                                  "add a join step (%%step join(inputs)) before 'end'.")
        elif node.type == "join":
            if not stack:
                raise _fail(node, "is declared as a join but no split comes before it: remove '(inputs)' "
                                  "or add a split before it.")
            split, roots = stack[-1]
            new_stack = stack[:-1]
            resolved = {graph[n].split_branches[-1] for n in node.in_funcs if graph[n].split_branches}
            if resolved != set(roots):
                raise _fail(node, f"joins {len(resolved)} path(s) ({', '.join(sorted(resolved)) or 'none'}) "
                                  f"but the split at '{split}' opens {len(roots)} ({', '.join(roots)}): "
                                  "make every branch of that split lead to this join.")
            if len({parents(n) for n in node.in_funcs}) > 1:
                raise _fail(node, "joins steps from unrelated splits: give every split its own join.")
        for out in node.out_funcs:
            walk(graph[out], new_stack)

    walk(graph["start"], [])


def check_switch_splits(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.type == "split-switch" and len(node.out_funcs) < 2:
            raise _fail(node, f"is a conditional with {len(node.out_funcs)} case(s): give it at least two.")


def check_empty_foreaches(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.type == "foreach":
            joins = [n for n in node.out_funcs if graph[n].type == "join"]
            if joins:
                raise _fail(node, f"is a foreach followed directly by the join '{joins[0]}': add at least "
                                  "one step between them.")


def check_ambiguous_joins(graph: FlowGraph) -> None:
    for node in graph.nodes.values():
        if node.type == "join":
            switches = [p for p in node.in_funcs if graph[p].type == "split-switch"]
            if switches:
                raise _fail(node, f"is reached directly from the conditional step '{switches[0]}': add an "
                                  "unconditional step on that path before the join.")


#: Checks that need a sound graph (known steps, one start) come after the basic ones.
def check_duplicate_parameters(graph: FlowGraph) -> None:
    """Two ``Parameter``s of one name (Metaflow refuses the class): name both cells."""
    seen: dict[str, str] = {}
    for spec in graph.flow.parameters:
        for key in dict.fromkeys((spec.name, spec.var)):
            if key in seen:
                raise LintError(
                    f"Parameter {key!r} is defined twice, in {seen[key]} and in {spec.label}; keep one of them "
                    "(delete the other cell, or rename one parameter).", cell=spec.label)
            seen[key] = spec.label


CHECKS: list[Callable[[FlowGraph], None]] = [
    check_duplicate_parameters,
    check_reserved_words,
    check_basic_steps,
    check_step_names,
    check_start_end_degree,
    check_that_end_is_end,
    check_num_args,
    check_static_transitions,
    check_valid_transitions,
    check_foreach_literal,
    check_unknown_transitions,
    check_for_acyclicity,
    check_for_orphans,
    check_empty_foreaches,
    check_split_join_balance,
    check_switch_splits,
    check_ambiguous_joins,
]


def lint(graph: FlowGraph) -> None:
    """Raise :class:`LintError` for the first structural problem of ``graph``."""
    for check in CHECKS:
        check(graph)


def prepare(flow: FlowSource) -> FlowGraph:
    """Build and lint the graph; raises before anything is recorded."""
    graph = build_graph(flow)
    lint(graph)
    return graph
