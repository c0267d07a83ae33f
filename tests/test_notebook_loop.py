"""The notebook loop a user meets (issue 11): edit a foreach step, spin its join; cells that change."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient


def run_notebook(cells: list[str], cwd: Path, allow_errors: bool = False) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] == "error":
            parts.append(out["ename"] + ": " + out["evalue"])
        else:
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


RIDGE = [
    "%load_ext flowcell",
    "%%flow RidgeFlow\nimport math",
    "%%step start\nself.alphas = [0.1, 1.0, 10.0]\nself.next(self.train, foreach='alphas')",
    "%%step train\nself.alpha = self.input\nself.score = -abs(self.alpha - 1.0)\nself.next(self.pick)",
    "%%step pick(inputs)\nself.candidates = sorted(i.alpha for i in inputs)\nprint('candidates', self.candidates)\n"
    "self.best = max(inputs, key=lambda i: i.score).alpha\nself.next(self.end)",
    "%%step end\npass",
    "run = %run_flow",
    # Edit train: autospin runs every split of the foreach.
    "%%step train\nself.alpha = self.input\nself.score = -abs(self.alpha - 10.0)\nself.next(self.pick)",
    "%spin pick",
    "from flowcell import Flow\nprint('best in run', Flow('RidgeFlow').latest_run.data.best)",
]


def test_edit_a_foreach_step_then_spin_its_join(tmp_path: Path) -> None:
    nb = run_notebook(RIDGE, tmp_path)
    edited, spun, check = nb.cells[7], nb.cells[8], nb.cells[9]
    assert "3 splits, inputs from run RidgeFlow/1" in text(edited), text(edited)
    out = text(spun)
    assert "candidates [0.1, 1.0, 10.0]" in out, out
    assert re.search(r"3 inputs from spin spin-\d+ of train", out), out
    # The spin's result is shown once: no `<Spin of ...>` echoed as the cell's value.
    assert not any(o["output_type"] == "execute_result" for o in spun.outputs)
    assert "<Spin of" not in json.dumps(spun.outputs)
    assert "best in run 1.0" in text(check)
