"""Metaflow's core test suite under flowcell (issue 13), at the level a user meets it.

Skipped unless ``FLOWCELL_METAFLOW_SRC`` names a checkout of Metaflow's repository
(the registry's package has no ``test/``).  Each combination flowcell is recorded as
passing in ``tests/compat/flowcell.jsonl`` (and Metaflow in ``metaflow-2.19.39.jsonl``)
is re-run here with ``flowcell run`` and the suite's own ``check_results``; the full
table is made by ``run_flowcell.py`` + ``report.py`` (see docs/compatibility.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import results  # noqa: E402
import suite  # noqa: E402

CORE = suite.core_dir()  # set by FLOWCELL_METAFLOW_SRC
pytestmark = pytest.mark.skipif(CORE is None, reason=f"set {suite.ENV_VAR} to a Metaflow checkout")

# A sample that covers each cause of issue 13 once; the whole suite is run by run_flowcell.py.
SAMPLE = os.environ.get("FLOWCELL_COMPAT_SAMPLE", "").split(",") if os.environ.get("FLOWCELL_COMPAT_SAMPLE") \
    else [key for key, row in results.load(results.FLOWCELL_RESULTS).items() if row["passed"]][:: 10]


@pytest.mark.slow
@pytest.mark.parametrize("key", SAMPLE)
def test_core_suite_combination(key: str) -> None:
    import run_flowcell

    assert CORE is not None
    combo = next(c for c in suite.combinations(CORE) if c.key == key)
    context, _ = suite.load_context(CORE)
    f = combo.formatter
    row = run_flowcell.run_one(CORE, context, key, f.flow_code, f.check_code, f.flow_name, f.should_fail,
                               f.should_resume, f.resume_step, list(f.copy_files))
    assert row["passed"], row["reason"] + "\n" + row["log"]
