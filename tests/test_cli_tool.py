"""The CLI as a tool: help on stdout, --version, a flow's parameters in run --help, streams kept apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from flowcell._version import __version__

FLOWCELL = str(Path(sys.executable).parent / "flowcell")
CELLS = [
    "%%flow ToolFlow\nfrom flowcell import Parameter\nalpha = Parameter('alpha', default=0.5, help='learning rate')\n"
    "name = Parameter('name', help='who to greet', required=True)",
    "%%step start\nprint('hello', self.name)\nself.next(self.end)",
    "%%step end\nprint('bye')",
]
COMMANDS = ["run", "spin", "resume", "tag", "export", "import", "card", "status", "info", "server", "mcp"]


def flowcell(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWCELL, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FLOWCELL_SERVER": "off"})


@pytest.fixture
def nb(tmp_path: Path) -> Path:
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(book, str(tmp_path / "tool.ipynb"))
    return tmp_path / "tool.ipynb"


def test_help_and_version_on_stdout() -> None:
    out = flowcell("--help")
    assert out.returncode == 0 and out.stderr == ""
    for command in COMMANDS:
        line = next(l for l in out.stdout.splitlines() if l.startswith(f"  {command} "))
        description = out.stdout.splitlines()[out.stdout.splitlines().index(line) + 1]
        assert description.startswith("      ") and description.strip(), command
    assert flowcell("--version").stdout == f"flowcell {__version__}\n"
    bad = flowcell("frobnicate")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines()[-1].startswith("flowcell: unknown command 'frobnicate'; the commands are run,")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    out = flowcell(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: flowcell {command}")


def test_run_help_lists_the_flows_parameters(nb: Path) -> None:
    out = flowcell("run", str(nb), "--help")
    assert out.returncode == 0, out.stderr
    params = out.stdout.split("Parameters of flow ToolFlow:\n")[1].splitlines()
    assert params[0].split() == ["--alpha", "FLOAT", "learning", "rate", "[default:", "0.5]"]
    assert params[1].split() == ["--name", "VALUE", "who", "to", "greet", "[required]"]
    missing = flowcell("run", "nope.ipynb", "--help")
    assert missing.returncode == 0 and "The flow's parameters could not be read" in missing.stdout


def test_task_output_on_stdout_messages_on_stderr(nb: Path) -> None:
    out = flowcell("run", str(nb), "--name", "ada", cwd=nb.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[ToolFlow/1/start/2] hello ada", "[ToolFlow/1/end/3] bye"]
    assert out.stderr.splitlines()[-1] == "ToolFlow/1 completed"
    piped = flowcell("run", str(nb), "--name", "bob", "--json", cwd=nb.parent)
    assert json.loads(piped.stdout)["pathspec"] == "ToolFlow/2" and len(piped.stdout.splitlines()) == 1


def test_spin_namespace_chooses_whose_runs_give_the_inputs(nb: Path) -> None:
    env = {**os.environ, "FLOWCELL_SERVER": "off", "FLOWCELL_USER": "alice"}
    ran = subprocess.run([FLOWCELL, "run", str(nb), "--name", "alice", "--json"], cwd=nb.parent, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    mine = flowcell("spin", str(nb), "end", "--json", cwd=nb.parent)   # FLOWCELL_USER is tester here
    assert mine.returncode == 2 and "No inputs for step 'end'" in json.loads(mine.stdout)["error"]["message"]
    theirs = flowcell("spin", str(nb), "end", "--namespace", "user:alice", "--json", cwd=nb.parent)
    assert theirs.returncode == 0, theirs.stderr
    assert json.loads(theirs.stdout)["inputs_from"].startswith("ToolFlow/1/end/")
    every = flowcell("spin", str(nb), "end", "--namespace", "", "--json", cwd=nb.parent)
    assert json.loads(every.stdout)["inputs_from"] == json.loads(theirs.stdout)["inputs_from"]
    outside = flowcell("spin", str(nb), "1/end", "--namespace", "user:bob", cwd=nb.parent)
    assert outside.returncode == 2 and "not in the current namespace 'user:bob'" in outside.stderr

    # resume: the latest run to resume is looked for in the namespace given.
    nothing = flowcell("resume", str(nb), "--json", cwd=nb.parent)
    assert nothing.returncode == 2
    assert json.loads(nothing.stdout)["error"]["message"] == (
        "Nothing to resume: flow ToolFlow has no runs in namespace user:tester; run it first.")
    resumed = flowcell("resume", str(nb), "end", "--namespace", "user:alice", "--json", cwd=nb.parent)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["origin"] == "ToolFlow/1"
