"""Issue 11.7: the README's shell examples work as written on the shipped notebooks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def shell_examples() -> list[str]:
    """The commands of the README's "From a shell" block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## From a shell\n.*?```bash\n(.*?)```", text, re.S)
    assert block, "the README has a 'From a shell' bash block"
    return [line.split("   #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_shell_examples_work_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWCELL_ROOT", raising=False)
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", repo / "notebooks", ignore=shutil.ignore_patterns(".flowcell*"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "tests").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FLOWCELL_ROOT"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv is active
    env.setdefault("USER", "tester")  # a login shell has it; Metaflow (--on metaflow) needs it
    commands = shell_examples()
    assert commands[0].startswith("flowcell run") and any(c.startswith("flowcell card view") for c in commands)
    for command in commands:
        out = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)  # `flowcell mcp` serves stdin until it closes
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
        assert "Traceback" not in out.stderr, f"{command}\n{out.stderr}"
    assert (repo / "card.html").read_text().count("<table") >= 1
    assert (repo / "quickstart_roundtrip.ipynb").exists()
