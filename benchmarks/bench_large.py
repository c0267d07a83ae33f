"""A large array as an artifact: persist, hand over to the next step, read lazily.

Usage: .venv/bin/python benchmarks/bench_large.py [--mb 500] [--skip-metaflow]

Measures, for a float64 array of the given size:
* the store alone (fresh subprocess each): ``pickle.dump(protocol=5)`` + fsync vs
  flowcell's ``dump_artifact``; the producing process's peak memory over the array;
  ``load_artifact`` before pages are touched and after touching every page;
* inside flows, under Metaflow and flowcell: step ``start`` makes the array, step
  ``middle`` reads its shape only, step ``end`` sums it. Times are taken inside the
  steps: persist+hand-over = middle's start - end of start's body.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

STORE_SCRIPT = r"""
import json, os, pickle, sys, time
import numpy as np
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
mode, root, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
arr = np.random.default_rng(0).random(mb * 1024 * 1024 // 8)
base = hwm()
t0 = time.perf_counter()
if mode == "pickle":
    with open(os.path.join(root, "plain.pkl"), "wb") as fh:
        pickle.dump(arr, fh, protocol=5)
        fh.flush(); os.fsync(fh.fileno())
    out = {"seconds": time.perf_counter() - t0}
else:
    from flowcell.store.blobs import BlobStore
    from flowcell.store.serialize import dump_artifact, load_artifact
    store = BlobStore(root)
    ref = dump_artifact(store, "arr", arr)
    out = {"seconds": time.perf_counter() - t0, "extra_peak_ratio": (hwm() - base) / arr.nbytes}
    del arr
    t1 = time.perf_counter(); loaded = load_artifact(store, ref); out["load"] = time.perf_counter() - t1
    t2 = time.perf_counter(); float(loaded.sum()); out["touch"] = time.perf_counter() - t2
    out["writeable"] = bool(loaded.flags.writeable)
print(json.dumps(out))
"""

FLOW_BODY = {
    "start": "self.arr = np.random.default_rng(0).random({n})\nself.t_made = time.time()",
    "middle": "self.t_middle = time.time()\nself.shape = self.arr.shape\nself.t_read = time.time()",
    "end": "t = time.time()\nself.total = float(self.arr.sum())\nself.t_touch = time.time() - t",
}


def metaflow_source(n: int) -> str:
    return textwrap.dedent(f"""
        import time
        import numpy as np
        from metaflow import FlowSpec, step

        class LargeFlow(FlowSpec):
            @step
            def start(self):
                {FLOW_BODY['start'].format(n=n).replace(chr(10), chr(10) + ' ' * 16)}
                self.next(self.middle)

            @step
            def middle(self):
                {FLOW_BODY['middle'].replace(chr(10), chr(10) + ' ' * 16)}
                self.next(self.end)

            @step
            def end(self):
                {FLOW_BODY['end'].replace(chr(10), chr(10) + ' ' * 16)}

        if __name__ == "__main__":
            LargeFlow()
    """)


def notebook(path: Path, n: int) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%%flow LargeFlow\nimport time\nimport numpy as np"),
        nbformat.v4.new_code_cell(f"%%step start\n{FLOW_BODY['start'].format(n=n)}\nself.next(self.middle)"),
        nbformat.v4.new_code_cell(f"%%step middle\n{FLOW_BODY['middle']}\nself.next(self.end)"),
        nbformat.v4.new_code_cell(f"%%step end\n{FLOW_BODY['end']}"),
    ]
    nbformat.write(nb, str(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--skip-metaflow", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-large-"))
    n = args.mb * 1024 * 1024 // 8

    def store_run(mode: str) -> dict:
        root = work / f"store-{mode}-{time.time_ns()}"
        root.mkdir()
        out = subprocess.run([sys.executable, "-c", STORE_SCRIPT, mode, str(root), str(args.mb)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    plain = [store_run("pickle")["seconds"] for _ in range(3)]
    ours = [store_run("flowcell") for _ in range(3)]
    plain_s = sorted(plain)[1]
    ours_s = sorted(o["seconds"] for o in ours)[1]
    print(f"store: pickle.dump(p5)+fsync {plain_s:.2f} s, flowcell dump_artifact {ours_s:.2f} s "
          f"(ratio {ours_s / plain_s:.2f}x); extra peak memory while persisting "
          f"{max(o['extra_peak_ratio'] for o in ours):.2f}x the array; "
          f"load before touching {sorted(o['load'] for o in ours)[1] * 1000:.1f} ms, touching every page "
          f"{sorted(o['touch'] for o in ours)[1]:.2f} s, writeable={ours[0]['writeable']}")

    env = dict(os.environ, USERNAME="bench", METAFLOW_DEFAULT_DATASTORE="local",
               METAFLOW_DEFAULT_METADATA="local", FLOWCELL_ROOT=str(work / ".flowcell"), FLOWCELL_USER="bench")
    results = {}
    if not args.skip_metaflow:
        (work / "large_flow.py").write_text(metaflow_source(n))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "large_flow.py", "--quiet", "run"], cwd=work, env=env, check=True,
                       capture_output=True)
        wall = time.perf_counter() - t0
        code = ("from metaflow import Flow, namespace; namespace(None); r = Flow('LargeFlow').latest_run; "
                "import json; print(json.dumps({'made': r['start'].task.data.t_made, "
                "'middle': r['middle'].task.data.t_middle, 'read': r['middle'].task.data.t_read, "
                "'touch': r['end'].task.data.t_touch}))")
        out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                             check=True)
        results["Metaflow"] = (json.loads(out.stdout.strip().splitlines()[-1]), wall)
    notebook(work / "large.ipynb", n)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "flowcell.cli", "run", "large.ipynb", "--quiet"], cwd=work, env=env,
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    code = ("from flowcell import Flow; r = Flow('LargeFlow').latest_run; import json; "
            "print(json.dumps({'made': r['start'].task.data.t_made, 'middle': r['middle'].task.data.t_middle, "
            "'read': r['middle'].task.data.t_read, 'touch': r['end'].task.data.t_touch}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True)
    results["flowcell"] = (json.loads(out.stdout.strip()), wall)
    print("| system | persist + hand-over | read in next step (untouched) | sum over every page | whole run |")
    print("| --- | --- | --- | --- | --- |")
    for name, (r, wall) in results.items():
        print(f"| {name} | {r['middle'] - r['made']:.2f} s | {(r['read'] - r['middle']) * 1000:.1f} ms | "
              f"{r['touch']:.2f} s | {wall:.1f} s |")


if __name__ == "__main__":
    main()
