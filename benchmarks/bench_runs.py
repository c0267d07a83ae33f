"""Whole runs, side by side: Metaflow's ``python flow.py run`` vs flowcell.

Usage (from the repository root, with the bench extra installed):

    .venv/bin/python benchmarks/bench_runs.py [--repeat 5] [--markdown]

Runs a 3-step linear flow and a 20-way foreach + join under Metaflow 2.19 (one
process per run, as Metaflow works) and under flowcell, cold (`flowcell run` from a
shell, kernel start included) and warm (a long-lived process holding the kernel
pool: a notebook, or a Python process driving runs). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from _common import bench_env, timed

FLOWS = {
    "linear3": {
        "steps": [
            ("start", "self.x = 1\nself.next(self.middle)"),
            ("middle", "self.x += 1\nself.next(self.end)"),
            ("end", "pass"),
        ],
    },
    "foreach20": {
        "steps": [
            ("start", "self.items = list(range(20))\nself.next(self.work, foreach='items')"),
            ("work", "self.y = self.input * 2\nself.next(self.join)"),
            ("join(inputs)", "self.total = sum(i.y for i in inputs)\nself.next(self.end)"),
            ("end", "pass"),
        ],
    },
}


def metaflow_file(name: str, spec: dict) -> str:
    cls = name.capitalize() + "Flow"
    lines = ["from metaflow import FlowSpec, step", "", "", f"class {cls}(FlowSpec):"]
    for decl, body in spec["steps"]:
        step_name, _, arg = decl.partition("(")
        args = "self, inputs" if arg else "self"
        lines += ["    @step", f"    def {step_name}({args}):"]
        lines += ["        " + line for line in body.splitlines()]
        lines.append("")
    lines += ["", "if __name__ == '__main__':", f"    {cls}()"]
    return "\n".join(lines) + "\n"


def notebook_file(name: str, spec: dict, path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell(f"%%flow {name.capitalize()}Flow")]
    for decl, body in spec["steps"]:
        cells.append(nbformat.v4.new_code_cell(f"%%step {decl}\n{body}"))
    nb.cells = cells
    nbformat.write(nb, str(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-bench-"))
    env = bench_env(work)
    os.chdir(work)

    from flowcell.model import read_notebook
    from flowcell.runtime.engine import Runtime
    from flowcell.runtime.runs import start_run

    runtime = Runtime(pool_size=2)
    rows = []
    for name, spec in FLOWS.items():
        (work / f"{name}.py").write_text(metaflow_file(name, spec))
        notebook_file(name, spec, work / f"{name}.ipynb")
        mf = [timed([sys.executable, f"{name}.py", "--quiet", "run"], work, env) for _ in range(args.repeat)]
        # Cold means a new process with new kernels: the warm kernel server is off here.
        cold = [timed([sys.executable, "-m", "flowcell.cli", "run", f"{name}.ipynb", "--quiet"], work,
                      dict(env, FLOWCELL_SERVER="off")) for _ in range(args.repeat)]
        flow = read_notebook(work / f"{name}.ipynb")
        start_run(runtime, flow, max_workers=4)  # warm-up: kernels started, imports cached
        warm = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = start_run(runtime, flow, max_workers=4)
            warm.append(time.perf_counter() - t0)
            assert result.status == "completed"
        m, c, w = statistics.median(mf), statistics.median(cold), statistics.median(warm)
        rows.append((name, m, c, w))
    runtime.close()
    header = "| flow | Metaflow `run` | flowcell cold (`flowcell run`) | flowcell warm (pool) | cold speed-up | warm speed-up |"
    print(header)
    print("| --- | --- | --- | --- | --- | --- |")
    for name, m, c, w in rows:
        print(f"| {name} | {m:.2f} s | {c:.2f} s | {w:.3f} s | {m / c:.1f}x | {m / w:.1f}x |")


if __name__ == "__main__":
    main()
