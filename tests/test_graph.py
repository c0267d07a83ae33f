"""The graph read from cells, and lint: messages name step and cell; Metaflow agrees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_flow
from flowcell.errors import LintError
from flowcell.graph import build_graph
from flowcell.lint import lint

VALID = {
    "linear": "%%step start\nself.next(self.a)\n%%step a\nself.next(self.end)\n%%step end\npass",
    "branch": "%%step start\nself.next(self.a, self.b)\n%%step a\nself.next(self.j)\n%%step b\nself.next(self.j)\n"
              "%%step j(inputs)\nself.next(self.end)\n%%step end\npass",
    "nested_foreach": "%%step start\nself.xs=[1]\nself.next(self.o, foreach='xs')\n%%step o\nself.ys=[1]\n"
                      "self.next(self.i, foreach='ys')\n%%step i\nself.next(self.ij)\n%%step ij(inputs)\n"
                      "self.next(self.oj)\n%%step oj(inputs)\nself.next(self.end)\n%%step end\npass",
    "switch": "%%step start\nself.c='a'\nself.next({'a': self.a, 'b': self.b}, condition='c')\n%%step a\n"
              "self.next(self.end)\n%%step b\nself.next(self.end)\n%%step end\npass",
}

INVALID = {
    "no_end": ("%%step start\nself.next(self.a)\n%%step a\npass", "no 'end' step", None),
    "unknown": ("%%step start\nself.next(self.nowhere)\n%%step end\npass", "unknown step 'nowhere'", "start"),
    "missing_next": ("%%step start\nx = 1\n%%step end\npass", "does not end with a transition", "start"),
    "end_next": ("%%step start\nself.next(self.end)\n%%step end\nself.next(self.end)", "terminal step", "end"),
    "cycle": ("%%step start\nself.next(self.a)\n%%step a\nself.next(self.b)\n%%step b\nself.next(self.a)\n"
              "%%step end\npass", "loop", None),
    "orphan": ("%%step start\nself.next(self.end)\n%%step lost\nself.next(self.end)\n%%step end\npass",
               "unreachable", "lost"),
    "unjoined": ("%%step start\nself.next(self.a, self.b)\n%%step a\nself.next(self.end)\n%%step b\n"
                 "self.next(self.end)\n%%step end\npass", "are joined", "end"),
    "merge_without_join": ("%%step start\nself.next(self.a, self.b)\n%%step a\nself.next(self.m)\n%%step b\n"
                           "self.next(self.m)\n%%step m\nself.next(self.end)\n%%step end\npass", "not a join", "m"),
    "join_without_split": ("%%step start\nself.next(self.j)\n%%step j(inputs)\nself.next(self.end)\n%%step end\npass",
                           "no split comes before", "j"),
    "join_and_split": ("%%step start\nself.next(self.a, self.b)\n%%step a\nself.next(self.j)\n%%step b\n"
                       "self.next(self.j)\n%%step j(inputs)\nself.next(self.c, self.d)\n%%step c\nself.next(self.end)\n"
                       "%%step d\nself.next(self.end)\n%%step end\npass", "also splits", "j"),
    "foreach_expr": ("%%step start\nself.xs=[1]\nv='xs'\nself.next(self.a, foreach=v)\n%%step a\nself.next(self.j)\n"
                     "%%step j(inputs)\nself.next(self.end)\n%%step end\npass", "string literal", "start"),
    "empty_foreach": ("%%step start\nself.xs=[1]\nself.next(self.j, foreach='xs')\n%%step j(inputs)\n"
                      "self.next(self.end)\n%%step end\npass", "followed directly", "start"),
    "reserved": ("%%step start\nself.next(self.input)\n%%step input\nself.next(self.end)\n%%step end\npass",
                 "reserved", "input"),
    "switch_to_join": ("%%step start\nself.next(self.s, self.o)\n%%step s\nself.c='j'\n"
                       "self.next({'j': self.j, 'x': self.x}, condition='c')\n%%step x\nself.next(self.j)\n"
                       "%%step o\nself.next(self.j)\n%%step j(inputs)\nself.next(self.end)\n%%step end\npass",
                       "conditional", "j"),
}


def test_node_types_and_parents() -> None:
    g = build_graph(make_flow(VALID["nested_foreach"]))
    assert g["start"].type == "foreach" and g["o"].type == "foreach" and g["ij"].type == "join"
    assert g["start"].matching_join == "oj" and g["o"].matching_join == "ij"
    assert g["i"].split_parents == ["start", "o"]
    assert g.closing_split("ij") == "o"
    assert g.sorted_nodes()[0] == "start" and g.sorted_nodes()[-1] == "end"
    s = build_graph(make_flow(VALID["switch"]))
    assert s["start"].type == "split-switch" and s["start"].switch_cases == {"a": "a", "b": "b"}
    assert s["end"].in_funcs == ["a", "b"]
    b = build_graph(make_flow(VALID["branch"]))
    assert b["start"].type == "split" and b["j"].in_funcs == ["a", "b"]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_flows_pass(name: str) -> None:
    lint(build_graph(make_flow(VALID[name])))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_lint_errors_name_step_and_cell(name: str) -> None:
    text, fragment, step = INVALID[name]
    flow = make_flow(text)
    with pytest.raises(LintError) as info:
        lint(build_graph(flow))
    message = str(info.value)
    assert fragment in message
    if step is not None:
        assert f"Step '{step}'" in message and flow.steps[step].label in message
    assert message.count(". ") <= 1 and "\n" not in message, "one sentence"


def metaflow_source(flow_text: str) -> str:
    flow = make_flow(flow_text)
    lines = ["from metaflow import FlowSpec, step", "", "class F(FlowSpec):"]
    for step in flow.steps.values():
        args = "self, inputs" if step.join_arg else "self"
        lines += ["    @step", f"    def {step.name}({args}):"]
        lines += ["        " + line for line in step.body.splitlines()] + [""]
    lines += ["if __name__ == '__main__':", "    F()"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", ["branch", "nested_foreach", "switch", "unknown", "orphan", "unjoined",
                                  "join_without_split", "join_and_split", "cycle", "missing_next"])
def test_metaflow_agrees(name: str, tmp_path: Path) -> None:
    text = VALID.get(name) or INVALID[name][0]
    (tmp_path / "flow.py").write_text(metaflow_source(text))
    env = dict(os.environ, USERNAME="tester", HOME=str(tmp_path), METAFLOW_DEFAULT_DATASTORE="local")
    proc = subprocess.run([sys.executable, "flow.py", "check"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    ours_ok = True
    try:
        lint(build_graph(make_flow(text)))
    except LintError:
        ours_ok = False
    assert (proc.returncode == 0) == ours_ok, proc.stdout + proc.stderr
