"""Shared fixtures: a private store per test and one warm kernel pool per session."""

from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from flowcell.model import FlowSource, flow_from_cells

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own store, user and working directory."""
    root = tmp_path / ".flowcell"
    monkeypatch.setenv("FLOWCELL_ROOT", str(root))
    monkeypatch.setenv("FLOWCELL_USER", "tester")
    # No background kernel servers from the suite's CLI calls (tests/test_kernel_server.py turns it on).
    monkeypatch.setenv("FLOWCELL_SERVER", "off")
    monkeypatch.delenv("FLOWCELL_PRODUCTION_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.chdir(tmp_path)
    from flowcell.client import context

    context.reset()
    yield root
    context.reset()


@pytest.fixture(scope="session")
def runtime() -> Any:
    """One warm pool for the whole session, as a notebook would have."""
    from flowcell.runtime.engine import Runtime

    rt = Runtime(pool_size=2)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium for one test module (see tests/browser_support.py)."""
    from browser_support import chromium  # playwright only for the browser tests

    with chromium() as b:
        yield b


def make_flow(text: str, name: str = "TestFlow", path: str | None = None) -> FlowSource:
    """Cells separated by lines starting with ``%%``; a ``%%flow`` header is added if missing."""
    cells: list[tuple[str, str]] = []
    current: list[str] = []
    for line in text.strip("\n").splitlines():
        if line.startswith("%%") and current:
            cells.append((f"cell {len(cells) + 1}", "\n".join(current)))
            current = []
        current.append(line)
    if current:
        cells.append((f"cell {len(cells) + 1}", "\n".join(current)))
    if not any(src.startswith("%%flow") for _, src in cells):
        cells.insert(0, ("cell 0", f"%%flow {name}\n"))
    return flow_from_cells(cells, path=path)


def run(runtime: Any, text: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run a flow given as cell text; return (RunResult, client Run, events)."""
    from flowcell.client import Run
    from flowcell.runtime.runs import start_run

    events: list[tuple[str, dict[str, Any]]] = []
    result = start_run(runtime, make_flow(text, kwargs.pop("name", "TestFlow")), params or {},
                       observer=lambda k, p: events.append((k, p)), **kwargs)
    return result, Run._open(result.pathspec, result.root), events


def wait_for(predicate: Any, timeout: float = 90.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (read from /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
