"""What "why is this step stale?" costs: ``flow_status`` on a recorded run, and ``flowcell status`` from a shell.

Usage: .venv/bin/python benchmarks/bench_status.py [--steps 10] [--splits 20]

A linear flow of ``--steps`` steps with a ``--splits``-way foreach in the middle is
run once (real kernels); then ``flow_status`` is timed in this process: the first
call (caches cold: distribution versions, code digests), warm calls (what the
JupyterLab badges pay on each cell registration), and a call right after one step's
cell changed.  ``flowcell status`` is timed as a whole process beside
``flowcell --version`` (the interpreter and flowcell's import, which any command
pays).  Medians of 7; no kernel runs and no artifact is read while timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def notebook(steps: int, splits: int) -> list[str]:
    cells = ["%%flow BenchStatusFlow\nimport math\nfrom flowcell import Parameter\nalpha = Parameter('alpha', default=0.5)\n\n"
             "def scale(x):\n    return x * 2\n"]
    names = [f"s{i}" for i in range(steps - 2)]
    chain = ["start", *names, "end"]
    middle = len(chain) // 2
    for i, name in enumerate(chain[:-1]):
        nxt = chain[i + 1]
        if i == middle - 1:
            cells.append(f"%%step {name}\nself.items = list(range({splits}))\nself.next(self.fan, foreach='items')")
            cells.append("%%step fan\nself.v = scale(self.input) * self.alpha\nself.next(self.gather)")
            cells.append(f"%%step gather(inputs)\nself.total = sum(i.v for i in inputs)\nself.next(self.{nxt})")
        else:
            cells.append(f"%%step {name}\nself.n{i} = {i}\nself.next(self.{nxt})")
    cells.append("%%step end\npass")
    return cells


def median_ms(fn: Any, n: int = 7) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--splits", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-status-"))
    os.environ.update(FLOWCELL_ROOT=str(work / ".flowcell"), FLOWCELL_USER="bench", FLOWCELL_SERVER="off")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in notebook(args.steps, args.splits)]
    path = work / "bench_status.ipynb"
    nbformat.write(nb, str(path))
    flowcell = str(Path(sys.executable).with_name("flowcell"))
    ran = subprocess.run([flowcell, "run", str(path), "--quiet"], capture_output=True, text=True, cwd=work)
    assert ran.returncode == 0, ran.stderr

    from flowcell.runner import load_flow
    from flowcell.staleness import flow_status

    flow = load_flow(path)
    t0 = time.perf_counter()
    report = flow_status(flow)
    first = (time.perf_counter() - t0) * 1000
    assert not report.stale, report
    warm = median_ms(lambda: flow_status(flow))
    last = list(flow.steps)[-2]
    flow.steps[last].body = flow.steps[last].body.replace(" = ", " = 1 + ")
    t0 = time.perf_counter()
    edited = flow_status(flow)
    after_edit = (time.perf_counter() - t0) * 1000
    assert edited.stale == [last, "end"], edited.stale
    tasks = sum(s.tasks for s in report.steps)

    def shell(*argv: str) -> float:
        return median_ms(lambda: subprocess.run([flowcell, *argv], capture_output=True, cwd=work), n=5)

    cli = shell("status", str(path))
    version = shell("--version")
    print(json.dumps({"steps": len(flow.steps), "tasks": tasks, "first_ms": round(first, 1),
                      "warm_ms": round(warm, 2), "after_edit_ms": round(after_edit, 2),
                      "cli_status_ms": round(cli), "cli_version_ms": round(version)}, indent=1))


if __name__ == "__main__":
    main()
