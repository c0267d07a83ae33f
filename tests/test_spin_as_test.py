"""``--as-test``: a spin becomes a pytest file on frozen inputs, which the suite then runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

from flowcell.testing import MANIFEST

CELLS = [
    "%%flow ScaleFlow\nimport numpy as np\nfrom flowcell import Parameter\nk = Parameter('k', default=2)",
    "%%step start\nself.data = np.arange(10)\nself.unused = 'x' * 10\nself.next(self.scale)",
    "%%step scale\nself.scaled = self.data * self.k\nself.label = f'x{self.k}'\nprint('scaled by', self.k)\n"
    "self.next(self.end)",
    "%%step end\npass",
]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


def flowcell(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def pytest_file(test: Path, env_root: Path) -> subprocess.CompletedProcess[str]:
    """Run a generated test as a user would, in its own process, against an unrelated store."""
    env = {**os.environ, "FLOWCELL_ROOT": str(env_root), "FLOWCELL_USER": "someone-else"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                          cwd=test.parent, env=env, capture_output=True, text=True, timeout=300)


def test_cli_spin_as_test_writes_a_test_that_passes_then_catches_a_change(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "scale.ipynb", CELLS)
    assert flowcell("run", "scale.ipynb", "--quiet", cwd=tmp_path).returncode == 0
    spin = flowcell("spin", "scale.ipynb", "scale", "--artifacts", "{'k': 3}", "--as-test", "tests/test_scale.py",
                    cwd=tmp_path)
    assert spin.returncode == 0, spin.stderr
    assert "wrote tests/test_scale.py" in spin.stderr
    test = tmp_path / "tests" / "test_scale.py"
    source = test.read_text()
    # Literal values are written into the test; an array is compared with the stored one.
    assert "assert frozen.actual('label') == 'x3'" in source
    assert "assert_artifact_equal(frozen.actual('scaled'), frozen.expected('scaled'), 'scaled')" in source
    assert "with k overridden" in source
    manifest = json.loads((tmp_path / "tests" / "test_scale_inputs" / MANIFEST).read_text())
    assert manifest["step"] == "scale" and manifest["expect"] == ["label", "scaled"]
    assert manifest["inputs_from"].startswith("ScaleFlow/1/scale/")

    # The test does not depend on the runs in .flowcell/: remove them.
    shutil.rmtree(tmp_path / ".flowcell")
    passed = pytest_file(test, tmp_path / "elsewhere")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "1 passed" in passed.stdout

    # Change what the step does: the written test fails and names the output.
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in
                   [*CELLS[:2], CELLS[2].replace("self.data * self.k", "self.data * self.k + 1"), CELLS[3]]]),
                   str(nb))
    failed = pytest_file(test, tmp_path / "elsewhere")
    assert failed.returncode == 1
    assert "scaled changed" in failed.stdout


def test_expect_chooses_the_outputs_and_rejects_unknown_names(tmp_path: Path) -> None:
    write_notebook(tmp_path / "scale.ipynb", CELLS)
    assert flowcell("run", "scale.ipynb", "--quiet", cwd=tmp_path).returncode == 0
    spin = flowcell("spin", "scale.ipynb", "scale", "--as-test", "test_label.py", "--expect", "label", cwd=tmp_path)
    assert spin.returncode == 0, spin.stderr
    source = (tmp_path / "test_label.py").read_text()
    assert "frozen.actual('label') == 'x2'" in source and "scaled" not in source
    assert "assert_artifact_equal" not in source
    assert pytest_file(tmp_path / "test_label.py", tmp_path / ".flowcell").returncode == 0

    bad = flowcell("spin", "scale.ipynb", "scale", "--as-test", "test_bad.py", "--expect", "nope", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0] == ("flowcell: --expect 'nope': the spin of scale has no such output; it has "
                                          "data, k, label, scaled, unused.")
    assert not (tmp_path / "test_bad.py").exists()


def test_percent_spin_as_test_in_a_notebook_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = write_notebook(tmp_path / "scale.ipynb", CELLS)
    assert flowcell("run", "scale.ipynb", "--quiet", cwd=tmp_path).returncode == 0
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "flowcell")
        for cell in CELLS:
            magic, _, body = cell.partition("\n")
            name, _, line = magic[2:].partition(" ")
            monkeypatch.setattr(shell, "kernel", None, raising=False)
            shell.run_cell_magic(name, line, body)
        shell.run_line_magic("spin", "scale --as-test test_from_notebook.py")
    finally:
        InteractiveShell.clear_instance()
    source = (tmp_path / "test_from_notebook.py").read_text()
    assert "Written by `%spin scale --as-test test_from_notebook.py`" in source
    assert "frozen.actual('label') == 'x2'" in source
    assert pytest_file(tmp_path / "test_from_notebook.py", tmp_path / "other").returncode == 0
