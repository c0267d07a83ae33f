"""Reuse of unchanged tasks (issue 14), side by side with Metaflow.

Usage (from the repository root, with the bench extra installed):

    .venv/bin/python benchmarks/bench_reuse.py [--repeat 7]

Three measurements:

1. A 20-way foreach + join re-run with nothing changed, warm: flowcell ``--reuse`` vs a
   fresh flowcell run (target: at most 1/3 of the fresh time and under 50 ms), with
   Metaflow's ``python flow.py run`` of the same flow for scale (Metaflow has no reuse;
   every run runs everything).
2. A 10-step linear flow whose last step changed (a new constant each repetition, so
   it never matches): flowcell ``--reuse`` runs one task and takes nine; the target is
   the cost of that one step plus at most 20 ms.  Metaflow's nearest equivalent,
   ``python flow.py resume end`` (clone nine steps, run the last), for scale.
3. The fingerprint's cost per task: recording it in the parent and the child's
   read-set report (target: at most 1 ms per task together), and the reuse look-up
   per task.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import bench_env, timed

FOREACH = [
    ("start", "self.items = list(range(20))\nself.next(self.work, foreach='items')"),
    ("work", "self.y = self.input * 2\nself.next(self.join)"),
    ("join(inputs)", "self.total = sum(i.y for i in inputs)\nself.next(self.end)"),
    ("end", "pass"),
]


def linear10(last: int) -> list[tuple[str, str]]:
    names = ["start"] + [f"s{i}" for i in range(1, 9)] + ["end"]
    steps = [("start", "self.x = 0\nself.next(self.s1)")]
    for i in range(1, 9):
        steps.append((names[i], f"self.x = self.x + {i}\nself.next(self.{names[i + 1]})"))
    steps.append(("end", f"self.result = self.x * {last}"))
    return steps


def metaflow_file(cls: str, steps: list[tuple[str, str]]) -> str:
    lines = ["from metaflow import FlowSpec, step", "", "", f"class {cls}(FlowSpec):"]
    for decl, body in steps:
        name, _, arg = decl.partition("(")
        lines += ["    @step", f"    def {name}({'self, inputs' if arg else 'self'}):"]
        lines += ["        " + line for line in body.splitlines()] + [""]
    lines += ["", "if __name__ == '__main__':", f"    {cls}()"]
    return "\n".join(lines) + "\n"


def flow_source(cls: str, steps: list[tuple[str, str]]) -> Any:
    from flowcell.model import flow_from_cells

    cells = [("cell 0", f"%%flow {cls}\n")] + [(f"cell {i}", f"%%step {d}\n{b}") for i, (d, b) in enumerate(steps, 1)]
    return flow_from_cells(cells)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-bench-reuse-"))
    env = bench_env(work)
    os.chdir(work)

    from flowcell.runtime import reuse as reuse_mod
    from flowcell.runtime.engine import Runtime
    from flowcell.runtime.runs import start_run

    # Time the parent's share of the fingerprint (recording) and the look-up, per task.
    spent: dict[str, list[float]] = {"record": [], "find": []}
    for name in spent:
        original = getattr(reuse_mod.Fingerprints, name)

        def wrapper(self: Any, *a: Any, _orig: Any = original, _name: str = name, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _orig(self, *a, **k)
            finally:
                spent[_name].append(time.perf_counter() - t0)

        setattr(reuse_mod.Fingerprints, name, wrapper)

    from flowcell.client import Run

    runtime = Runtime(pool_size=2)
    n = args.repeat

    def notebook_run(flow: Any, **kwargs: Any) -> Any:
        """A run as ``%run_flow`` makes it: the run, then the Client's ``Run`` it returns.

        The Client keeps the store open afterwards (as in a notebook), so a run does not
        pay SQLite's WAL checkpoint on close and re-open (about 25 ms here)."""
        result = start_run(runtime, flow, max_workers=4, **kwargs)
        Run._open(result.pathspec, result.root).finished  # noqa: B018
        return result

    # 1. 20-way foreach, nothing changed.
    (work / "foreach20.py").write_text(metaflow_file("Foreach20Flow", FOREACH))
    mf_foreach = [timed([sys.executable, "foreach20.py", "--quiet", "run"], work, env) for _ in range(n)]
    flow = flow_source("Foreach20Flow", FOREACH)
    notebook_run(flow)  # warm-up: kernels started, imports cached
    fresh, reused = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        assert notebook_run(flow).status == "completed"
        fresh.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = notebook_run(flow, reuse=True)
        reused.append(time.perf_counter() - t0)
        assert result.status == "completed" and len(result.reused) == result.tasks == 23, result.reuse_summary()
    record_per_task = statistics.median(spent["record"])
    find_per_task = statistics.median(spent["find"])

    # 2. 10-step linear flow, last step changed.
    (work / "linear10.py").write_text(metaflow_file("Linear10Flow", linear10(1)))
    timed([sys.executable, "linear10.py", "--quiet", "run"], work, env)
    mf_resume = [timed([sys.executable, "linear10.py", "--quiet", "resume", "end"], work, env) for _ in range(n)]
    notebook_run(flow_source("Linear10Flow", linear10(1)))
    changed, step_cost = [], []
    for i in range(n):
        events: list[tuple[str, dict[str, Any]]] = []
        t0 = time.perf_counter()
        result = notebook_run(flow_source("Linear10Flow", linear10(i + 2)), reuse=True,
                              observer=lambda k, p: events.append((k, p)))
        changed.append(time.perf_counter() - t0)
        assert result.status == "completed" and len(result.reused) == 9, result.reuse_summary()
        step_cost += [p["duration"] for k, p in events if k == "task_finished" and not p.get("reused")]
    runtime.close()

    # 3. The child's share: the read-set report of a task that read five artifacts (same work as in a kernel).
    import ipykernel.ipkernel  # noqa: F401  (as many modules loaded as in a child kernel: the snapshot's size)

    from flowcell import _child, _readset  # noqa: F401
    from flowcell._flowspec import FlowInstance

    refs = {f"a{i}": {"address": f"{i:064x}"} for i in range(5)}
    child = []
    for _ in range(200):
        t0 = time.perf_counter()
        before = _readset.modules_snapshot()
        inst = FlowInstance("F", {"start", "end"}, refs, lambda ref: 1, [], step="start")
        for name in refs:
            getattr(inst, name)
        inst.out = 2
        _readset.report(inst, None, refs, {**refs, "out": {"address": "f" * 64}}, before)
        child.append(time.perf_counter() - t0)
    child_per_task = statistics.median(child)

    f, r, m = statistics.median(fresh), statistics.median(reused), statistics.median(mf_foreach)
    c, s, mr = statistics.median(changed), statistics.median(step_cost), statistics.median(mf_resume)
    print(f"medians of {n}; {len(sys.modules)} modules loaded for the child's share (as in a kernel)\n")
    print("| re-run with nothing changed (20-way foreach + join, 23 tasks) | time | vs fresh flowcell | vs Metaflow `run` |")
    print("| --- | --- | --- | --- |")
    print(f"| Metaflow `python flow.py run` | {m:.2f} s | | 1.0x |")
    print(f"| flowcell warm, fresh run | {ms(f)} | 1.0x | {m / f:.0f}x faster |")
    print(f"| flowcell warm, `--reuse` (all 23 reused) | {ms(r)} | {r / f:.2f} of it ({f / r:.1f}x faster) "
          f"| {m / r:.0f}x faster |")
    print()
    print("| 10-step linear flow, last step changed | time |")
    print("| --- | --- |")
    print(f"| Metaflow `python flow.py resume end` | {mr:.2f} s |")
    print(f"| flowcell warm `--reuse` (9 reused, 1 run) | {ms(c)} |")
    print(f"| of which the one step that ran (its task) | {ms(s)} |")
    print(f"| overhead beyond that step | {ms(c - s)} |")
    print()
    print("| fingerprint, per task | median |")
    print("| --- | --- |")
    print(f"| parent: record (code components, addresses, distributions, one INSERT) | {ms(record_per_task)} |")
    print(f"| child: read-set report (modules snapshot + diff, names) | {ms(child_per_task)} |")
    print(f"| together | {ms(record_per_task + child_per_task)} |")
    print(f"| reuse look-up (one indexed query, compare reads) | {ms(find_per_task)} |")


if __name__ == "__main__":
    main()
