"""Run the core suite's combinations under flowcell, in parallel workers, caching each result.

    FLOWCELL_METAFLOW_SRC=/path/to/metaflow python tests/compat/run_flowcell.py [--jobs 2] [--only T1,T2]

Each combination is rendered by the suite's formatter into ``test_flow.py`` in a fresh
folder (with the suite's ``metaflow_test`` helpers beside it, as the suite does), run
with ``flowcell run test_flow.py`` (then ``flowcell resume`` when the test asks), and
checked by ``checker.py`` with the suite's ``check_results``.  The first line of the
first error is kept as the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402
import suite  # noqa: E402

HERE = Path(__file__).resolve().parent
TIMEOUT = 600


def _reason(text: str) -> str:
    """The most telling line of a failure's output: the failed task's error from ``--json``,
    the CLI's one-sentence error, else the last exception line."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                error = json.loads(line).get("error")
            except ValueError:
                continue
            if error:
                where = str(error.get("pathspec") or "").split("/", 2)[-1]
                return f"{error.get('type')}: {error.get('message')} ({where})"[:300]
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", l).strip() for l in text.splitlines()]
    # asyncio's "Task was destroyed but it is pending!" noise at exit is not the failure
    lines = [l for l in lines if l and not l.startswith(("Task was destroyed", "task: <Task"))]
    for line in lines:
        if line.startswith("flowcell: "):  # the CLI's one-sentence error
            return line[10:310]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Mismatch|NotFound|Exit)\b.*", line):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def run_one(core: Path, context: dict[str, Any], key: str, flow_code: str, check_code: str, flow_name: str,
            should_fail: bool, should_resume: bool, resume_step: str | None, copy_files: list[str],
            keep: bool = False) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fc_compat_"))
    started = time.time()
    try:
        (tmp / "test_flow.py").write_text(flow_code)
        (tmp / "check_flow.py").write_text(check_code)
        shutil.copytree(core / "metaflow_test", tmp / "metaflow_test")
        for name in copy_files:
            shutil.copy2(core / "tests" / name, tmp / name)
        env = dict(os.environ)
        env.update(context["env"])
        env.update({"FLOWCELL_USER": context["env"]["METAFLOW_USER"], "FLOWCELL_ROOT": str(tmp / ".flowcell"),
                    "PYTHONPATH": f"{core}:{env.get('PYTHONPATH', '')}".rstrip(":"), "PYTHONIOENCODING": "utf_8"})
        tags = [o.split("=", 1)[1] for o in context["run_options"] if o.startswith("--tag=")]
        flowcell = [sys.executable, "-m", "flowcell.cli"]
        common = ["--run-id-file", "run-id", "--max-workers", "8", "--json"]
        for t in tags:
            common += ["--tag", t]
        log: list[str] = []

        def call(cmd: list[str]) -> int:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
            log.append(proc.stdout + proc.stderr)
            return proc.returncode

        ret = call([*flowcell, "run", "test_flow.py", *common])
        if ret:
            if should_fail:
                return _row(key, True, started, "")
            if not should_resume:
                return _row(key, False, started, _reason(log[-1]), log)
            ret = call([*flowcell, "resume", "test_flow.py", *([resume_step] if resume_step else []), *common])
            if ret:
                return _row(key, False, started, "resume: " + _reason(log[-1]), log)
        elif should_fail:
            return _row(key, False, started, "the flow should have failed but it did not", log)
        run_id = (tmp / "run-id").read_text().strip()
        ret = call([sys.executable, str(HERE / "checker.py"), str(core), flow_name, run_id])
        if ret:
            return _row(key, False, started, "check: " + _reason(log[-1]), log)
        return _row(key, True, started, "")
    except subprocess.TimeoutExpired:
        return _row(key, False, started, f"timed out after {TIMEOUT} s")
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _row(key: str, passed: bool, started: float, reason: str, log: list[str] | None = None) -> dict[str, Any]:
    return {"key": key, "passed": passed, "seconds": round(time.time() - started, 1), "reason": reason,
            "log": "\n".join(log or [])[-4000:] if not passed else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated test class names or TEST/GRAPH keys")
    parser.add_argument("--cache", default=str(results.FLOWCELL_RESULTS))
    parser.add_argument("--fresh", action="store_true", help="re-run combinations already in the cache")
    parser.add_argument("--keep", action="store_true", help="keep each combination's folder")
    parser.add_argument("--label", default="", help="recorded with each result, e.g. the commit measured")
    parser.add_argument("--failed-first", metavar="CACHE",
                        help="run first the combinations that failed (or are missing) in an earlier result file")
    args = parser.parse_args(argv)
    core = suite.core_dir()
    if core is None:
        parser.error(f"set {suite.ENV_VAR} to a checkout of the Metaflow repository")
    context, _ = suite.load_context(core)
    cache_path = Path(args.cache)
    cache = {} if args.fresh else results.load(cache_path)
    only = {x for x in args.only.split(",") if x}
    todo = [c for c in suite.combinations(core) if c.key not in cache and
            (not only or type(c.test).__name__ in only or c.key in only)]
    if args.failed_first:
        earlier = results.load(Path(args.failed_first))
        todo.sort(key=lambda c: bool(earlier.get(c.key, {}).get("passed")))
    done = 0

    def work(c: suite.Combination) -> dict[str, Any]:
        f = c.formatter
        return run_one(core, context, c.key, f.flow_code, f.check_code, f.flow_name, f.should_fail,
                       f.should_resume, f.resume_step, list(f.copy_files), args.keep)

    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(work, todo):
            done += 1
            row["label"] = args.label
            results.append(cache_path, row)
            print(f"[{done}/{len(todo)}] {row['key']}: {'pass' if row['passed'] else 'FAIL ' + row['reason']}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
