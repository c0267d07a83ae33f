"""Issue 11.1: one store per project, whichever directory the shell or the kernel runs in.

The README's ``flowcell run notebooks/quickstart.ipynb`` runs from the repository's
root; the notebook's kernel runs in notebooks/.  Both must use the same store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FLOWCELL_ROOT"}


def _flowcell(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree holding the shipped quickstart notebook in notebooks/, with no store yet."""
    monkeypatch.delenv("FLOWCELL_ROOT", raising=False)
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", root / "notebooks" / "quickstart.ipynb")
    return root


def test_shell_run_and_notebook_run_share_one_store(repo: Path) -> None:
    first = _flowcell("run", "notebooks/quickstart.ipynb", "--json", cwd=repo)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["pathspec"] == "QuickstartFlow/1"
    assert (repo / ".flowcell").is_dir() and not (repo / "notebooks" / ".flowcell").exists()

    nb = nbformat.read(repo / "notebooks" / "quickstart.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'print("RUNS", [r.pathspec for r in Flow("QuickstartFlow").runs()])\n%flowcell status'))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    # The notebook's run is the second run of the same store, and it sees the shell's run.
    assert "RUNS ['QuickstartFlow/2', 'QuickstartFlow/1']" in last
    assert f"store: {repo / '.flowcell'}" in last
    assert not (repo / "notebooks" / ".flowcell").exists()

    # Back in the shell at the root, both runs are there.
    info = json.loads(_flowcell("info", "--json", cwd=repo).stdout)
    assert info["store"] == str(repo / ".flowcell") and info["flows"] == ["QuickstartFlow"]
    tagged = _flowcell("tag", "list", "--run-id", "QuickstartFlow/2", cwd=repo)
    assert tagged.returncode == 0 and "quickstart" in tagged.stdout


def test_root_option_points_every_command_at_one_store(repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "shared-store"
    run = _flowcell("run", "notebooks/quickstart.ipynb", "--root", str(store), "--json", cwd=repo)
    assert run.returncode == 0, run.stderr
    assert (store / "metadata.sqlite").exists() and not (repo / ".flowcell").exists()
    listed = _flowcell("--root", str(store), "tag", "list", "--run-id", "QuickstartFlow/1", cwd=repo / "notebooks")
    assert listed.returncode == 0, listed.stderr
