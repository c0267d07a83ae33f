"""``%flow_status``, ``flowcell status`` and the Lab state: which steps are stale, and why (issue 14.3).

A notebook run with nbclient, cells edited and run again, the magic's table; the CLI on a
notebook file edited between a run and the question (``--json``, ``--diff``, errors); the
kernel's state for the JupyterLab badges after a ``%%flow`` cell is edited in place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

FLOWCELL = str(Path(sys.executable).with_name("flowcell"))

FLOW = ("%%flow StatusFlow\nfrom flowcell import Parameter\nalpha = Parameter('alpha', default=0.5)\n\n"
        "def clean(x):\n    return x.strip()\n")
STEPS = [
    "%%step start\nself.raw = [' a ', 'b ']\nself.next(self.load)",
    "%%step load\nself.rows = [clean(r) for r in self.raw]\nself.next(self.train)",
    "%%step train\nself.score = self.alpha * len(self.rows)\nself.next(self.end)",
    "%%step end\nprint(self.score)",
]


def _outputs(cell: Any) -> dict[str, str]:
    """A cell's output as {mime type: text}, errors as {"error": "Name: value"}."""
    out: dict[str, str] = {}
    for o in cell.outputs:
        if o["output_type"] == "error":
            out["error"] = f"{o['ename']}: {o['evalue']}"
        elif o["output_type"] == "stream":
            out["stream"] = out.get("stream", "") + o["text"]
        else:
            out.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in o["data"].items()})
    return out


def _row(table: str, step: str) -> list[str]:
    """The reasons a text table gives for ``step`` (continuation lines included)."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [step])
    first = lines[start].split(None, 2)
    reasons = [first[2].removeprefix("date ").strip()] if len(first) > 2 and first[1] == "stale" else []
    indent = lines[start].index(first[1]) + len("up to date") + 2
    for line in lines[start + 1:]:
        if line[:indent].strip():
            break
        reasons.append(line.strip())
    return reasons


def test_flow_status_in_a_notebook_after_a_run_and_an_edit(tmp_path: Path) -> None:
    cells = ["%load_ext flowcell\n%flowcell autospin off", FLOW, *STEPS,
             "run = %run_flow --alpha 0.3",
             "%flow_status",
             "%%step train\nself.score = self.alpha * len(self.rows) * 2\nself.next(self.end)",
             "%flow_status",
             "%flow_status --diff train",
             "%flow_graph",
             "%flow_status 9",
             "%flow_status --alpha 0.3"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    before, after, diff, graph, bad, given = (_outputs(nb.cells[i]) for i in (7, 9, 10, 11, 12, 13))

    table = before["text/plain"]
    assert table.startswith("StatusFlow against run 1 (completed): 2 of 4 steps stale."), table
    # Only the step that read alpha is stale for it (and the step after it).
    assert _row(table, "train") == ["parameter alpha: 0.3 in run 1, default now 0.5"]
    assert _row(table, "end") == ["upstream step `train` is stale"]
    assert _row(table, "load") == [] and "load   up to date" in table
    assert "fc-status-stale' data-step='train'" in before["text/html"]
    assert "fc-status-current' data-step='load'" in before["text/html"]

    # The cell edited and run again: its change comes first, most specific.
    assert _row(after["text/plain"], "train") == ["cell changed (+1 \u22121 line)",
                                                  "parameter alpha: 0.3 in run 1, default now 0.5"]
    assert after["text/plain"].splitlines()[-1] == "See what changed in a cell: %flow_status --diff STEP"
    assert "-self.score = self.alpha * len(self.rows)\n+self.score = self.alpha * len(self.rows) * 2" \
        in diff["text/markdown"]
    assert diff["text/markdown"].startswith("```diff\n--- StatusFlow/1/train (run 1)\n")

    svg = graph["image/svg+xml"]
    assert svg.count("fc-step fc-stale") == 2 and "data-step='train'" in svg
    # Asked about a run given alpha 0.3 again, only the edit is a reason.
    assert _row(given["text/plain"], "train") == ["cell changed (+1 \u22121 line)"]
    # IPython prints a UsageError as one line, without a traceback.
    assert bad["stream"].strip() == ("UsageError: Run StatusFlow/9 does not exist; without a run id, status "
                                     "compares with the latest run.")


# -- the kernel's state for the JupyterLab badges, with %%flow cells edited in place --------------


@pytest.fixture
def magics(runtime: Any) -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    from flowcell.magics import FlowcellMagics

    shell = InteractiveShell.instance()
    m = FlowcellMagics(shell=shell)
    m._runtime = runtime  # the session's warm pool (not closed here)
    shell.register_magics(m)
    m.flowcell("autospin off")
    yield m
    m.bridge.close()


def test_lab_state_says_which_steps_are_stale_after_module_code_and_a_default_change(magics: Any) -> None:
    from test_labcomm import _open

    def cell(cell_id: str, kind: str, source: str) -> None:
        magics._cell_id = cell_id  # as JupyterLab sends it: running a cell again replaces what it registered
        line, _, body = source.partition("\n")
        getattr(magics, kind)(line.split(None, 1)[1], body)

    cell("flow", "flow", FLOW)
    for i, source in enumerate(STEPS):
        cell(f"step-{i}", "step", source)
    magics.run_flow("")
    front_end = _open(magics.bridge, "tab-1")
    assert front_end.sent[-1]["stale"] == {"run": "1", "steps": {}}

    # A parameter's default is a value the steps read, not module code: only train and what follows.
    sent = len(front_end.sent)
    cell("flow", "flow", FLOW.replace("default=0.5", "default=0.7"))
    assert len(front_end.sent) == sent + 1  # running a %%flow cell pushes the new state
    state = front_end.sent[-1]["stale"]
    assert state["steps"] == {"train": ["parameter alpha: 0.5 in run 1, default now 0.7"],
                              "end": ["upstream step `train` is stale"]}
    # The Flow panel's graph (laid out in the front end) carries the same marks.
    marks = {n["id"]: n.get("stale") for n in front_end.sent[-1]["graph"]["nodes"]}
    assert marks["train"] == state["steps"]["train"] and marks["start"] is None

    cell("flow", "flow", FLOW.replace("x.strip()", "x.strip().lower()"))
    cell("step-1", "step", STEPS[1].replace("self.rows =", "# clean every row\nself.rows ="))  # a comment only
    steps = front_end.sent[-1]["stale"]["steps"]
    assert steps["start"] == ["module code changed (`def clean`)"]
    assert steps["load"] == ["module code changed (`def clean`)", "upstream step `start` is stale"]
    report = magics.flow_status("")
    assert report.stale == ["start", "load", "train", "end"]
    assert "data-step='load'" in report._repr_html_()


# -- flowcell status from a shell ---------------------------------------------------------


def _write(path: Path, flow: str = FLOW, steps: list[str] = STEPS) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [flow, *steps]]
    nbformat.write(nb, str(path))


def _flowcell(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWCELL, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env or dict(os.environ))


def test_cli_status_json_diff_and_errors(tmp_path: Path) -> None:
    nb = tmp_path / "status.ipynb"
    _write(nb)
    assert _flowcell("status", "status.ipynb", cwd=tmp_path).stderr.strip() == (
        "flowcell: Flow StatusFlow has no run in the current namespace yet; run it first, then status compares "
        "the notebook with that run.")
    ran = _flowcell("run", "status.ipynb", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    same = _flowcell("status", "status.ipynb", "--json", "--check", cwd=tmp_path)
    assert same.returncode == 0 and json.loads(same.stdout)["stale"] == []

    # Layout and comments do not count; a decorator, a module definition and a default do.
    steps = list(STEPS)
    steps[0] = "%%step start\n# the raw rows\nself.raw = [ ' a ',  'b ' ]\n\nself.next(self.load)"
    steps[2] = ("%%step train @retry(times=2)\nn = len(self.rows)\nself.score = self.alpha * n\n"
                "self.next(self.end)")
    _write(nb, FLOW.replace("default=0.5", "default=0.9").replace("x.strip()", "x.strip().title()"), steps)
    shown = _flowcell("status", "status.ipynb", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert _flowcell("status", "status.ipynb", "--check", cwd=tmp_path).returncode == 1
    report = json.loads(shown.stdout)
    assert report["run"] == "StatusFlow/1" and report["stale"] == ["start", "load", "train", "end"]
    reasons = {s["step"]: [(r["kind"], r["message"]) for r in s["reasons"]] for s in report["steps"]}
    assert reasons["start"] == [("module", "module code changed (`def clean`)")]
    assert reasons["train"] == [
        ("cell", "cell changed (+2 \u22121 lines)"),
        ("module", "module code changed (`def clean`)"),
        ("decorators", "decorators changed (none \u2192 @retry(times=2))"),
        ("parameter", "parameter alpha: 0.5 in run 1, default now 0.9"),
        ("upstream", "upstream step `load` is stale"),
    ]
    cell_reason = report["steps"][2]["reasons"][0]
    assert (cell_reason["added"], cell_reason["removed"]) == (2, 1)

    # Asked about a run given the run's own value, the parameter is no reason; given another, it is.
    given = json.loads(_flowcell("status", "status.ipynb", "--alpha", "0.5", "--json", cwd=tmp_path).stdout)
    assert [r["kind"] for r in given["steps"][2]["reasons"]] == ["cell", "module", "decorators", "upstream"]
    other = json.loads(_flowcell("status", "status.ipynb", "--alpha=0.25", "--json", cwd=tmp_path).stdout)
    assert other["steps"][2]["reasons"][3]["message"] == "parameter alpha: 0.5 in run 1, 0.25 given now"

    text = _flowcell("status", "status.ipynb", cwd=tmp_path).stdout
    assert "  train  stale       cell changed (+2 \u22121 lines)\n" in text
    assert text.rstrip().endswith("See what changed in a cell: flowcell status status.ipynb --diff STEP")

    diff = _flowcell("status", "status.ipynb", "--diff", "train", cwd=tmp_path)
    assert diff.returncode == 0
    assert diff.stdout.splitlines()[:4] == ["--- StatusFlow/1/train (run 1)", "+++ train (cell 4)",
                                           "@@ -1,3 +1,4 @@", "-%%step train"]
    assert "+n = len(self.rows)" in diff.stdout
    # The module code every step runs changed too: its diff follows the cell's.
    assert "+++ %%flow module code (notebook)" in diff.stdout
    assert "-    return x.strip()\n+    return x.strip().title()" in diff.stdout
    as_json = json.loads(_flowcell("status", "status.ipynb", "--diff", "start", "--json", cwd=tmp_path).stdout)
    assert as_json["step"] == "start" and "+# the raw rows" in as_json["diff"]

    for args, sentence in [
        (["--run", "7"], "Run StatusFlow/7 does not exist; without a run id, status compares with the latest run."),
        (["--run", "OtherFlow/1"], "Run 'OtherFlow/1' belongs to flow OtherFlow, not to this notebook's flow "
                                   "StatusFlow."),
        (["--diff", "nope"], "Flow StatusFlow has no step 'nope'; its steps are start, load, train, end."),
        (["--beta", "1"], "Unknown parameter --beta for flow StatusFlow; its parameters are: --alpha."),
        (["--alpha", "x"], "--alpha expects a value of type float, got 'x'."),
    ]:
        bad = _flowcell("status", "status.ipynb", *args, cwd=tmp_path)
        assert (bad.returncode, bad.stderr.strip()) == (2, f"flowcell: {sentence}"), bad.stderr
    missing = _flowcell("status", "missing.ipynb", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (2, "flowcell: Notebook 'missing.ipynb' does not exist.")


def test_cli_status_names_a_package_whose_version_changed(tmp_path: Path) -> None:
    """A distribution a step imported, upgraded after the run: ``fcdemo 1.0 → 2.0``."""
    site = tmp_path / "site"
    (site / "fcdemo").mkdir(parents=True)
    (site / "fcdemo" / "__init__.py").write_text("VALUE = 1\n")

    def install(version: str) -> None:
        for old in site.glob("fcdemo-*.dist-info"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        info = site / f"fcdemo-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fcdemo\nVersion: {version}\n")
        (info / "top_level.txt").write_text("fcdemo\n")
        (info / "RECORD").write_text(f"fcdemo/__init__.py,,\nfcdemo-{version}.dist-info/METADATA,,\n")

    install("1.0")
    env = dict(os.environ, PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"))
    steps = list(STEPS)
    steps[1] = "%%step load\nimport fcdemo\nself.rows = [clean(r) * fcdemo.VALUE for r in self.raw]\nself.next(self.train)"
    _write(tmp_path / "pkg.ipynb", steps=steps)
    ran = _flowcell("run", "pkg.ipynb", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert _flowcell("status", "pkg.ipynb", cwd=tmp_path, env=env).returncode == 0
    install("2.0")
    report = json.loads(_flowcell("status", "pkg.ipynb", "--json", cwd=tmp_path, env=env).stdout)
    reasons = {s["step"]: [r["message"] for r in s["reasons"]] for s in report["steps"]}
    assert reasons["load"] == ["fcdemo 1.0 \u2192 2.0"]
    assert reasons["start"] == [] and reasons["train"] == ["upstream step `load` is stale"]
