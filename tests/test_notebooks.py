"""Notebooks executed with nbclient on a real kernel, and the same notebooks from the CLI."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from flowcell.client import Flow

EXAMPLES = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(nb: Any, cwd: Path, allow_errors: bool = False) -> Any:
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def outputs_text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("display_data", "execute_result", "update_display_data"):
            parts.append(json.dumps(out.get("data", {})))
        elif out["output_type"] == "error":
            parts.append("\n".join(out["traceback"]) + out["ename"] + out["evalue"])
    return "".join(parts)


def notebook(*cells: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_notebook_runs_in_jupyter(path: Path, tmp_path: Path) -> None:
    nb = execute(nbformat.read(path, as_version=4), tmp_path)
    text = "".join(outputs_text(c) for c in nb.cells)
    assert "completed" in text and "Error" not in text
    run_cells = [c for c in nb.cells if c.cell_type == "code" and "%run_flow" in c.source]
    assert run_cells and "flowcell-progress" in outputs_text(run_cells[0])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_notebook_runs_from_cli(path: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowcell.cli", "run", str(path), "--tag", "cli", "--max-workers", "4",
         "--run-id-file", "run.txt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run.txt").read_text().strip() == "1"
    assert "completed" in proc.stderr  # flowcell's own messages go to stderr, task output to stdout


def test_quickstart_results_from_client(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flowcell.cli", "run", str(ROOT / "notebooks" / "quickstart.ipynb"),
         "--alpha", "0.3", "--tag", "x"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[QuickstartFlow/1/score_group/" in proc.stdout  # task output, prefixed, live (on stdout)
    assert "[QuickstartFlow/1/score_group/" not in proc.stderr  # flowcell's own messages only
    run = Flow("QuickstartFlow").latest_run
    assert run.successful and "x" in run.tags
    assert set(run.data.scores) == {"a", "b", "c"}
    assert run.data.best in run.data.scores
    assert run["start"].task.data.alpha == 0.3
    assert len(run["score_group"].tasks()) == 3


def test_notebook_variables_are_invisible_and_rich_output_reaches_cell(tmp_path: Path) -> None:
    nb = notebook(
        "%load_ext flowcell",
        "secret = 42",
        "%%flow VisFlow\nfrom IPython.display import display, HTML",
        "%%step start\nself.saw_secret = 'secret' in globals()\n"
        "display(HTML('<b>rich output from a task</b>'))\nprint('plain output')\nself.next(self.end)",
        "%%step end\npass",
        "run = %run_flow\nprint('saw secret:', run.data.saw_secret if run.data else None, "
        "run['start'].task.data.saw_secret)",
    )
    execute(nb, tmp_path)
    last = outputs_text(nb.cells[-1])
    assert "rich output from a task" in last
    assert "plain output" in last
    assert "saw secret: False False" in last


def test_failing_step_shows_child_traceback_in_cell(tmp_path: Path) -> None:
    nb = notebook(
        "%load_ext flowcell",
        "%flow FailFlow",
        "%%step start\nself.ok = 1\nself.next(self.end)",
        "%%step end\nx = 1\nraise ValueError('broken end step')",
        "%run_flow",
        "from flowcell import Flow\nr = Flow('FailFlow').latest_run\nprint(r.finished, r.successful, r['start'].task.data.ok)",
    )
    execute(nb, tmp_path, allow_errors=True)
    err = [o for o in nb.cells[4].outputs if o["output_type"] == "error"]
    assert err, outputs_text(nb.cells[4])
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err[0]["traceback"]))
    assert "broken end step" in text and "ValueError" in text
    # The failing line is shown with the step cell's own number (line 3 of the cell).
    assert "----> 3 raise ValueError('broken end step')" in text
    assert "step end" in text
    assert "True False 1" in outputs_text(nb.cells[5])


def test_lint_error_in_notebook_is_one_clear_message(tmp_path: Path) -> None:
    nb = notebook(
        "%load_ext flowcell",
        "%%step start\nself.next(self.nowhere)",
        "%%step end\npass",
        "%run_flow",
    )
    execute(nb, tmp_path, allow_errors=True)
    text = outputs_text(nb.cells[3])
    assert "UsageError" in text and "nowhere" in text and "start" in text
    assert "Traceback" not in text, "a usage error shows no Python traceback"


def test_resume_magic_after_fixing_the_failed_cell(tmp_path: Path) -> None:
    nb = notebook(
        "%load_ext flowcell\n%flowcell autospin off",
        "%%flow ResumeFlow\nimport os",
        "%%step start\nself.expensive = 42\nself.next(self.end)",
        "%%step end\nraise RuntimeError('bug in end')",
        "%run_flow",
        "%%step end\nself.answer = self.expensive",
        "run = %resume\nprint(run.pathspec, run.successful, run.origin_pathspec, run.data.answer)",
        "%tag add --run-id 2 fixed\n%tag list --run-id 2 --hide-system-tags",
    )
    execute(nb, tmp_path, allow_errors=True)
    assert "bug in end" in outputs_text(nb.cells[4])
    assert "ResumeFlow/2 True ResumeFlow/1 42" in outputs_text(nb.cells[6])
    assert "user tags: fixed" in outputs_text(nb.cells[7])
