"""Export to Metaflow and import back, checked against the real Metaflow 2.19 package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import ROOT
from flowcell.client import Flow
from flowcell.errors import FlowcellError, FlowSyntaxError
from flowcell.export import ExportError, export_source
from flowcell.importer import read_flow_file
from flowcell.model import flow_from_cells, read_notebook

FEATURES = [
    "%%flow FeatureFlow\nimport os\nfrom flowcell import Parameter, IncludeFile, current\n"
    "from flowcell.cards import Markdown, Table\n"
    "alpha = Parameter('alpha', default=0.5)\ndata = IncludeFile('data', default='data.txt')",
    "%%step start\nself.lines = self.data.splitlines()\nself.letters = ['a', 'b']\n"
    "self.next(self.outer, foreach='letters')",
    "%%step outer\nself.letter = self.input\nself.nums = [1, 2]\nself.next(self.inner, foreach='nums')",
    "%%step inner @retry(times=1, minutes_between_retries=0)\n"
    "if current.retry_count == 0 and self.input == 2 and self.letter == 'a':\n    raise RuntimeError('flaky')\n"
    "self.word = self.letter * self.input\nself.next(self.inner_join)",
    "%%step inner_join(inputs)\nself.words = [i.word for i in inputs]\n"
    "self.merge_artifacts(inputs, include=['letter'])\nself.next(self.outer_join)",
    "%%step outer_join(inputs)\nself.all = sorted(w for i in inputs for w in i.words)\nself.next(self.branch)",
    "%%step branch\nself.next(self.p, self.q)",
    "%%step p @catch(var='oops')\nself.pv = 1\nraise ValueError('caught it')\nself.next(self.pq)",
    "%%step q @card(type='default')\nself.qv = 2\ncurrent.card.append(Markdown('# q'))\n"
    "current.card.append(Table([[1, 2]], headers=['a', 'b']))\nself.next(self.pq)",
    "%%step pq(inputs)\nself.caught = 'caught it' in str(inputs.p.oops)\n"
    "self.merge_artifacts(inputs, exclude=['oops'])\nself.next(self.decide)",
    "%%step decide\nself.choice = 'big' if self.alpha > 0.3 else 'small'\n"
    "self.next({'big': self.big, 'small': self.small}, condition='choice')",
    "%%step big\nself.size = 'big'\nself.next(self.end)",
    "%%step small\nself.size = 'small'\nself.next(self.end)",
    "%%step end\nself.summary = (self.all, self.size, len(self.data.splitlines()), self.caught, self.pv, self.qv)",
]

METAFLOW_ENV = {"METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
                "USERNAME": "tester"}
READ_METAFLOW = """
import json, sys
from metaflow import Flow, namespace
namespace(None)
run = Flow(sys.argv[1]).latest_run
assert run.successful, run
end = run["end"].task
print(json.dumps({a.id: repr(a.data) for a in end if not a.id.startswith("_") and a.id != "name"}))
"""


def write_nb(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


def metaflow(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **METAFLOW_ENV, HOME=str(cwd))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def flowcell_end(flow: str, cwd: Path, target: Path) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "run", str(target), "--quiet"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    end = Flow(flow).latest_run["end"].task
    return {a.id: repr(a.data) for a in end.artifacts}


def metaflow_end(flow_file: Path, flow: str, cwd: Path) -> dict[str, str]:
    proc = metaflow([str(flow_file), "--quiet", "run"], cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = metaflow(["-c", READ_METAFLOW, flow], cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("example", ["quickstart", "model_selection", "features"])
def test_export_runs_the_same_under_metaflow(example: str, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("one\ntwo\nthree\n")
    if example == "features":
        nb = write_nb(tmp_path / "features.ipynb", FEATURES)
    else:
        nb = ROOT / "notebooks" / f"{example}.ipynb"
    flow = read_notebook(nb)
    flow_file = tmp_path / "flow.py"
    flow_file.write_text(export_source(flow))
    ours = flowcell_end(flow.name, tmp_path, nb)
    theirs = metaflow_end(flow_file, flow.name, tmp_path)
    assert ours == theirs
    if example == "features":
        assert "'big'" in ours["summary"] and "True" in ours["summary"]


def test_export_is_idiomatic_and_stable(tmp_path: Path) -> None:
    nb = write_nb(tmp_path / "f.ipynb", FEATURES)
    flow = read_notebook(nb)
    text = export_source(flow)
    assert text == export_source(read_notebook(nb)), "byte-identical on re-export"
    assert text.startswith("from metaflow import FlowSpec, ")
    assert "from flowcell" not in text and "from metaflow import" in text
    assert "class FeatureFlow(FlowSpec):\n    alpha = Parameter('alpha', default=0.5)" in text
    assert "    @retry(times=1, minutes_between_retries=0)\n    @step\n    def inner(self):" in text
    assert "    def pq(self, inputs):" in text
    assert text.rstrip().endswith('if __name__ == "__main__":\n    FeatureFlow()')


def test_markdown_becomes_docstring_and_passthrough_decorators_are_kept() -> None:
    flow = read_notebook(ROOT / "notebooks" / "model_selection.ipynb")
    text = export_source(flow)
    assert '"""Make the data and the grid of learning rates."""' in text
    assert "@resources(memory=2000, cpu=1)" in text


def test_export_refuses_notebook_globals_and_unknown_decorators() -> None:
    flow = flow_from_cells([("cell 1", "%%flow G"), ("cell 2", "%%step start\nself.x = secret\nself.next(self.end)"),
                            ("cell 3", "%%step end\npass")])
    with pytest.raises(ExportError, match=r"'start' \(cell 2, line 2\) reads 'secret'"):
        export_source(flow)
    flow = flow_from_cells([("cell 1", "%%flow G"), ("cell 2", "%%step start @gpu_magic\nself.next(self.end)"),
                            ("cell 3", "%%step end\npass")])
    with pytest.raises(ExportError, match="@gpu_magic"):
        export_source(flow)


def test_metaflow_spin_of_the_export(tmp_path: Path) -> None:
    flow_file = tmp_path / "flow.py"
    flow_file.write_text(export_source(read_notebook(ROOT / "notebooks" / "quickstart.ipynb")))
    assert metaflow([str(flow_file), "--quiet", "run"], tmp_path).returncode == 0
    proc = metaflow([str(flow_file), "--quiet", "spin", "end"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_then_export_round_trips_and_runs(tmp_path: Path) -> None:
    original = tmp_path / "orig.py"
    original.write_text(export_source(read_notebook(ROOT / "notebooks" / "quickstart.ipynb")))
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "import", str(original), "-o", "nb.ipynb"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    nb = nbformat.read(tmp_path / "nb.ipynb", as_version=4)
    assert nb.cells[1].source.startswith("%%flow QuickstartFlow")
    assert any(c.cell_type == "markdown" and "Overall statistics" in c.source for c in nb.cells)
    assert export_source(read_notebook(tmp_path / "nb.ipynb")) == original.read_text()


TUTORIAL = '''"""A tutorial-style flow that reads data beside itself."""
import os

from metaflow import FlowSpec, Parameter, step


def data_path():
    return os.path.join(os.path.dirname(__file__), "movies.csv")


class MovieFlow(FlowSpec):
    """Count movies."""

    genre = Parameter("genre", default="Drama")

    @step
    def start(self):
        """Read the file."""
        with open(data_path()) as fh:
            self.rows = [line.strip().split(",") for line in fh if line.strip()]
        self.next(self.end)

    @step
    def end(self):
        self.count = sum(1 for title, g in self.rows if g == self.genre)
        print("count", self.count)


if __name__ == "__main__":
    MovieFlow()
'''


def test_run_a_metaflow_file_directly_with_its_own_file(tmp_path: Path) -> None:
    data = tmp_path / "flows"
    data.mkdir()
    (data / "movies.csv").write_text("Heat,Drama\nAlien,Sci-Fi\nBrazil,Drama\n")
    (data / "movie_flow.py").write_text(TUTORIAL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "run", str(data / "movie_flow.py"), "--genre",
                           "Drama", "--quiet"], cwd=elsewhere, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    os.chdir(elsewhere)
    assert Flow("MovieFlow").latest_run.data.count == 2
    from flowcell import Runner

    with Runner(data / "movie_flow.py").run(genre="Sci-Fi") as running:
        assert running.run.data.count == 1


def test_traceback_of_an_imported_file_uses_its_lines(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text("Heat,Drama\n")
    (tmp_path / "bad_flow.py").write_text(TUTORIAL.replace('print("count", self.count)', "raise ValueError('boom')"))
    from flowcell import Runner

    with Runner(tmp_path / "bad_flow.py").run() as running:
        assert not running.successful
        text = running.run["end"].task.traceback
    line = TUTORIAL.splitlines().index('        print("count", self.count)') + 1
    assert f'bad_flow.py", line {line}' in text


@pytest.mark.parametrize("source, message", [
    ("x = 1\n", "no class deriving from FlowSpec"),
    ("from metaflow import FlowSpec, step\nclass A(FlowSpec):\n    @step\n    def start(self):\n        pass\n"
     "class B(FlowSpec):\n    @step\n    def start(self):\n        pass\n", "2 FlowSpec classes"),
    ("from metaflow import FlowSpec, step\nclass A(FlowSpec):\n    for n in ['a']:\n        pass\n",
     "steps built dynamically"),
    ("def broken(:\n", "line 1"),
])
def test_import_errors(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "f.py"
    path.write_text(source)
    with pytest.raises(FlowSyntaxError, match=message):
        read_flow_file(path)


def test_spin_with_inputs_from_a_metaflow_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow_file = tmp_path / "flow.py"
    nb = ROOT / "notebooks" / "quickstart.ipynb"
    flow_file.write_text(export_source(read_notebook(nb)))
    assert metaflow([str(flow_file), "--quiet", "run", "--alpha", "0.9", "--run-id-file", "mf_run"],
                    tmp_path).returncode == 0
    mf_run = f"QuickstartFlow/{(tmp_path / 'mf_run').read_text().strip()}"
    for key, value in METAFLOW_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    from flowcell import Runner

    with Runner(nb).spin("end", from_metaflow=mf_run) as spin:
        assert spin.successful, spin.exception
        assert spin.inputs_from.startswith(f"Metaflow task {mf_run}/end/")
        assert spin.task["alpha"].data == 0.9
        assert spin.task["best"].data in ("a", "b", "c")
    with Runner(nb).spin("score_group", from_metaflow=mf_run) as spin:
        assert spin.task["group"].data in ("a", "b", "c")
    with pytest.raises(FlowcellError, match="FLOW/RUN"):
        Runner(nb).spin("end", from_metaflow="QuickstartFlow")
