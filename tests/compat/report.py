"""Write docs/compatibility.md from the cached Metaflow and flowcell results.

    FLOWCELL_METAFLOW_SRC=/path/to/metaflow python tests/compat/report.py

Per test of Metaflow's core suite: how many of its graphs Metaflow 2.19.39 passes
locally, how many of those flowcell passes, and the reason for each one it does not.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results  # noqa: E402
import suite  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
COMMANDS = """\
```sh
# a checkout of Metaflow's repository at 2.19.39 (the registry's package has no test/)
export FLOWCELL_METAFLOW_SRC=/work/metaflow-src
PATH=$VIRTUAL_ENV/bin:$PATH nice -n 19 python tests/compat/run_metaflow.py   # Metaflow's side, once (cached)
python tests/compat/run_flowcell.py --fresh --jobs 2   # flowcell's side (tests/compat/flowcell.jsonl)
python tests/compat/report.py                    # this file
```"""


#: Why what is left fails, by test (written by hand from the failures; the table shows the first error).
LEFT: dict[str, str] = {
    "ResumeRecursiveSwitchFlowTest": "resume of a recursive switch re-runs the loop step from its first turn; "
                                     "Metaflow clones the turns that succeeded (turn 5 is a clone, turn 6 runs). "
                                     "Needs per-turn keys for resume's clones in the scheduler.",
}


def _kind(reason: str) -> str:
    """A failure reason without the step or values, to count causes."""
    head = reason.split(" (")[0]
    return "`" + head[:110].replace("`", "'") + "`"


def _last_line(log: str) -> str:
    """The last line of a Metaflow failure's log that says something."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return (lines[-1] if lines else "failed")[:160]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metaflow", default=str(results.METAFLOW_RESULTS))
    parser.add_argument("--flowcell", default=str(results.FLOWCELL_RESULTS))
    parser.add_argument("--out", default=str(DOC))
    args = parser.parse_args(argv)
    core = suite.core_dir()
    if core is None:
        parser.error(f"set {suite.ENV_VAR} to a checkout of the Metaflow repository")
    combos = suite.combinations(core)
    mf = results.load(Path(args.metaflow))
    fc = results.load(Path(args.flowcell))
    by_test: dict[str, list[suite.Combination]] = defaultdict(list)
    for c in combos:
        by_test[type(c.test).__name__].append(c)

    measured = [c for c in combos if c.key in mf]
    mf_pass = [c for c in measured if mf[c.key]["passed"]]
    unmeasured = [c for c in combos if c.key not in mf and not c.uses_extensions]
    # The reference: what Metaflow passes here, measured where the shared machine allowed;
    # elsewhere the earlier measurement of the whole suite on this kind of machine
    # (/work/shared/FIELD-NOTES.md: Metaflow passes every combination its local context
    # enables except the 28 that need the suite's extension packages).
    reference = [c for c in mf_pass if not c.uses_extensions] + unmeasured
    both = [c for c in reference if fc.get(c.key, {}).get("passed")]
    missing = [c for c in reference if c.key not in fc]
    reasons = Counter(_kind(fc[c.key]["reason"]) for c in reference if c.key in fc and not fc[c.key]["passed"])
    share = 100.0 * len(both) / len(reference) if reference else 0.0

    out = [
        "# Compatibility with Metaflow's core test suite",
        "",
        "flowcell runs Metaflow's own core test suite (`test/core` of the Metaflow repository,",
        "rendered by its own `FlowFormatter`, checked by its own `check_results`) with",
        "`flowcell run test_flow.py` (and `flowcell resume` where a test asks). The checker is the",
        "suite's `MetadataCheck` with `metaflow` resolving to flowcell (`tests/compat/checker.py`),",
        "so it reads flowcell's store through flowcell's Client; the suite's `CliCheck` drives",
        "Metaflow's own CLI (`python test_flow.py dump`) and is not run against flowcell.",
        "Context: the suite's `python3-all-local` (its disabled tests left out).",
        "",
        "Made with:",
        "",
        COMMANDS,
        "",
        "## Summary",
        "",
        f"* Valid combinations (test x graph) in the local context: {len(combos)}; "
        f"{sum(c.uses_extensions for c in combos)} of them need the suite's extension packages "
        f"({', '.join(sorted(suite.EXTENSION_TESTS))}) and are left out, as in issue 13.",
        f"* Metaflow 2.19.39 run here by `run_metaflow.py`: {len(measured)} combinations "
        f"({sum(not c.uses_extensions for c in measured)} without the extension packages), {len(mf_pass)} pass."
        + (f" The other {len(unmeasured)} were not re-run in time (nice 19, one worker, 3-10 min each on the shared machine at load 10-25); "
           "for them the reference is the earlier full measurement on this kind of machine (FIELD-NOTES: "
           "Metaflow passes all of them)." if unmeasured else ""),
        f"* **flowcell passes {len(both)} of the {len(reference)} combinations Metaflow passes ({share:.0f}%).**",
        "  When issue 13 was filed it passed 23 of them (11%); at the start of the third session, 148 (71%).",
    ]
    if missing:
        out.append(f"* Not yet run under flowcell: {len(missing)}.")
    labels = Counter(fc[c.key].get("label") or "unlabelled" for c in reference if c.key in fc)
    out.append("* flowcell's results were measured at: " +
               "; ".join(f"{label} ({n} combinations)" for label, n in labels.most_common()) + ".")
    out += ["", "Not covered by these numbers, or different on purpose:", "",
            "* The suite's `CliCheck` (Metaflow's own `dump` CLI) is not run against flowcell; `MetadataCheck` is.",
            "* The 28 combinations of the four tests that load the suite's `metaflow_extensions` package.",
            "* flowcell refuses blank tags (`\"   \"`); Metaflow refuses only the empty string.",
            "* `get_cards` of a task without cards gives an empty list; Metaflow raises `CardNotPresentException`.",
            "* Metaflow's `@parallel` on this machine needs its own `python` first on `PATH` (its local "
            "workers start `python`); `run_metaflow.py` must be started that way or the `small-parallel` "
            "graphs fail with `No module named 'metaflow'`."]
    if reasons:
        out += ["", "flowcell's first errors among those, by kind:", ""]
        out += [f"* {n} x {r}" for r, n in reasons.most_common()]
    out += ["", "## Per test", "",
            "Metaflow's column counts what it passed here (or, for combinations it was not re-run on, in the "
            "earlier measurement); its first error is given where it failed one here.", "",
            "| test | graphs | Metaflow passes | Metaflow's first error | flowcell passes (of those) "
            "| flowcell's first error |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(by_test):
        cs = by_test[name]
        mf_failed = [c for c in cs if c.key in mf and not mf[c.key]["passed"]]
        mf_why = "; ".join(sorted({f"{c.graph['name']}: {_last_line(mf[c.key].get('log', ''))}"
                                   for c in mf_failed}))[:300].replace("|", "\\|")
        if cs[0].uses_extensions:
            out.append(f"| {name} | {len(cs)} | needs the suite's extension packages | {mf_why} | - | left out |")
            continue
        m = [c for c in cs if c in reference]
        n_ref = sum(c.key not in mf for c in m)
        mtxt = f"{len(m)}" + (f" ({n_ref} from the earlier measurement)" if n_ref else "")
        f_ok = [c for c in m if fc.get(c.key, {}).get("passed")]
        failing = [c for c in m if c.key in fc and not fc[c.key]["passed"]]
        why = "; ".join(sorted({f"{c.graph['name']}: {fc[c.key]['reason']}" for c in failing}))[:400]
        why = why.replace("|", "\\|").replace("\n", " ")
        if failing and name in LEFT:
            why = f"**{LEFT[name]}** First error: {why}"
        out.append(f"| {name} | {len(cs)} | {mtxt} | {mf_why} | {len(f_ok)} | {why} |")
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"flowcell passes {len(both)}/{len(reference)} ({share:.0f}%) of what Metaflow passes; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
