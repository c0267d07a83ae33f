"""Metaflow's core test suite, read at run time from a checkout of the Metaflow repository.

Nothing of the suite is copied into flowcell: the graphs, tests, formatter and
``check_results`` come from ``$FLOWCELL_METAFLOW_SRC/test/core`` each time.  A
*combination* is one test rendered onto one graph by the suite's own
``FlowFormatter``, under the suite's ``python3-all-local`` context.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "FLOWCELL_METAFLOW_SRC"
CONTEXT = "python3-all-local"
#: Tests that need the suite's extension packages installed (their docstrings say so);
#: a plain Metaflow install fails them, so the denominator leaves them out (28 combinations).
EXTENSION_TESTS = frozenset({"ExtensionsTest", "FlowOptionsTest", "CardExtensionsImportTest", "CardImportTest"})


def core_dir() -> Path | None:
    """``test/core`` of the Metaflow checkout named by ``$FLOWCELL_METAFLOW_SRC``, if any."""
    src = os.environ.get(ENV_VAR)
    if not src:
        return None
    path = Path(src) / "test" / "core"
    return path if (path / "run_tests.py").is_file() else None


@dataclass
class Combination:
    """One test of the suite on one graph."""

    test: Any
    graph: dict[str, Any]
    formatter: Any

    @property
    def key(self) -> str:
        return f"{type(self.test).__name__}/{self.graph['name']}"

    @property
    def uses_extensions(self) -> bool:
        return type(self.test).__name__ in EXTENSION_TESTS


def load_context(core: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    contexts = json.loads((core / "contexts.json").read_text())
    context = next(c for c in contexts["contexts"] if c["name"] == CONTEXT)
    return context, contexts["checks"]


def combinations(core: Path) -> list[Combination]:
    """Every valid combination the suite's local context enables, in the suite's order."""
    for p in (str(core), str(core / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)
    from metaflow_test.formatter import FlowFormatter  # the suite's own formatter (needs real Metaflow)

    import run_tests  # type: ignore[import-not-found]

    context, _ = load_context(core)
    disabled = set(map(str, context.get("disabled_tests", [])))
    cwd = os.getcwd()
    os.chdir(core)  # iter_tests/iter_graphs read relative to the suite
    try:
        tests = sorted(run_tests.iter_tests(), key=lambda t: (t.PRIORITY, type(t).__name__))
        graphs = sorted(run_tests.iter_graphs(), key=lambda g: g["name"])
    finally:
        os.chdir(cwd)
    out = []
    for test in tests:
        if type(test).__name__ in disabled:
            continue
        for graph in graphs:
            formatter = FlowFormatter(graph, test)
            if formatter.valid:
                out.append(Combination(test, graph, formatter))
    return out
