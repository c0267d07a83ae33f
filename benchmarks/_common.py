"""What the benchmarks share: a private store for Metaflow and flowcell, and timing a command."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def bench_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment for commands run in ``work``: Metaflow's local datastore and metadata,
    flowcell's store in ``work/.flowcell``, user ``bench``; this process's flowcell calls use
    the same store and user."""
    env = dict(os.environ, USERNAME="bench", METAFLOW_DEFAULT_DATASTORE="local", METAFLOW_DEFAULT_METADATA="local",
               FLOWCELL_ROOT=str(work / ".flowcell"), FLOWCELL_USER="bench", **extra)
    os.environ.update({"FLOWCELL_ROOT": env["FLOWCELL_ROOT"], "FLOWCELL_USER": "bench"})
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall time of ``cmd``; a failing command ends the benchmark with its output."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed
