"""Run the core suite's combinations under Metaflow itself, one at a time, caching each result.

    FLOWCELL_METAFLOW_SRC=/path/to/metaflow nice -n 19 python tests/compat/run_metaflow.py

Each combination goes through the suite's own ``run_test`` (CLI executor, the
``python3-all-local`` context, both of its checkers).  Results already in the cache
are skipped, so an interrupted measurement continues where it stopped.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402
import suite  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated test class names")
    parser.add_argument("--cache", default=str(results.METAFLOW_RESULTS))
    args = parser.parse_args(argv)
    core = suite.core_dir()
    if core is None:
        parser.error(f"set {suite.ENV_VAR} to a checkout of the Metaflow repository")
    combos = suite.combinations(core)
    import run_tests  # type: ignore[import-not-found]  # the suite's own runner

    context, checks = suite.load_context(core)
    context = dict(context, python=sys.executable)
    checks = {k: dict(v, python=sys.executable) for k, v in checks.items()}
    cache = results.load(__import__("pathlib").Path(args.cache))
    only = {x for x in args.only.split(",") if x}
    os.chdir(core)
    todo = [c for c in combos if c.key not in cache and (not only or type(c.test).__name__ in only)]
    # Combinations that need the suite's metaflow_extensions package, and the 20-way-wide
    # foreach (388 s alone), go last: an interrupted measurement still covers the core.
    todo.sort(key=lambda c: (c.uses_extensions, type(c.test).__name__ == "WideForeachTest"))
    for n, combo in enumerate(todo, 1):
        started = time.time()
        log = io.StringIO()
        with redirect_stdout(log):
            try:
                ret, _ = run_tests.run_test(combo.formatter, context, False, checks, {"USER": os.environ.get("USER") or "tester"}, "cli")
            except Exception as exc:  # the suite's runner itself failed: record, keep going
                ret = f"{type(exc).__name__}: {exc}"
        row = {"key": combo.key, "passed": ret == 0, "seconds": round(time.time() - started, 1),
               "extensions": combo.uses_extensions, "log": (log.getvalue()[-3000:] + ("" if isinstance(ret, int) else str(ret))) if ret else ""}
        results.append(__import__("pathlib").Path(args.cache), row)
        print(f"[{n}/{len(todo)}] {combo.key}: {'pass' if ret == 0 else 'FAIL'} ({row['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
