"""The run browser on a store of many runs (SPEC section 9: opens in under 200 ms on 10,000 runs).

Usage: .venv/bin/python benchmarks/bench_browser.py [--runs 10000]

Records ``--runs`` runs of a three-step flow (three tasks each, tags on some) straight
into the metadata store, then times, in a fresh process: the first ``browse()``
(imports of anywidget and ipywidgets included), and warm (medians of 5): opening
the browser and rendering its fallback, the last page, sorting by duration,
filtering by a rare tag, and opening one run's view. No run is listed whole: every
table query is one COUNT and one LIMIT/OFFSET page.
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

PROBE = r"""
import json, statistics, time
t0 = time.perf_counter()
import flowcell
import flowcell.magics, flowcell.runtime.engine  # what %load_ext flowcell has imported already
loaded = time.perf_counter() - t0
t0 = time.perf_counter()
b = flowcell.browse("ManyFlow")
b._repr_mimebundle_()
first = time.perf_counter() - t0

def median(fn):
    out = []
    for _ in range(5):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out)

def open_browser():
    w = flowcell.browse("ManyFlow"); w._repr_mimebundle_()

def last_page():
    b.page = 0; b.page = b.total // b.page_size

def by_duration():
    b.page = 0; b.sort = "id"; b.sort = "duration"

def rare():
    b.tag_filter = []; b.tag_filter = ["rare"]

def run_view():
    b.tag_filter = []; b.selected = ""; b.selected = "5000"

print(json.dumps({"loaded": loaded, "first": first, "open": median(open_browser), "last_page": median(last_page),
                  "sort": median(by_duration), "tag": median(rare), "run_view": median(run_view),
                  "total": b.total}))
"""


def fill(root: Path, runs: int) -> None:
    from flowcell.runtime.runs import system_tags
    from flowcell.store.metadata import MetadataStore

    meta = MetadataStore(root)
    now = time.time() - runs * 60
    sys_tags = system_tags("bench")
    with meta.transaction() as cur:
        for i in range(1, runs + 1):
            start = now + i * 60
            cur.execute("INSERT INTO runs (flow, run_number, user, status, created_at, finished_at, params)"
                        " VALUES ('ManyFlow', ?, 'bench', ?, ?, ?, ?)",
                        (i, "failed" if i % 50 == 0 else "completed", start, start + 1 + i % 13,
                         json.dumps({"alpha": i % 7})))
            tags = [(t, 1) for t in sys_tags] + [("rare" if i % 1000 == 0 else "common", 0)]
            cur.executemany("INSERT INTO run_tags (flow, run_number, tag, system) VALUES ('ManyFlow', ?, ?, ?)",
                            [(i, t, s) for t, s in tags])
            cur.executemany("INSERT INTO tasks (flow, run_number, task_id, step, status, created_at, finished_at,"
                            " parents) VALUES ('ManyFlow', ?, ?, ?, 'completed', ?, ?, ?)",
                            [(i, k + 1, step, start + k * 0.3, start + k * 0.3 + 0.25, json.dumps([k] if k else []))
                             for k, step in enumerate(("start", "train", "end"))])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-browser-"))
    env = dict(os.environ, FLOWCELL_ROOT=str(work / ".flowcell"), FLOWCELL_USER="bench")
    os.environ.update(env)
    fill(work / ".flowcell", args.runs)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=work, env=env, check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["total"] == args.runs
    print(f"| run browser, {args.runs:,} runs | time |")
    print("| --- | --- |")
    print(f"| `import flowcell` + what `%load_ext flowcell` imports (not part of opening) | {r['loaded'] * 1000:.0f} ms |")
    print(f"| first `browse()` in that kernel (importing anywidget/ipywidgets included) | {r['first'] * 1000:.0f} ms |")
    for key, label in (("open", "open again (query + widget + fallback)"), ("last_page", "go to the last page"),
                       ("sort", "sort by duration"), ("tag", "filter by a rare tag"),
                       ("run_view", "open one run's view")):
        print(f"| {label} | {r[key] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
