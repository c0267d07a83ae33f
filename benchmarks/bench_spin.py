"""Spinning one step, side by side: Metaflow's ``spin`` vs flowcell.

Usage: .venv/bin/python benchmarks/bench_spin.py [--repeat 7] [--large-mb 2048]

* Metaflow: ``python flow.py spin middle`` (CLI) and ``Runner(...).spin(...)`` after
  one ``run``; every spin starts new processes.
* flowcell cold: ``flowcell spin flow.ipynb middle`` from a shell (kernel start
  included).
* flowcell warm: ``Runner(nb).spin("middle")`` repeated in one long-lived process
  (the notebook's case: the pool is already warm).
* Lazy hydration: a run whose ``start`` holds ``--large-mb`` of arrays plus one small
  artifact; spinning a step that touches only the small one.
* Shell spins and the warm kernel server (``--shell-only`` runs just this part, with
  Metaflow's CLI spin beside it): ``flowcell spin`` with the server off (today's cold
  path), the first spin of a store with no server yet (it starts one in the
  background), and the second and later spins, which the server runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from _common import bench_env, timed

STEPS = [
    ("start", "self.x = 1\nself.next(self.middle)"),
    ("middle", "self.y = self.x + 1\nself.next(self.end)"),
    ("end", "pass"),
]
METAFLOW = """from metaflow import FlowSpec, step


class SpinBenchFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.middle)

    @step
    def middle(self):
        self.y = self.x + 1
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SpinBenchFlow()
"""
METAFLOW_RUNNER = """
import sys, time, json
from metaflow import Runner
times = []
for _ in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    with Runner("spin_flow.py").spin("middle") as spin:
        pass
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def notebook(path: Path, steps: list[tuple[str, str]], name: str, header: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"%%flow {name}\n{header}")]
    nb.cells += [nbformat.v4.new_code_cell(f"%%step {n}\n{body}") for n, body in steps]
    nbformat.write(nb, str(path))


def _server_idle(work: Path, env: dict[str, str]) -> None:
    """Stop the store's kernel server (if any) and wait until it has let go of the store."""
    import fcntl

    subprocess.run([sys.executable, "-m", "flowcell.cli", "server", "stop"], cwd=work, env=env, capture_output=True)
    lock = work / ".flowcell" / "server" / "lock"
    for _ in range(600):
        if not lock.exists():
            return
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except OSError:
            time.sleep(0.1)
        finally:
            os.close(fd)


def _server_ready(work: Path) -> None:
    from flowcell import warm

    for _ in range(600):
        if warm.request(work / ".flowcell", {"status": True}) is not None:
            return
        time.sleep(0.1)
    raise SystemExit("the kernel server did not come up")


def shell_spins(work: Path, env: dict[str, str], repeat: int, mf_cli: list[float]) -> None:
    """``flowcell spin`` from a shell: server off, first spin of a store (server starting), served spins."""
    spin = [str(Path(sys.executable).parent / "flowcell"), "spin", "spin.ipynb", "middle"]  # as a shell runs it
    off = dict(env, FLOWCELL_SERVER="off")
    on = dict(env, FLOWCELL_SERVER="on")
    cold = [timed(spin, work, off) for _ in range(repeat)]
    first, served = [], []
    for _ in range(repeat):
        _server_idle(work, on)
        first.append(timed(spin, work, on))  # no server yet: runs locally, starts one in the background
        _server_ready(work)
        served.extend(timed(spin, work, on) for _ in range(3))
    _server_idle(work, on)
    m, c, f, s = (statistics.median(x) for x in (mf_cli, cold, first, served))
    print("| `spin` of a trivial step from a shell | median | speed vs Metaflow CLI spin |")
    print("| --- | --- | --- |")
    print(f"| Metaflow `python flow.py spin` | {m:.3f} s | 1.0x |")
    print(f"| flowcell `flowcell spin`, server off | {c:.3f} s | {m / c:.1f}x |")
    print(f"| flowcell `flowcell spin`, first of a store (starts the server) | {f:.3f} s | {m / f:.1f}x |")
    print(f"| flowcell `flowcell spin`, second and later (warm kernel server) | {s:.3f} s | {m / s:.1f}x |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--large-mb", type=int, default=2048)
    parser.add_argument("--shell-only", action="store_true", help="only the shell spins (server on and off)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowcell-spin-bench-"))
    env = bench_env(work, FLOWCELL_SERVER="off")
    os.chdir(work)
    (work / "spin_flow.py").write_text(METAFLOW)
    timed([sys.executable, "spin_flow.py", "--quiet", "run"], work, env)
    mf_cli = [timed([sys.executable, "spin_flow.py", "--quiet", "spin", "middle"], work, env)
              for _ in range(args.repeat)]
    if args.shell_only:
        notebook(work / "spin.ipynb", STEPS, "SpinBenchFlow")
        timed([sys.executable, "-m", "flowcell.cli", "run", "spin.ipynb", "--quiet"], work, env)
        shell_spins(work, env, args.repeat, mf_cli)
        return
    out = subprocess.run([sys.executable, "-c", METAFLOW_RUNNER, str(args.repeat)], cwd=work, env=env,
                         capture_output=True, text=True, check=True)
    import json

    mf_runner = json.loads(out.stdout.strip().splitlines()[-1])

    notebook(work / "spin.ipynb", STEPS, "SpinBenchFlow")
    timed([sys.executable, "-m", "flowcell.cli", "run", "spin.ipynb", "--quiet"], work, env)
    cold = [timed([sys.executable, "-m", "flowcell.cli", "spin", "spin.ipynb", "middle"], work, env)
            for _ in range(args.repeat)]
    from flowcell import Runner

    runner = Runner(work / "spin.ipynb")
    with runner.spin("middle"):
        pass  # warm-up: pool started, imports cached
    warm = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        with runner.spin("middle") as spin:
            assert spin.successful
        warm.append(time.perf_counter() - t0)

    # Lazy hydration: a run holding large arrays; the spun step touches one small artifact.
    n = args.large_mb * 1024 * 1024 // 8 // 4
    large_steps = [
        ("start", "\n".join(f"self.big{i} = np.ones({n})" for i in range(4))
         + "\nself.small = 41\nself.next(self.middle)"),
        ("middle", "self.answer = self.small + 1\nself.next(self.end)"),
        ("end", "pass"),
    ]
    notebook(work / "large.ipynb", large_steps, "LargeSpinFlow", "import numpy as np")
    large = Runner(work / "large.ipynb")
    with large.run():
        pass
    with large.spin("middle"):
        pass
    lazy = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        with large.spin("middle") as spin:
            assert spin.task["answer"].data == 42
        lazy.append(time.perf_counter() - t0)

    # Resume of a 10-step flow from its last step vs running that one step (a spin).
    ten = [("start", "self.big = np.ones(25_000_000)\nself.v = 0\nself.next(self.s1)")]
    ten += [(f"s{i}", f"self.v += 1\nself.next(self.{'s' + str(i + 1) if i < 8 else 'end'})") for i in range(1, 9)]
    ten += [("end", "self.v += 1")]
    notebook(work / "ten.ipynb", ten, "TenStepFlow", "import numpy as np")
    tens = Runner(work / "ten.ipynb")
    with tens.run():
        pass
    resume_t, end_spin = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        with tens.resume("end") as resumed:
            assert resumed.successful
        resume_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with tens.spin("end"):
            pass
        end_spin.append(time.perf_counter() - t0)
    shell_spins(work, env, args.repeat, mf_cli)
    store = work / ".flowcell" / "blobs"
    blob_bytes = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())

    m_cli, m_run = statistics.median(mf_cli), statistics.median(mf_runner)
    c, w, z = statistics.median(cold), statistics.median(warm), statistics.median(lazy)
    print("| spin of a trivial step | median | speed vs Metaflow CLI spin | speed vs Metaflow Runner.spin |")
    print("| --- | --- | --- | --- |")
    print(f"| Metaflow `python flow.py spin` | {m_cli:.3f} s | 1.0x | |")
    print(f"| Metaflow `Runner.spin` | {m_run:.3f} s | | 1.0x |")
    print(f"| flowcell `flowcell spin` (cold, shell) | {c:.3f} s | {m_cli / c:.1f}x | |")
    print(f"| flowcell `Runner.spin` (warm pool) | {w * 1000:.1f} ms | {m_cli / w:.0f}x | {m_run / w:.0f}x |")
    print(f"| flowcell warm, run holding {args.large_mb} MB, step touches one small artifact | {z * 1000:.1f} ms | | |")
    print()
    print(f"Resume of a 10-step flow (200 MB artifact) from its last step: {statistics.median(resume_t) * 1000:.0f} ms; "
          f"spin of that step: {statistics.median(end_spin) * 1000:.0f} ms; blob bytes after "
          f"{args.repeat + 1} runs: {blob_bytes / 1e6:.0f} MB (one copy of the array)")


if __name__ == "__main__":
    main()
