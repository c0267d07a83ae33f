"""Issue 11.6: one sentence and nothing after it, in the syntax of where it is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest


def flowcell(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # stderr goes to a pipe, not a terminal: what a log file or CI sees.
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def nb(tmp_path: Path) -> Path:
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(c) for c in (
        "%%flow MsgFlow\nx = 1",
        "%%step start\nself.n = 2\nself.next(self.end)",
        "%%step end\nprint('ok')",
    )]
    path = tmp_path / "msg.ipynb"
    nbformat.write(book, str(path))
    return path


def test_a_cli_error_is_one_line_with_no_asyncio_noise(tmp_path: Path) -> None:
    for command in (["run", "missing.ipynb"], ["spin", "missing.ipynb", "start"]):
        out = flowcell(*command, cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr == "flowcell: Notebook 'missing.ipynb' does not exist.\n", out.stderr


def test_artifacts_from_a_shell_must_be_literals(nb: Path) -> None:
    out = flowcell("spin", str(nb), "start", "--artifacts", "{'n': int(3)}", cwd=nb.parent)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "is not a literal" in lines[0] and "--artifacts-module" in lines[0]
    assert "ast." not in out.stderr and "malformed" not in out.stderr


def test_resume_after_success_names_a_step_in_shell_syntax(nb: Path) -> None:
    assert flowcell("run", str(nb), "--quiet", cwd=nb.parent).returncode == 0
    out = flowcell("resume", str(nb), cwd=nb.parent)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"flowcell: Run MsgFlow/1 has no failed step to resume from; name the step to "
                                  f"resume from, e.g. flowcell resume {nb} end.")


def test_tracebacks_written_to_a_file_carry_no_colour_escapes(nb: Path) -> None:
    (nb.parent / "bad.py").write_text("ARTIFACTS = {'n': 0}\n")
    book = nbformat.read(str(nb), as_version=4)
    book.cells[1].source = "%%step start\nself.n = 1 / 0\nself.next(self.end)"
    nbformat.write(book, str(nb))
    out = flowcell("spin", str(nb), "start", cwd=nb.parent)
    assert out.returncode == 1
    assert "ZeroDivisionError" in out.stderr and "\x1b[" not in out.stderr
    run = flowcell("run", str(nb), cwd=nb.parent)
    assert "ZeroDivisionError" in run.stderr and "\x1b[" not in run.stderr
