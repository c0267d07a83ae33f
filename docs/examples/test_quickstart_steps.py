"""Unit tests for two steps of notebooks/quickstart.ipynb, with flowcell's Runner.

Run with:  pytest docs/examples/test_quickstart_steps.py
Each test spins one step against the inputs of a real run, with some inputs
overridden, and checks what the step produced. The first spin starts the kernel
pool; later ones reuse it (tens of milliseconds each).
"""

import os
from pathlib import Path

import pytest

from flowcell import Runner

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    # Keep this module's runs and spins out of the project's own store.
    work = tmp_path_factory.mktemp("quickstart")
    os.environ["FLOWCELL_ROOT"] = str(work / ".flowcell")
    os.chdir(work)
    runner = Runner(NOTEBOOK)
    with runner.run(alpha=0.5) as running:
        assert running.successful
    return runner


def test_score_group_scales_the_group_mean_by_alpha(runner):
    rows = [{"x": 0.2, "group": "a"}, {"x": 0.4, "group": "a"}, {"x": 0.9, "group": "b"}]
    # score_group runs inside a foreach: without ``split`` every split would run (and
    # the split for group "c" has no rows here). Split 0 is the one for group "a".
    with runner.spin("score_group", split=0, artifacts={"rows": rows, "alpha": 2.0}) as spin:
        assert spin.successful, spin.exception
        task = spin.task
        assert task["group"].data == "a"
        assert task["score"].data == pytest.approx(2.0 * 0.3)


def test_end_picks_the_best_group(runner):
    with runner.spin("end", artifacts={"scores": {"a": 0.1, "b": 0.7, "c": 0.4}}, persist=True) as spin:
        assert spin.task["best"].data == "b"
        assert "best group: b" in spin.stdout
