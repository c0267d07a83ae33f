"""The Client on a store with many runs, side by side with Metaflow's local client.

Usage: .venv/bin/python benchmarks/bench_client.py [--runs 10000] [--metaflow-runs 30]

flowcell: ``--runs`` runs are recorded through the metadata store (as a run would
record them, tags included); then ``Flow(F).latest_run`` and ``runs("tag")`` are
timed. Metaflow: ``--metaflow-runs`` real runs of a trivial flow (each takes about a
second, so fewer), then the same two calls through Metaflow's client on its local
metadata. Times are medians of 5 calls.
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

MF_FLOW = """from metaflow import FlowSpec, step

class ManyFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    ManyFlow()
"""
MF_QUERY = """
import json, statistics, time
from metaflow import Flow, namespace
def median(fn):
    out = []
    for _ in range(5):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return statistics.median(out)
print(json.dumps({"latest": median(lambda: Flow("ManyFlow").latest_run),
                  "tagged": median(lambda: list(Flow("ManyFlow").runs("rare")))}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--metaflow-runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-client-"))
    os.environ.update(FLOWCELL_ROOT=str(work / ".flowcell"), FLOWCELL_USER="bench")
    from flowcell.client import Flow
    from flowcell.config import system_tags
    from flowcell.store.metadata import MetadataStore

    meta = MetadataStore(work / ".flowcell")
    for i in range(args.runs):
        number = meta.new_run("ManyFlow", "bench", ["rare"] if i % 1000 == 0 else ["common"],
                              system_tags("bench"), {})
        meta.finish_run("ManyFlow", number, "completed")

    def median(fn) -> float:  # type: ignore[no-untyped-def]
        out = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    ours_latest = median(lambda: Flow("ManyFlow").latest_run)
    ours_tagged = median(lambda: Flow("ManyFlow").runs("rare"))
    env = dict(os.environ, USERNAME="bench", METAFLOW_DEFAULT_DATASTORE="local", METAFLOW_DEFAULT_METADATA="local")
    (work / "many.py").write_text(MF_FLOW)
    for i in range(args.metaflow_runs):
        tags = ["--tag", "rare"] if i % 10 == 0 else []
        subprocess.run([sys.executable, "many.py", "--quiet", "run", *tags], cwd=work, env=env, check=True,
                       capture_output=True)
    out = subprocess.run([sys.executable, "-c", MF_QUERY], cwd=work, env=env, check=True, capture_output=True,
                         text=True)
    mf = json.loads(out.stdout.strip().splitlines()[-1])
    print("| call | flowcell, %d runs | Metaflow local client, %d runs |" % (args.runs, args.metaflow_runs))
    print("| --- | --- | --- |")
    print(f"| `Flow(F).latest_run` | {ours_latest * 1000:.1f} ms | {mf['latest'] * 1000:.1f} ms |")
    print(f"| `Flow(F).runs(\"rare\")` | {ours_tagged * 1000:.1f} ms | {mf['tagged'] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
