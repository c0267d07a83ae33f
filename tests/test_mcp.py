"""``flowcell mcp``: the tools driven by the MCP SDK's own client over stdio, on a real notebook."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytest.importorskip("mcp")

CELLS = [
    "%%flow AgentFlow\nfrom flowcell import Parameter, current\nfrom flowcell.cards import Markdown\n"
    "k = Parameter('k', default=3, help='how many')\nfail = Parameter('fail', default=False)",
    "%%step start\nself.items = list(range(self.k))\nprint('start made', len(self.items))\nself.next(self.train)",
    "%%step train @card\nif self.fail:\n    raise ValueError('asked to fail')\nself.total = sum(self.items)\n"
    "current.card.append(Markdown('# Total is ' + str(self.total)))\nprint('trained', self.total)\n"
    "self.next(self.end)",
    "%%step end\nprint('done')",
]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


async def _session(folder: Path, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    """Start ``flowcell mcp FOLDER`` and make the calls in order through one client session."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "flowcell.cli", "mcp", str(folder)],
                                   env=dict(os.environ), cwd=str(folder))
    with open(folder / "mcp-stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = [t.name for t in (await session.list_tools()).tools]
                results = [await session.call_tool(name, args) for name, args in calls]
    return names, results


def call_all(folder: Path, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[Any]]:
    return asyncio.run(_session(folder, calls))


def payload(result: Any) -> dict[str, Any]:
    """The structured result of a successful call (the same JSON is in its text content)."""
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return dict(result.structured_content)


def test_mcp_tools_over_stdio(tmp_path: Path) -> None:
    write_notebook(tmp_path / "agent.ipynb", CELLS)
    names, results = call_all(tmp_path, [
        ("flows", {}),
        ("run", {"parameters": {"k": 4, "fail": True}, "tags": ["by-agent"]}),
        ("resume", {"parameters": {"fail": False}}),
        ("read", {"pathspec": "AgentFlow/2"}),
        ("read", {"pathspec": "AgentFlow/2/train"}),
        ("preview_artifact", {"pathspec": "AgentFlow/2/start", "name": "items"}),
        ("read_card", {"pathspec": "AgentFlow/2/train"}),
        ("spin", {"pathspec": "train", "artifacts": {"items": [10, 20], "fail": False}}),
        ("spin", {"pathspec": "nosuchstep"}),
        ("read", {"pathspec": "AgentFlow/99"}),
        ("read", {"pathspec": "AgentFlow"}),
        ("read", {"pathspec": "AgentFlow/1/train"}),
        ("spin", {"pathspec": "end"}),   # chains on the spin of train above, as in a notebook
        ("status", {}),
        ("status", {"run": "1", "diff": "train"}),
    ])
    assert set(names) == {"flows", "run", "spin", "resume", "read", "preview_artifact", "read_card", "status"}
    flows, failed, resumed, run, task, preview, card, spin, bad_spin, missing, listing, failed_task, chained, \
        status, diff = results

    (flow,) = payload(flows)["flows"]
    assert flow["flow"] == "AgentFlow"
    assert [s["name"] for s in flow["steps"]] == ["start", "train", "end"]
    assert flow["steps"][0]["next"] == ["train"] and flow["steps"][1]["decorators"] == ["@card"]
    assert flow["parameters"][0] == {"name": "k", "kind": "Parameter", "default": 3, "help": "how many",
                                     "required": False, "type": "int", "cell": "cell 1"}

    failed = payload(failed)
    assert failed["status"] == "failed" and failed["pathspec"] == "AgentFlow/1"
    assert failed["error"]["type"] == "ValueError" and failed["error"]["message"] == "asked to fail"

    resumed = payload(resumed)
    assert resumed["status"] == "completed" and resumed["origin"] == "AgentFlow/1"

    run = payload(run)
    assert run["status"] == "completed" and run["parameters"]["k"] == 4
    assert run["origin"] == "AgentFlow/1"
    assert [s["step"] for s in run["steps"]] == ["start", "train", "end"]

    task = payload(task)
    assert task["status"] == "completed" and task["exception"] is None
    assert task["stdout"] == "trained 6\n" and "total" in task["artifacts"]

    preview = payload(preview)
    assert preview["type"] == "list" and preview["length"] == 4 and preview["preview"] == "[0, 1, 2, 3]"

    (card_text,) = payload(card)["cards"]
    assert "Total is 6" in card_text["text"] and "<" not in card_text["text"]

    spin = payload(spin)
    assert spin["status"] == "completed", spin
    assert spin["inputs_from"].startswith("AgentFlow/2/train/")
    assert spin["created"] == ["total"] and spin["stdout"] == "trained 30\n"
    chained = payload(chained)
    assert chained["status"] == "completed" and chained["inputs_from"] == f"spin of {spin['pathspec']}"

    # Errors are tool errors carrying flowcell's one sentence, as the CLI prints it.
    assert bad_spin.is_error and missing.is_error
    cli = subprocess.run([sys.executable, "-m", "flowcell.cli", "spin", "agent.ipynb", "nosuchstep"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2
    assert cli.stderr.splitlines()[0] == f"flowcell: {bad_spin.content[0].text}"
    assert bad_spin.structured_content == {"status": "error", "error": {
        "type": "NotFoundError", "message": bad_spin.content[0].text}}
    assert missing.content[0].text == "Run AgentFlow/99 does not exist."

    runs = payload(listing)["runs"]
    assert [(r["pathspec"], r["tags"]) for r in runs] == [("AgentFlow/2", []), ("AgentFlow/1", ["by-agent"])]

    # The latest run (the resume) had k=4; a run now would take the default 3, which start reads.
    status = payload(status)
    assert status["run"] == "AgentFlow/2" and status["stale"] == ["start", "train", "end"]
    assert status["steps"][0]["reasons"] == [{"kind": "parameter", "message": "parameter k: 4 in run 2, default now 3",
                                              "parameter": "k", "then": 4, "now": 3}]
    # Run 1 kept train's cell (its task failed there), as it reads now.
    assert payload(diff) == {"flow": "AgentFlow", "step": "train", "diff": ""}

    failed_task = payload(failed_task)
    assert failed_task["status"] == "failed" and failed_task["artifacts"] == []
    assert failed_task["exception"] == {"type": "ValueError", "message": "asked to fail", "line": 3}


def test_mcp_without_a_notebook_says_which(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", CELLS)
    write_notebook(tmp_path / "b.ipynb", CELLS)
    _, (listing, run) = call_all(tmp_path, [("flows", {}), ("run", {})])
    assert [f["path"] for f in payload(listing)["flows"]] == [str(tmp_path / "a.ipynb"), str(tmp_path / "b.ipynb")]
    assert run.is_error and run.content[0].text == f"Say which notebook: {tmp_path} holds 2 (a.ipynb, b.ipynb)."


def test_import_flowcell_does_not_load_the_sdk() -> None:
    code = "import sys, flowcell, flowcell.cli, flowcell.mcp_server; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
