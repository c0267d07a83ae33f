"""Where the store is (SPEC section 7): found the way git finds ``.git``; ``flowcell info`` says which."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowcell import config


@pytest.fixture
def no_root_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWCELL_ROOT", raising=False)


def test_flowcell_root_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCELL_ROOT", str(tmp_path / "elsewhere"))
    (tmp_path / "nb" / ".flowcell").mkdir(parents=True)
    assert config.find_store_root(tmp_path / "nb" / "x.ipynb") == tmp_path / "elsewhere"


def test_the_nearest_existing_store_in_a_parent_is_used(tmp_path: Path, no_root_env: None) -> None:
    (tmp_path / ".flowcell").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert config.find_store_root(tmp_path / "a" / "b" / "flow.ipynb") == tmp_path / ".flowcell"
    assert config.find_store_root(tmp_path / "a" / "b") == tmp_path / ".flowcell"


def test_a_nearer_store_wins_over_a_farther_one(tmp_path: Path, no_root_env: None) -> None:
    (tmp_path / ".flowcell").mkdir()
    (tmp_path / "a" / ".flowcell").mkdir(parents=True)
    assert config.find_store_root(tmp_path / "a" / "flow.ipynb") == tmp_path / "a" / ".flowcell"


def test_a_new_store_goes_to_the_top_of_the_git_work_tree(tmp_path: Path, no_root_env: None) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "notebooks").mkdir()
    assert config.find_store_root(tmp_path / "repo" / "notebooks" / "q.ipynb") == tmp_path / "repo" / ".flowcell"
    assert config.root_reason(tmp_path / "repo" / "notebooks") == "a new store at the top of the git work tree"


def test_without_git_a_new_store_goes_beside_the_notebook(tmp_path: Path, no_root_env: None) -> None:
    (tmp_path / "plain").mkdir()
    assert config.find_store_root(tmp_path / "plain" / "q.ipynb") == tmp_path / "plain" / ".flowcell"


def test_the_client_searches_from_the_working_directory(tmp_path: Path, no_root_env: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".flowcell").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    from flowcell.client import context

    assert context.current_root() == tmp_path / ".flowcell"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "FLOWCELL_ROOT"}
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_flowcell_info_prints_the_store_and_why(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "notebooks").mkdir()
    out = _cli("info", "notebooks/q.ipynb", cwd=tmp_path / "repo")
    assert out.returncode == 0, out.stderr
    assert f"store:     {tmp_path / 'repo' / '.flowcell'} (nothing recorded yet)" in out.stdout
    assert "top of the git work tree" in out.stdout
    # From inside notebooks/ the answer is the same store.
    inside = json.loads(_cli("info", "--json", cwd=tmp_path / "repo" / "notebooks").stdout)
    assert inside["store"] == str(tmp_path / "repo" / ".flowcell")


def test_root_option_anywhere_on_the_line(tmp_path: Path) -> None:
    out = json.loads(_cli("info", "--json", "--root", "custom", cwd=tmp_path).stdout)
    assert out["store"] == str(tmp_path / "custom") and out["found_by"] == "$FLOWCELL_ROOT"
    bad = _cli("info", "--root", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "flowcell: --root needs a directory, e.g. --root ./.flowcell."
