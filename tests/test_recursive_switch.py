"""Metaflow's recursive switch (issue 13, cause 8): a conditional step that loops back to itself.

Lint allows exactly that loop (as Metaflow's does) and still refuses every other; the
flow runs (alone and inside a foreach), spins, draws, exports to a flow Metaflow runs the
same, and imports back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import make_flow
from flowcell.client import Run
from flowcell.errors import LintError
from flowcell.export import export_source
from flowcell.graph import build_graph
from flowcell.importer import notebook_from_flow, read_flow_file
from flowcell.lint import lint
from flowcell.runner import Runner
from flowcell.widgets.graphmodel import flow_graph_svg, graph_model

FLOW = '''
from metaflow import FlowSpec, step


class LoopFlow(FlowSpec):
    @step
    def start(self):
        self.items = [2, 3]
        self.next(self.begin, foreach="items")

    @step
    def begin(self):
        self.target, self.count = self.input, 0
        self.next(self.loop)

    @step
    def loop(self):
        self.count += 1
        self.again = "yes" if self.count < self.target else "no"
        self.next({"yes": self.loop, "no": self.done}, condition="again")

    @step
    def done(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.counts = sorted(i.count for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LoopFlow()
'''


@pytest.mark.parametrize("cells, why", [
    ("%%step start\nself.next(self.a)\n%%step a\nself.next(self.b)\n%%step b\nself.next(self.a)\n%%step end\npass",
     "a loop through plain steps"),
    ("%%step start\nself.next(self.a)\n%%step a\nself.next(self.s)\n%%step s\nself.c = 'x'\n"
     "self.next({'x': self.a, 'y': self.end}, condition='c')\n%%step end\npass",
     "a switch looping back to an earlier step (Metaflow refuses it too)"),
])
def test_lint_still_refuses_other_loops(cells: str, why: str) -> None:
    with pytest.raises(LintError, match="closes a loop"):
        lint(build_graph(make_flow(cells)))


def test_recursive_switch_runs_spins_draws_exports_and_imports(tmp_path: Path) -> None:
    path = tmp_path / "loop_flow.py"
    path.write_text(textwrap.dedent(FLOW))
    with Runner(path).run() as running:
        run = Run(running.run.pathspec, _check_namespace=False)
    assert run.successful and run["join"].task.data.counts == [2, 3]
    assert len(list(run["loop"])) == 5, "one task per turn of each loop"
    with Runner(path).spin("loop") as spin:  # the latest turn's inputs
        assert spin.successful and spin.task["again"].data in ("yes", "no")

    graph = build_graph(read_flow_file(path))
    model = graph_model(graph)
    assert {"source": "loop", "target": "loop"} in [{k: e[k] for k in ("source", "target")} for e in model["edges"]]
    assert "<svg" in flow_graph_svg(graph)

    exported = tmp_path / "exported.py"
    exported.write_text(export_source(read_flow_file(path)))
    notebook = notebook_from_flow(read_flow_file(exported))
    assert "%%step loop" in "".join(c.source for c in notebook.cells)  # type: ignore[attr-defined]
    nbformat.write(notebook, str(tmp_path / "imported.ipynb"))  # type: ignore[arg-type]
    assert lint(build_graph(read_flow_file(exported))) is not False

    env = dict(os.environ, METAFLOW_USER="tester", USERNAME="tester", HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, str(exported), "--quiet", "run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    read = ("from metaflow import Flow, namespace\nnamespace(None)\nimport json\n"
            "print(json.dumps(Flow('LoopFlow').latest_run['join'].task.data.counts))")
    out = subprocess.run([sys.executable, "-c", read], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, 3], out.stderr


def test_recursive_switch_as_notebook_cells(runtime: Any) -> None:
    from conftest import run

    result, r, _ = run(runtime, """
%%step start
self.n = 0
self.next(self.step_up)
%%step step_up
self.n += 1
self.more = str(self.n < 4)
self.next({"True": self.step_up, "False": self.end}, condition="more")
%%step end
pass
""", name="NotebookLoop")
    assert result.status == "completed", result.failures
    assert r["end"].task.data.n == 4


def test_resume_of_a_recursive_switch_clones_the_turns_that_succeeded(tmp_path: Path) -> None:
    """As Metaflow: resuming at the loop step clones its turns before the failed one, runs the rest."""
    (tmp_path / "fail_once").write_text("")
    path = tmp_path / "turns.py"
    path.write_text(textwrap.dedent('''
        import os
        from metaflow import FlowSpec, step

        class TurnsFlow(FlowSpec):
            @step
            def start(self):
                self.count = 0
                self.next(self.loop)

            @step
            def loop(self):
                self.count += 1
                if self.count == 3 and os.path.exists("fail_once"):
                    os.remove("fail_once")
                    raise RuntimeError("third turn fails once")
                self.again = "yes" if self.count < 5 else "no"
                self.next({"yes": self.loop, "no": self.end}, condition="again")

            @step
            def end(self):
                pass
    '''))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with Runner(path).run() as running:
            assert not running.run.successful
        with Runner(path).resume() as resumed:
            run = Run(resumed.run.pathspec, _check_namespace=False)
    finally:
        os.chdir(cwd)
    assert run.successful and run["end"].task.data.count == 5
    turns = sorted(run["loop"], key=lambda t: t.data.count)
    assert [t.origin_pathspec is not None for t in turns] == [True, True, False, False, False]
